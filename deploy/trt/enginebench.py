"""Engine benchmark with trtexec's metric set, through our own runner.

Per call, CUDA events on the runner's stream give the H2D copy, the GPU compute
(`execute_async_v3`, or its CUDA graph) and the D2H copy; their sum is trtexec's "host
latency". The host clock around `TrtRunner.infer` gives the wall time of a call, and wall
minus GPU compute is what the runner (Python, copies into pinned memory, synchronisation)
adds to TensorRT's time: the runner's overhead. Throughput is images over the wall-clock
span of the timed phase, summed over streams.

`streams` > 1 runs that many runners (each its own execution context and CUDA stream) in as
many threads, started together after their warm-up; `execute_async_v3` and the
synchronisation release the GIL, so their GPU work overlaps.
"""
from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..runners.timing import random_feed, summarize_ms
from ..errors import UsageError
from .cuda import import_cuda
from .machine import device_machine
from .profiler import check_batch
from .runtime import Timing, TrtRunner
from .versions import import_tensorrt

log = logging.getLogger("trtdeploy.trt")

DEFAULT_DURATION_S = 3.0  # trtexec's --duration default
DEFAULT_WARMUP_S = 0.2  # trtexec's --warmUp default (200 ms)


@dataclass(frozen=True)
class BenchConfig:
    """How long to run. Timed phase: `iters` calls per stream, or `duration_s` seconds
    (default 3 s). Warm-up: `warmup_iters` calls, or `warmup_s` seconds (default 0.2 s)."""

    batch: int | None = None  # None: the engine's opt batch
    iters: int | None = None
    duration_s: float | None = None
    warmup_s: float | None = None
    warmup_iters: int | None = None
    streams: int = 1
    cuda_graph: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        # The CLI's options check their own values (deploy.cli.args types); these are the library's.
        if self.iters is not None and self.duration_s is not None:
            raise UsageError("give a number of timed calls or a duration, not both")
        if self.warmup_iters is not None and self.warmup_s is not None:
            raise UsageError("give the warm-up as seconds or as calls, not both")
        if self.iters is not None and self.iters < 1:
            raise UsageError(f"the number of timed calls must be at least 1, got {self.iters}")
        if self.duration_s is not None and not 0 < self.duration_s < math.inf:
            raise UsageError(f"the duration must be a finite number of seconds > 0, got {self.duration_s}")
        if (self.warmup_s is not None and not 0 <= self.warmup_s < math.inf) or (self.warmup_iters or 0) < 0:
            raise UsageError(f"the warm-up must be finite and >= 0, got {self.warmup_s}")
        if self.streams < 1:
            raise UsageError(f"the number of streams must be at least 1, got {self.streams}")
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"the batch size must be at least 1, got {self.batch}")


@dataclass
class _Stream:
    """What one stream's thread measured."""

    runner: TrtRunner
    wall_ms: list[float]
    timings: list[Timing]
    start: float = 0.0
    end: float = 0.0
    error: BaseException | None = None


def _until(config: BenchConfig, warmup: bool, clock: Callable[[], float]) -> Callable[[int], bool]:
    """A predicate `more(calls_done)` for the warm-up or the timed phase."""
    count = config.warmup_iters if warmup else config.iters
    if count is not None:
        return lambda done: done < count
    seconds = (config.warmup_s if config.warmup_s is not None else DEFAULT_WARMUP_S) if warmup else \
        (config.duration_s if config.duration_s is not None else DEFAULT_DURATION_S)
    deadline = clock() + seconds
    return lambda done: clock() < deadline


def _worker(s: _Stream, feed: dict, config: BenchConfig, barrier: threading.Barrier,
            clock: Callable[[], float]) -> None:
    try:
        more = _until(config, True, clock)
        done = 0
        while more(done):
            s.runner.infer(feed)
            done += 1
        barrier.wait()
        more = _until(config, False, clock)
        s.start = clock()
        while more(len(s.wall_ms)):
            t0 = clock()
            s.runner.infer(feed)
            s.wall_ms.append((clock() - t0) * 1e3)
            s.timings.append(s.runner.last_timing)  # type: ignore[arg-type]  # timing=True runners
        s.end = clock()
    except BaseException as e:  # reported by the main thread
        s.error = e
        barrier.abort()


