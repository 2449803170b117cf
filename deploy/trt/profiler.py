"""Per-layer timing of an engine with TensorRT's `IProfiler`.

TensorRT reports each layer's time of an enqueue to the profiler attached to the execution
context. With `execute_async_v3` the context is told not to report during the enqueue
(`enqueue_emits_profile = False`); the runner calls `report_to_profiler()` once the stream
is synchronized, so each call's layer times arrive together. `LayerTimes` groups them per
call and summarises each layer over the calls: median ms and its share of the sum of the
medians, sorted. Layer names are the engine's (fused layers join their ONNX nodes' names).

`profile_engine` writes nothing; `trtdeploy profile` writes the JSON to
BUNDLE/reports/profile.NAME.json, where the parity report finds it (deploy/parity/layer_timing.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from ..runners.timing import random_feed, summarize_ms
from ..errors import UsageError
from .cuda import import_cuda
from .machine import device_machine
from .runtime import TrtRunner
from .versions import import_tensorrt

log = logging.getLogger("trtdeploy.trt")


class LayerTimes:
    """Layer times per call, in the order TensorRT reports the layers."""

    def __init__(self) -> None:
        self.calls: list[dict[str, float]] = []
        self.order: dict[str, int] = {}

    def start_call(self) -> None:
        self.calls.append({})

    def add(self, layer: str, ms: float) -> None:
        if not self.calls:
            self.start_call()
        call = self.calls[-1]
        call[layer] = call.get(layer, 0.0) + float(ms)  # a layer reported twice in a call (loops) adds up
        self.order.setdefault(layer, len(self.order))

    def reset(self) -> None:
        self.calls.clear()
        self.order.clear()

    def summary(self) -> dict[str, Any]:
        """{"calls", "total_ms" (statistics of the per-call sums), "layers": [...] by median, slowest first}.

        A layer's "share" is its median over the sum of all layers' medians, so the shares add
        up to 1 and do not depend on which calls were slow overall."""
        calls = [c for c in self.calls if c]
        if not calls:
            raise UsageError("no layer times were reported: was the profiler attached to the context?")
        rows = []
        for layer, index in self.order.items():
            stats = summarize_ms([c.get(layer, 0.0) for c in calls])
            rows.append({"name": layer, "index": index, "median_ms": stats["median"], "mean_ms": stats["mean"],
                         "p90_ms": stats["p90"], "max_ms": stats["max"]})
        medians = sum(r["median_ms"] for r in rows)
        for r in rows:
            r["share"] = r["median_ms"] / medians if medians > 0 else 0.0
        rows.sort(key=lambda r: (-r["median_ms"], r["index"]))
        return {"calls": len(calls), "total_ms": summarize_ms([sum(c.values()) for c in calls]),
                "sum_of_medians_ms": medians, "layers": rows}


def make_profiler(trt: ModuleType, times: LayerTimes) -> Any:
    """A `trt.IProfiler` that adds what TensorRT reports to `times`.

    The class is defined inside this function so the module imports without TensorRT."""

    class LayerProfiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            times.add(layer_name, ms)

    return LayerProfiler()


def profile_engine(plan: str | Path, batch: int | None = None, iters: int = 100, warmup: int = 10,
                   seed: int = 0) -> dict[str, Any]:
    """Run `plan` `warmup` + `iters` times on random inputs of `batch` (default: the profile's
    opt) with a profiler attached; the layer summary plus what ran where."""
    if iters < 1 or warmup < 0:
        raise UsageError(f"need --iters >= 1 and --warmup >= 0, got {iters} and {warmup}")
    trt = import_tensorrt()
    times = LayerTimes()
    runner = TrtRunner(plan, timing=False, profiler=make_profiler(trt, times))
    batch = check_batch(runner, batch)
    feed = random_feed(runner.input_specs(), batch, seed)
    with runner:
        for _ in range(warmup):
            runner.infer(feed)
        times.reset()
        for _ in range(iters):
            times.start_call()
            runner.infer(feed)
    summary = times.summary()
    log.info("profile: %s, batch %d: %d layers, %.3f ms per call (median of %d)", Path(plan).name, batch,
             len(summary["layers"]), summary["total_ms"]["median"], summary["calls"])
    return {"engine": str(plan), "plan_sha256": runner.sidecar.plan_sha256, "model": runner.sidecar.model,
            "precision": runner.sidecar.precision, "batch": batch, "warmup": warmup, "iters": iters,
            "input_shapes": {k: list(v.shape) for k, v in feed.items()}, **summary,
            "machine": device_machine(import_cuda(), trt, runner.device).to_json()}


def check_batch(runner: TrtRunner, batch: int | None) -> int:
    """`batch`, or the engine's opt batch, refused outside the engine's profile."""
    lo, opt, hi = runner.sidecar.batch
    if batch is None:
        return int(opt)
    if not lo <= batch <= hi:
        raise UsageError(f"--batch {batch} is outside {runner.engine_path.name}'s profile [{lo}, {hi}]; "
                         f"choose {lo}..{hi}, or rebuild with `trtdeploy build BUNDLE --batch MIN OPT MAX`")
    return int(batch)


def top_layers_text(result: dict[str, Any], count: int = 15) -> str:
    """The slowest layers as a plain-text table."""
    rows = result["layers"][:count]
    width = min(max((len(r["name"]) for r in rows), default=5), 90)
    lines = [f"{'median ms':>10}  {'share':>6}  layer"]
    for r in rows:
        name = r["name"] if len(r["name"]) <= width else r["name"][: width - 3] + "..."
        lines.append(f"{r['median_ms']:10.4f}  {r['share'] * 100:5.1f}%  {name}")
    rest = len(result["layers"]) - len(rows)
    if rest > 0:
        lines.append(f"... and {rest} more layers ({sum(r['share'] for r in result['layers'][count:]) * 100:.1f}%)")
    return "\n".join(lines)
