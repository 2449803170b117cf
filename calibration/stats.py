"""Activation statistics: one streaming pass of ONNX Runtime over the FP32 model.

The tensors to observe become extra graph outputs of an in-memory copy of the model (the
file on disk is not touched); each batch's values go straight into a `HistogramCollector`
and are dropped. A batch is run in parts of at most RUN_BYTES of activations, written into
output arrays allocated once (`_Runs`), so memory does not grow with the batch size or the
number of images, and the counts are those of whole batches (`HistogramCollector.update_part`).
A Relu output is not an extra output: its histogram comes from its input's values, in the
same compiled pass. The tensors of a part are binned in parallel threads after ONNX Runtime
ran it: running the next part meanwhile (a second set of arrays) was no faster on 2 cores,
where ONNX Runtime keeps both busy (the pass over 64 images of resnet_v2_50 at 224, batch 8:
11.2 and 12.1 s overlapped, 10.8 and 11.7 s one after the other).
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from deploy.errors import DataError
from deploy.onnx_graph import with_outputs
from deploy.progress import progress

from .histograms import HistogramCollector, flat_values, non_finite, range_steps

log = logging.getLogger("trtdeploy.calibration")

# Fetched activations per ONNX Runtime call. ONNX Runtime's own memory grows with the rows of a
# call too (its NCHWc copies of the outputs): resnet_v2_50 at 224 (72 MB a row) in parts of 2
# rows peaks at 1.2 GB for the whole command, in parts of 8 at 2.4 GB.
RUN_BYTES = 160 << 20


@dataclass(frozen=True)
class FetchPlan:
    """Which observed tensors ONNX Runtime outputs, which come from the feed, and which are
    Relu outputs binned from their input's values (`HistogramCollector.update(relu_outputs=)`),
    so they are neither computed twice nor held as outputs."""

    fetched: tuple[str, ...]
    fed: tuple[str, ...]
    relu_outputs: Mapping[str, tuple[str, ...]]  # source tensor -> Relu outputs derived from it


def fetch_plan(model, tensors: Sequence[str]) -> FetchPlan:
    """Plan the outputs of the statistics pass for `tensors` of `model` (graph order kept)."""
    wanted = set(tensors)
    graph_inputs = {i.name for i in model.graph.input}
    relu_outputs: dict[str, list[str]] = {}
    derived: set[str] = set()
    for node in model.graph.node:
        # A Relu of a Relu output that is itself derived has no array to be binned from.
        if node.op_type == "Relu" and node.output[0] in wanted and node.input[0] in wanted \
                and node.input[0] not in derived:
            relu_outputs.setdefault(node.input[0], []).append(node.output[0])
            derived.add(node.output[0])
    sources = [t for t in tensors if t not in derived]
    return FetchPlan(fetched=tuple(t for t in sources if t not in graph_inputs),
                     fed=tuple(t for t in sources if t in graph_inputs),
                     relu_outputs={k: tuple(v) for k, v in relu_outputs.items()})


class _Runs:
    """The statistics session's calls: each batch in parts of `rows` rows, whose outputs ONNX
    Runtime writes (IOBinding) into arrays allocated once.

    `rows` comes from a one-row probe (its outputs' sizes against RUN_BYTES). Where an output
    does not have the batch as its first axis, or a part cannot be bound, batches are run
    whole and their outputs are ONNX Runtime's own (memory then follows the batch size).
    """

    def __init__(self, session, names: Sequence[str]):
        self.session = session
        self.names = list(names)
        self.rows: int | None = None  # None until probed; 0: batches run whole
        self._arrays: list[np.ndarray] | None = None

    def parts(self, feed: Mapping[str, np.ndarray]) -> list[tuple[int, int]]:
        """Row ranges of the parts `feed` is run in."""
        rows = len(next(iter(feed.values())))
        if self.rows is None:
            self.rows = self._probe(feed)
        step = self.rows or rows
        return [(lo, min(lo + step, rows)) for lo in range(0, rows, step)]

    def _probe(self, feed: Mapping[str, np.ndarray]) -> int:
        if not self.names:
            return 0
        one = self.session.run(self.names, {k: v[:1] for k, v in feed.items()})
        if any(o.ndim == 0 or o.shape[0] != 1 for o in one):
            log.debug("statistics: outputs without the batch as first axis; batches run whole")
            return 0
        self._row_shapes = [(o.shape[1:], o.dtype) for o in one]
        row_bytes = sum(o.nbytes for o in one)
        return max(1, RUN_BYTES // row_bytes)

    def run(self, feed: Mapping[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
        """The outputs of rows [lo, hi) of `feed`, valid until the next run."""
        if not self.names:
            return {}
        part = {k: np.ascontiguousarray(v[lo:hi]) for k, v in feed.items()}
        if self.rows:
            if self._arrays is None:
                self._arrays = [np.empty((self.rows, *shape), dtype) for shape, dtype in self._row_shapes]
            views = [b[:hi - lo] for b in self._arrays]
            try:
                binding = self.session.io_binding()
                for name, value in part.items():
                    binding.bind_cpu_input(name, value)
                for name, view in zip(self.names, views):
                    binding.bind_output(name, "cpu", 0, view.dtype, list(view.shape), view.ctypes.data)
                self.session.run_with_iobinding(binding)
                return dict(zip(self.names, views))
            except Exception as e:  # shapes that do not follow the batch: a plain run says why if it fails
                log.debug("statistics: outputs of %d rows not bound (%s); running them plainly", hi - lo, e)
        return dict(zip(self.names, self.session.run(self.names, part)))


def _parts(batches: Iterable[Mapping[str, np.ndarray]], runs: _Runs) -> Iterator[tuple]:
    """(feed, lo, hi, parts, batch index) for each part of each batch, in order."""
    for index, feed in enumerate(batches):
        parts = runs.parts(feed)
        for lo, hi in parts:
            yield feed, lo, hi, parts, index


def _values(plan: FetchPlan, feed: Mapping[str, np.ndarray], outputs: dict, lo: int, hi: int) -> dict:
    outputs.update({name: feed[name][lo:hi] for name in plan.fed})
    return outputs


def _step_maxima(runs: _Runs, pool: ThreadPoolExecutor, plan: FetchPlan, feed: Mapping[str, np.ndarray],
                 parts: list[tuple[int, int]], first: dict) -> dict[str, list[tuple[float, float]]]:
    """(max, min) of every range step of every tensor over a batch, part by part (`first`: the
    values of the first part, run already): the first non-zero step of a tensor takes its range
    from its max (see `HistogramCollector.update_part`)."""
    from . import binning

    rows = parts[-1][1]
    maxima: dict[str, dict[int, list[float]]] = {}

    def scan(name: str, values: np.ndarray, lo: int, hi: int) -> None:
        flat = flat_values(values)
        per_row = flat.size // (hi - lo)
        steps = maxima.setdefault(name, {})
        for step, a, b in range_steps(lo * per_row, flat.size, rows * per_row):
            top, bottom, bad = binning.scan(flat[a:b], 0)
            if bad:
                raise non_finite(name)
            have = steps.setdefault(step, [-np.inf, np.inf])
            have[0], have[1] = max(have[0], top), min(have[1], bottom)

    for lo, hi in parts:
        values = first if lo == 0 else _values(plan, feed, runs.run(feed, lo, hi), lo, hi)
        for future in [pool.submit(scan, name, v, lo, hi) for name, v in values.items()]:
            future.result()
    return {name: [tuple(steps[k]) for k in sorted(steps)] for name, steps in maxima.items()}


def _update_all(collector: HistogramCollector, pool: ThreadPoolExecutor, plan: FetchPlan,
                values: Mapping[str, np.ndarray], lo: int, hi: int, rows: int,
                maxima: Mapping[str, list] | None) -> None:
    """Rows [lo, hi) of a batch of `rows` into the collector, tensors spread over the pool's
    threads (largest first, so the threads finish together); an error is raised for the first
    failing tensor in graph order."""
    def update(name: str) -> None:
        per_row = values[name].size // (hi - lo)
        collector.update_part(name, values[name], plan.relu_outputs.get(name, ()), offset=lo * per_row,
                              total=rows * per_row, step_max=maxima.get(name) if maxima else None)

    order = [*plan.fetched, *plan.fed]
    futures = {name: pool.submit(update, name) for name in sorted(order, key=lambda n: -values[n].size)}
    for name in order:
        futures[name].result()


def collect_statistics(
    model,
    tensors: Sequence[str],
    batches: Iterable[Mapping[str, np.ndarray]],
    collector: HistogramCollector | None = None,
    total: int | None = None,
    desc: str = "calibration statistics",
    threads: int | None = None,
) -> HistogramCollector:
    """Run `batches` (feed dicts) through `model` (ModelProto or path) and histogram `tensors`.

    Graph inputs among `tensors` are taken from the feed; Relu outputs whose input is observed
    are binned from that input (see `fetch_plan`). `threads` bounds ONNX Runtime's threads and
    the histogram threads (default: one per CPU). An iterable that yields nothing is a
    DataError, not an empty result.
    """
    import onnx

    from deploy.runners.ort import make_session

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    collector = collector or HistogramCollector()
    collector.declare(tensors)
    plan = fetch_plan(model, tensors)
    # ONNX Runtime's threads sleep between runs instead of spinning: the histogram threads need
    # the cores then (9% less CPU for the pass on resnet_v2_50, 2 cores).
    session = make_session(with_outputs(model, plan.fetched), threads=threads, spinning=False)
    runs = _Runs(session, plan.fetched)

    start = time.perf_counter()
    num_batches = num_samples = 0
    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
        maxima = None
        for feed, lo, hi, batch_parts, index in _parts(progress(batches, desc=desc, total=total, unit="batch"), runs):
            values = _values(plan, feed, runs.run(feed, lo, hi), lo, hi)
            if index == 0 and lo == 0 and len(batch_parts) > 1 and any(not collector.has_range(t) for t in tensors):
                # The first batch, in parts: each tensor's first range is its first step's max.
                maxima = _step_maxima(runs, pool, plan, feed, batch_parts, values)
                values = _values(plan, feed, runs.run(feed, lo, hi), lo, hi)
            _update_all(collector, pool, plan, values, lo, hi, batch_parts[-1][1], maxima if index == 0 else None)
            del values  # a part run plainly must not find the last one's activations alive
            if hi == batch_parts[-1][1]:
                num_batches += 1
                num_samples += hi
    if num_batches == 0:
        raise DataError("calibration data yielded no batches; pass a folder or array file with images")
    log.info("statistics: %d tensors (%d from ONNX Runtime, %d Relu outputs binned from their inputs) over "
             "%d samples (%d batches) in %.1f s", len(tensors), len(plan.fetched),
             sum(len(v) for v in plan.relu_outputs.values()), num_samples, num_batches, time.perf_counter() - start)
    return collector