def summarize_calls(wall_ms: Sequence[float], timings: Sequence[Timing], batch: int, span_s: float,
                    per_stream: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """trtexec's metrics from the calls of every stream: throughput over the timed span;
    host latency, GPU compute, H2D and D2H from the events; wall time and the runner's
    overhead (wall minus GPU compute) per call. Statistics: deploy.bench.summarize_ms."""
    if not wall_ms:
        raise UsageError("no timed calls: increase --duration or --iters")
    gpu = [t.gpu_ms for t in timings]
    return {
        "calls": len(wall_ms), "images": len(wall_ms) * batch, "span_s": span_s,
        "throughput": {"images_per_s": len(wall_ms) * batch / span_s if span_s > 0 else None,
                       "calls_per_s": len(wall_ms) / span_s if span_s > 0 else None},
        "host_latency_ms": summarize_ms([t.host_ms for t in timings]),
        "gpu_compute_ms": summarize_ms(gpu),
        "h2d_ms": summarize_ms([t.h2d_ms for t in timings]),
        "d2h_ms": summarize_ms([t.d2h_ms for t in timings]),
        "wall_ms": summarize_ms(wall_ms),
        "runner_overhead_ms": summarize_ms([w - g for w, g in zip(wall_ms, gpu)]),
        "per_stream": list(per_stream),
    }


def bench_engine(plan: str | Path, config: BenchConfig = BenchConfig(),
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Benchmark `plan` on random inputs; the JSON-ready result (see the module doc)."""
    trt = import_tensorrt()
    runners = [TrtRunner(plan, name=f"stream {i}", timing=True, cuda_graph=config.cuda_graph)
               for i in range(config.streams)]
    batch = check_batch(runners[0], config.batch)
    feed = random_feed(runners[0].input_specs(), batch, config.seed)
    streams = [_Stream(r, [], []) for r in runners]
    with contextlib.ExitStack() as stack:
        for r in runners:
            stack.enter_context(r)
        barrier = threading.Barrier(len(streams))
        threads = [threading.Thread(target=_worker, args=(s, feed, config, barrier, clock), daemon=True)
                   for s in streams]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        errors = [s.error for s in streams if s.error is not None and not isinstance(s.error, threading.BrokenBarrierError)]
        if errors:
            raise errors[0]
    span = max(s.end for s in streams) - min(s.start for s in streams)
    per_stream = [{"calls": len(s.wall_ms),
                   "images_per_s": len(s.wall_ms) * batch / (s.end - s.start) if s.end > s.start else None}
                  for s in streams]
    result = summarize_calls([w for s in streams for w in s.wall_ms], [t for s in streams for t in s.timings],
                             batch, span, per_stream)
    fallback = next((r.graph_fallback for r in runners if r.graph_fallback), None)
    sidecar = runners[0].sidecar
    out = {"engine": str(plan), "model": sidecar.model, "precision": sidecar.precision, "batch": batch,
           "input_shapes": {k: list(v.shape) for k, v in feed.items()}, "streams": config.streams,
           "cuda_graph": {"requested": config.cuda_graph, "used": config.cuda_graph and fallback is None,
                          "fallback": fallback},
           "config": asdict(config), **result,
           "machine": device_machine(import_cuda(), trt, runners[0].device).to_json()}
    log.info("bench: %s batch %d x %d stream(s): %.1f images/s, GPU compute median %.3f ms, runner overhead "
             "median %.3f ms", Path(plan).name, batch, config.streams, out["throughput"]["images_per_s"] or 0.0,
             out["gpu_compute_ms"]["median"], out["runner_overhead_ms"]["median"])
    return out


def summary_text(result: dict[str, Any]) -> str:
    """trtexec-style lines for people."""
    def stats(key: str) -> str:
        s = result[key]
        return (f"min {s['min']:.4f}, mean {s['mean']:.4f}, median {s['median']:.4f}, p90 {s['p90']:.4f}, "
                f"p99 {s['p99']:.4f} ms")

    graph = result["cuda_graph"]
    lines = [f"engine: {result['engine']} ({result['precision']}), batch {result['batch']}, "
             f"{result['streams']} stream(s), CUDA graph: "
             + ("yes" if graph["used"] else f"no ({graph['fallback']})" if graph["requested"] else "no"),
             f"throughput: {result['throughput']['images_per_s']:.1f} images/s ({result['calls']} calls "
             f"in {result['span_s']:.2f} s)",
             f"host latency (H2D + compute + D2H): {stats('host_latency_ms')}",
             f"GPU compute: {stats('gpu_compute_ms')}",
             f"H2D: {stats('h2d_ms')}",
             f"D2H: {stats('d2h_ms')}",
             f"wall per call: {stats('wall_ms')}",
             f"runner overhead (wall - GPU compute): {stats('runner_overhead_ms')}"]
    return "\n".join(lines)
