"""Runner-agnostic benchmarks: warm-up, timed runs, latency percentiles, images/s, machine info.

The seed experiment (the TF-slim ResNet tutorial) times forward passes of resnet_v2_152 at
batch 32 on 224x224 images after a warm-up; `forward_benchmark` does the same for every
backend: TensorFlow (the `deploy.slim` model), ONNX Runtime on the CPU and TensorRT engines,
each through the common runner interface.

Wall-clock latency is measured around `Runner.infer` (host to host, copies included). A
runner that measures more precisely exposes `last_timing` for the last call: a mapping or a
dataclass whose `*_ms` fields are milliseconds (TrtRunner's `Timing`: `gpu_ms`, CUDA events
around `execute_async_v3`, and `host_ms`, H2D + compute + D2H). Each series is summarised
separately under `device_ms` (`gpu`, `host`).

Needs only numpy at import.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import DeployError, ToolMissingError, UsageError
from .progress import progress
from .runners.base import Runner, TensorSpec

log = logging.getLogger(__name__)

# Distribution names to look up (no import: TensorFlow alone takes seconds to import).
_TOOLS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnx": ("onnx",),
    "tf2onnx": ("tf2onnx",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
    "pycuda": ("pycuda",),
    "matplotlib": ("matplotlib",),
}


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    # x86 says "model name"; ARM (Jetson) says "Model" or "Hardware", if anything.
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def tool_versions() -> dict[str, str]:
    """Versions of the optional tools installed here (absent ones left out)."""
    out = {}
    for tool, dists in _TOOLS.items():
        for dist in dists:
            try:
                out[tool] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            # JetPack installs TensorRT's bindings from a .deb without Python metadata.
            mod = sys.modules.get(tool)
            if mod is not None and getattr(mod, "__version__", None):
                out[tool] = str(mod.__version__)
    return out


def machine_info() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "tools": tool_versions(),
    }


# --- timing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TimingConfig:
    """Warm-up runs (not timed: first calls pay for allocation, autotuning, lazy init) and
    timed runs. Defaults are small for CI: resnet_v2_152 at batch 32 takes ~24 s a pass on a
    2-core CPU, so 1 + 5 passes is ~2.5 minutes (percentiles of 5 samples are rough). The seed
    tutorial used 10 warm-up and 100 timed runs: use those (--warmup 10 --iters 100) for
    numbers you publish."""

    warmup: int = 1
    iters: int = 5

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.iters < 1:
            raise UsageError(f"need --warmup >= 0 and --iters >= 1, got {self.warmup} and {self.iters}")


def summarize_ms(values: Sequence[float]) -> dict[str, float]:
    """Median, mean, p90, p99 (linear interpolation, numpy's default), min, max, std."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise UsageError("no timings to summarise")
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "min": float(a.min()), "max": float(a.max()),
            "std": float(a.std())}


