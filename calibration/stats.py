"""Activation statistics: one streaming pass of ONNX Runtime over the FP32 model.

The tensors to observe become extra graph outputs of an in-memory copy of the model (the
file on disk is not touched); each batch's values go straight into a `HistogramCollector`
and are dropped, so memory is one batch of activations plus the histograms, whatever the
size of the calibration set. A Relu output is not an extra output: its histogram comes from
its input's values (exactly, see `HistogramCollector.update`), and the tensors of a batch are
binned in parallel threads while ONNX Runtime waits.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from deploy.errors import DataError
from deploy.onnx_graph import with_outputs
from deploy.progress import progress

from .histograms import HistogramCollector

log = logging.getLogger("trtdeploy.calibration")


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


class _Outputs:
    """Runs the session with every batch's activations written into the same arrays.

    The first batch's outputs, as ONNX Runtime returns them, become the buffers; later
    batches are bound to them (IOBinding), smaller ones to their leading rows. So nothing
    the size of a batch's activations is allocated per batch (with new outputs per batch the
    peak crept from 1.71 GB at 64 images to 1.96 GB at 256 on resnet_v2_50, 224, batch 8).
    A batch whose outputs do not fit (larger, or an output without the batch as its first
    axis) is run plainly and its outputs kept instead. The arrays returned are valid until
    the next `run`.
    """

    def __init__(self, session, names: Sequence[str]):
        self.session = session
        self.names = list(names)
        self.buffers: list[np.ndarray] | None = None

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.names:
            return {}
        rows = len(next(iter(feed.values())))
        if self.buffers is not None and all(len(b) >= rows for b in self.buffers):
            try:
                return dict(zip(self.names, self._run_bound(feed, rows)))
            except Exception as e:  # shapes that do not follow the batch: a plain run says why if it fails
                log.debug("statistics: outputs of a %d-row batch not bound (%s); running it plainly", rows, e)
        self.buffers = None  # one batch of activations alive at a time
        self.buffers = self.session.run(self.names, dict(feed))
        return dict(zip(self.names, self.buffers))

    def _run_bound(self, feed: Mapping[str, np.ndarray], rows: int) -> list[np.ndarray]:
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        views = [b[:rows] for b in self.buffers]
        for name, view in zip(self.names, views):
            binding.bind_output(name, "cpu", 0, view.dtype, list(view.shape), view.ctypes.data)
        self.session.run_with_iobinding(binding)
        return views


def _update_all(collector: HistogramCollector, pool: ThreadPoolExecutor, plan: FetchPlan,
                values: Mapping[str, np.ndarray]) -> None:
    """One batch into the collector, tensors spread over the pool's threads (largest first, so
    the threads finish together); an error is raised for the first failing tensor in graph order."""
    order = [*plan.fetched, *plan.fed]
    futures = {name: pool.submit(collector.update, name, values[name], plan.relu_outputs.get(name, ()))
               for name in sorted(order, key=lambda n: -values[n].size)}
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
    outputs = _Outputs(session, plan.fetched)

    start = time.perf_counter()
    num_batches = num_samples = 0
    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
        for feed in progress(batches, desc=desc, total=total, unit="batch"):
            values = outputs.run(feed)
            values.update({name: feed[name] for name in plan.fed})
            _update_all(collector, pool, plan, values)
            del values  # a batch that runs plainly must not find the last one's activations alive
            num_batches += 1
            num_samples += len(next(iter(feed.values())))
    if num_batches == 0:
        raise DataError("calibration data yielded no batches; pass a folder or array file with images")
    log.info("statistics: %d tensors (%d from ONNX Runtime, %d Relu outputs binned from their inputs) over "
             "%d samples (%d batches) in %.1f s", len(tensors), len(plan.fetched),
             sum(len(v) for v in plan.relu_outputs.values()), num_samples, num_batches, time.perf_counter() - start)
    return collector
