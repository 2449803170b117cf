"""Activation statistics: one streaming pass of ONNX Runtime over the FP32 model.

The tensors to observe become extra graph outputs of an in-memory copy of the model (the
file on disk is not touched); each batch's values go straight into a `HistogramCollector`
and are dropped, so memory is one batch of activations plus the histograms, whatever the
size of the calibration set.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from deploy.errors import DataError
from deploy.onnx_graph import with_outputs
from deploy.progress import progress

from .calibrators import HistogramCollector

log = logging.getLogger("trtdeploy.calibration")


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

    Graph inputs among `tensors` are taken from the feed. An iterable that yields nothing is
    a DataError, not an empty result.
    """
    import onnx

    from deploy.runners.ort import make_session

    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    collector = collector or HistogramCollector()
    graph_inputs = {i.name for i in model.graph.input}
    fetched = [t for t in tensors if t not in graph_inputs]
    fed = [t for t in tensors if t in graph_inputs]
    session = make_session(with_outputs(model, fetched), threads=threads)

    start = time.perf_counter()
    num_batches = num_samples = 0
    for feed in progress(batches, desc=desc, total=total, unit="batch"):
        values = session.run(fetched, dict(feed)) if fetched else []
        for name, value in zip(fetched, values):
            collector.update(name, value)
        for name in fed:
            collector.update(name, feed[name])
        num_batches += 1
        num_samples += len(next(iter(feed.values())))
    if num_batches == 0:
        raise DataError("calibration data yielded no batches; pass a folder or array file with images")
    log.info("statistics: %d tensors over %d samples (%d batches) in %.1f s",
             len(tensors), num_samples, num_batches, time.perf_counter() - start)
    return collector