def random_feed(specs: Sequence[TensorSpec], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs: dimension 0 is the batch, every other dimension must be static."""
    rng = np.random.default_rng(seed)
    feed = {}
    for s in specs:
        rest = s.shape[1:]
        if any(d is None or d < 0 for d in rest):
            raise UsageError(f"input {s.name!r} has dynamic non-batch dimensions {s.shape}; give a fixed size")
        shape = (batch, *rest)
        if np.issubdtype(s.dtype, np.floating):
            feed[s.name] = rng.standard_normal(shape).astype(s.dtype)
        else:
            feed[s.name] = np.zeros(shape, dtype=s.dtype)
    return feed


def _timing_series(timing: Any) -> dict[str, float]:
    """`*_ms` entries of a runner's `last_timing` (mapping or dataclass), keyed without `_ms`."""
    if timing is None:
        return {}
    if isinstance(timing, Mapping):
        items = timing.items()
    elif is_dataclass(timing):
        items = asdict(timing).items()
    else:
        return {}
    return {k[: -len("_ms")]: float(v) for k, v in items if k.endswith("_ms")}


def time_runner(runner: Runner, feed: Mapping[str, np.ndarray], config: TimingConfig = TimingConfig(),
                clock: Callable[[], float] = time.perf_counter, desc: str = "timing") -> dict[str, Any]:
    """Warm up, then time `config.iters` passes of `feed` through `runner.infer`.

    A batch above the runner's `max_batch` (a TensorRT profile's maximum) is split, and one
    pass is then that many calls back to back (`calls_per_pass`; `last_timing` series summed).
    Returns latency statistics in ms per pass, images/s at the median latency, and the
    statistics of each series in the runner's `last_timing` (if it has one) under `device_ms`.
    """
    chunks = runner.split_batch(feed)
    for _ in range(config.warmup):
        for chunk in chunks:
            runner.infer(chunk)
    wall: list[float] = []
    series: dict[str, list[float]] = {}
    for _ in progress(range(config.iters), desc=desc, total=config.iters):
        summed: dict[str, float] = {}
        t0 = clock()
        for chunk in chunks:
            runner.infer(chunk)
            for key, ms in _timing_series(getattr(runner, "last_timing", None)).items():
                summed[key] = summed.get(key, 0.0) + ms
        wall.append((clock() - t0) * 1e3)
        for key, ms in summed.items():
            series.setdefault(key, []).append(ms)
    batch = int(len(next(iter(feed.values())))) if feed else 0
    latency = summarize_ms(wall)
    out: dict[str, Any] = {
        "warmup": config.warmup, "iters": config.iters, "batch": batch, "calls_per_pass": len(chunks),
        "input_shapes": {k: list(v.shape) for k, v in feed.items()},
        "latency_ms": latency,
        "images_per_s": batch * 1e3 / latency["median"] if latency["median"] > 0 else None,
    }
    if series:
        out["device_ms"] = {k: summarize_ms(v) for k, v in series.items()}
    return out


# --- the seed's TensorFlow model -------------------------------------------------------


class TFFunctionRunner(Runner):
    """A runner over a TensorFlow callable taking one NHWC float32 batch (the slim model)."""

    def __init__(self, fn: Callable[[Any], Any], input_name: str, shape: tuple[int | None, ...],
                 name: str = "tf", output_name: str = "logits"):
        self._fn = fn
        self._spec = TensorSpec(input_name, shape, np.dtype(np.float32))
        self.name = name
        self._output = output_name

    def input_specs(self) -> list[TensorSpec]:
        return [self._spec]

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {self._output: np.asarray(self._fn(feed[self._spec.name]))}


def tf_forward_runner(model_name: str, batch: int, image_size: int) -> Runner:
    """`deploy.slim`'s `model_name` (random weights, 1001 classes) as a runner on
    [batch, image_size, image_size, 3] inputs, traced once with a fixed signature.

    Raises ToolMissingError when TensorFlow or `deploy.slim` cannot be imported here.
    """
    from .runners.tf import import_tf

    tf = import_tf()  # TF32 off, GPU memory on demand (TensorRT engines are timed in this process too)
    try:
        from .slim.resnet_v2 import ResNetConfig, ResNetV2
        from .slim.spec import LAYOUTS
    except ImportError as e:
        raise ToolMissingError(f"deploy.slim is not importable ({e})") from None
    if model_name not in LAYOUTS:
        raise UsageError(f"unknown model {model_name!r}; choose one of {', '.join(sorted(LAYOUTS))}")
    model = ResNetV2(ResNetConfig.for_name(model_name))

    @tf.function(input_signature=[tf.TensorSpec([batch, image_size, image_size, 3], tf.float32)])
    def forward(x):
        return model(x)[0]

    return TFFunctionRunner(lambda x: forward(tf.constant(x)).numpy(), "input", (batch, image_size, image_size, 3))


# --- the forward benchmark -------------------------------------------------------------

FORWARD_BACKENDS = ("tf", "ort-fp32", "ort-int8", "trt-fp32", "trt-fp16", "trt-int8")


def _engine_info(plan: Path) -> dict[str, Any]:
    side = plan.with_suffix(".json")
    build = None
    if side.is_file():
        try:
            build = json.loads(side.read_text())
        except (OSError, ValueError) as e:
            build = {"error": f"unreadable sidecar: {e}"}
    return {"path": str(plan), "build": build}


SEED_MODEL = "resnet_v2_152"  # the seed experiment's network and input size, without a bundle
SEED_IMAGE_SIZE = 224


def _bundle_image_size(bundle: Any) -> list[int] | None:
    i = bundle.inputs[0]
    if i.layout not in ("NCHW", "NHWC") or len(i.shape) != 4:
        return None
    return list(i.shape[2:4] if i.layout == "NCHW" else i.shape[1:3])


def _runner(name: str, bundle: Any, model: str, batch: int, image_size: int,
            engine_map: Mapping[str, Path]) -> Runner | Any:
    from . import parity

    if bundle is not None:  # tf: the bundle's SavedModel, the network the engines were built from
        return parity.make_runner(name, bundle, engine_map)
    if name != "tf":
        return parity.Skip("needs --bundle DIR")
    try:
        return tf_forward_runner(model, batch, image_size)
    except ToolMissingError as e:
        return parity.Skip(str(e))


def _engine_forward(plan: Path, batch: int, config: TimingConfig, seed: int) -> dict[str, Any]:
    """A TensorRT engine timed by `trtdeploy bench` (CUDA events: H2D, GPU compute, D2H, and the
    runner's overhead), with the keys every forward result has (`latency_ms`: wall per call)."""
    from .trt.enginebench import BenchConfig, bench_engine

    res = bench_engine(plan, BenchConfig(batch=batch, iters=config.iters, warmup_iters=config.warmup, seed=seed))
    res.update(warmup=config.warmup, iters=config.iters, latency_ms=res["wall_ms"],
               images_per_s=res["throughput"]["images_per_s"])
    return res


def forward_benchmark(model: str | None = None, batch: int = 32, image_size: int | None = None,
                      config: TimingConfig = TimingConfig(), bundle_dir: str | Path | None = None,
                      backends: Sequence[str] | None = None, engines: Sequence[str | Path] | None = None,
                      seed: int = 0) -> dict[str, Any]:
    """Time forward passes of one model on every requested backend; unavailable ones are
    listed as skipped.

    With a bundle every backend runs the bundle's model at its input size (`tf` its
    SavedModel); without one, `tf` runs the `deploy.slim` network `model` (random weights) at
    `image_size` (default resnet_v2_152 at 224, the seed experiment). `model` and
    `image_size` at the top of the result are the ones every result is for.
    """
    from . import parity  # parity imports this module for machine_info

    names = list(backends) if backends else list(FORWARD_BACKENDS)
    for n in names:
        if n not in parity.BACKENDS:
            raise UsageError(f"unknown backend {n!r}; choose from {', '.join(parity.BACKENDS)}")
    bundle = None
    if bundle_dir is not None:
        from .bundle import open_bundle
        bundle = open_bundle(bundle_dir)
        if model is not None or image_size is not None:
            raise UsageError(f"--model and --image-size choose the network without --bundle; with --bundle every "
                             f"backend times the bundle's model ({bundle.model_name}) at its input size")
    model = bundle.model_name if bundle is not None else (model or SEED_MODEL)
    size = _bundle_image_size(bundle) if bundle is not None else [image_size or SEED_IMAGE_SIZE] * 2
    engine_map = parity.engines_by_precision(engines)
    results: dict[str, Any] = {}
    for name in names:
        runner = _runner(name, bundle, model, batch, size[0] if size else 0, engine_map)
        if isinstance(runner, parity.Skip):
            results[name] = {"status": "skipped", "reason": runner.reason}
            log.info("benchmark: %s skipped: %s", name, runner.reason)
            continue
        try:
            # A batch the engine takes in one call is timed by `trtdeploy bench`; a larger one
            # is split by time_runner (one pass, several calls), as parity and infer split it.
            engine = name.startswith("trt-") and bundle is not None
            if engine and batch <= (runner.max_batch or batch):
                plan = parity.engine_path(bundle, parity.backend_precision(name), engine_map)
                res = _engine_forward(plan, batch, config, seed)
            else:
                if engine:
                    runner.timing = True  # parity's runners record no CUDA events; device_ms needs them
                with runner:
                    feed = random_feed(runner.input_specs(), batch, seed)
                    res = time_runner(runner, feed, config, desc=name)
        except DeployError as e:
            results[name] = {"status": "skipped", "reason": str(e)}
            continue
        res["status"] = "ran"
        if name.startswith("trt-") and bundle is not None:
            res["engine"] = _engine_info(parity.engine_path(bundle, parity.backend_precision(name), engine_map))
        res["model"] = model
        results[name] = res
        log.info("benchmark: %s median %.2f ms, %.1f images/s", name, res["latency_ms"]["median"],
                 res["images_per_s"] or 0.0)
    return {"experiment": "forward", "model": model, "batch": batch, "image_size": size,
            "timing": asdict(config), "bundle": str(bundle_dir) if bundle_dir else None,
            "machine": machine_info(), "results": results}
