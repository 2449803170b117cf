"""The forward benchmark: forward-pass latency and images/s of one model on every backend.

The seed experiment (the TF-slim ResNet tutorial) times forward passes of resnet_v2_152 at
batch 32 on 224x224 images after a warm-up; `forward_benchmark` does the same for every
backend: TensorFlow (the `deploy.slim` model, or a bundle's SavedModel), ONNX Runtime on the
CPU and TensorRT engines, each through the common runner interface and `timing.time_runner`.
A TensorRT engine that takes the batch in one call is timed by `trtdeploy bench`
(deploy/trt/enginebench.py: CUDA events for H2D, GPU compute, D2H, and the runner's overhead);
a larger batch is split by `time_runner` (one pass, several calls), as parity and infer split
it, with the runner's CUDA events on.

Needs only numpy at import.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..bundle.engines import sidecar_path
from ..env import machine_info
from ..errors import DeployError, ToolMissingError, UsageError
from ..parity import backends as parity_backends
from ..parity.backends import Skip
from ..runners import BACKENDS, backend_precision
from ..runners.base import Runner, TensorSpec
from ..runners.timing import TimingConfig, random_feed, time_runner

log = logging.getLogger("trtdeploy.bench")

FORWARD_BACKENDS = ("tf", "ort-fp32", "ort-int8", "trt-fp32", "trt-fp16", "trt-int8")
SEED_MODEL = "resnet_v2_152"  # the seed experiment's network and input size, without a bundle
SEED_IMAGE_SIZE = 224


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
    from ..runners.tf import import_tf

    tf = import_tf()  # TF32 off, GPU memory on demand (TensorRT engines are timed in this process too)
    try:
        from ..slim.net import SlimNet
        from ..slim.netspec import zoo_spec
        from ..slim.resnet import LAYOUTS
    except ImportError as e:
        raise ToolMissingError(f"deploy.slim is not importable ({e})") from None
    if model_name not in LAYOUTS:
        raise UsageError(f"unknown model {model_name!r}; choose one of {', '.join(sorted(LAYOUTS))}")
    model = SlimNet(zoo_spec(model_name))

    @tf.function(input_signature=[tf.TensorSpec([batch, image_size, image_size, 3], tf.float32)])
    def forward(x):
        return model(x)[0]

    return TFFunctionRunner(lambda x: forward(tf.constant(x)).numpy(), "input", (batch, image_size, image_size, 3))


def _engine_info(plan: Path) -> dict[str, Any]:
    side = sidecar_path(plan)
    build = None
    if side.is_file():
        try:
            build = json.loads(side.read_text())
        except (OSError, ValueError) as e:
            build = {"error": f"unreadable sidecar: {e}"}
    return {"path": str(plan), "build": build}


def _bundle_image_size(bundle: Any) -> list[int] | None:
    i = bundle.inputs[0]
    if i.layout not in ("NCHW", "NHWC") or len(i.shape) != 4:
        return None
    return list(i.shape[2:4] if i.layout == "NCHW" else i.shape[1:3])


def _runner(name: str, bundle: Any, model: str, batch: int, image_size: int,
            engine_map: Mapping[str, Path]) -> Runner | Skip:
    if bundle is not None:  # tf: the bundle's SavedModel, the network the engines were built from
        return parity_backends.make_runner(name, bundle, engine_map)
    if name != "tf":
        return Skip("needs --bundle DIR")
    try:
        return tf_forward_runner(model, batch, image_size)
    except ToolMissingError as e:
        return Skip(str(e))


def _open(bundle_dir: str | Path | None, model: str | None, image_size: int | None) -> Any:
    if bundle_dir is None:
        return None
    from ..bundle import open_bundle

    bundle = open_bundle(bundle_dir)
    if model is not None or image_size is not None:
        raise UsageError(f"--model and --image-size choose the network without --bundle; with --bundle every "
                         f"backend times the bundle's model ({bundle.model_name}) at its input size")
    return bundle


def _engine_forward(plan: Path, batch: int, config: TimingConfig, seed: int) -> dict[str, Any]:
    """A TensorRT engine timed by `trtdeploy bench`, with the keys every forward result has
    (`latency_ms`: wall time per call)."""
    from ..trt.enginebench import BenchConfig, bench_engine

    res = bench_engine(plan, BenchConfig(batch=batch, iters=config.iters, warmup_iters=config.warmup, seed=seed))
    res.update(warmup=config.warmup, iters=config.iters, latency_ms=res["wall_ms"],
               images_per_s=res["throughput"]["images_per_s"])
    return res


def _time_one(runner: Runner, batch: int, config: TimingConfig, seed: int, desc: str,
              plan: Path | None = None) -> dict[str, Any]:
    """One backend's timings, or why it was skipped (a runner that cannot start here). `plan`:
    the engine a trt-* runner runs."""
    try:
        if plan is not None and batch <= (runner.max_batch or batch):
            res = _engine_forward(plan, batch, config, seed)
        else:
            if plan is not None:
                runner.timing = True  # parity's TensorRT runners record no CUDA events; device_ms needs them
            with runner:
                feed = random_feed(runner.input_specs(), batch, seed)
                res = time_runner(runner, feed, config, desc=desc)
    except DeployError as e:
        return {"status": "skipped", "reason": str(e)}
    res["status"] = "ran"
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
    names = list(backends) if backends else list(FORWARD_BACKENDS)
    for n in names:
        if n not in BACKENDS:
            raise UsageError(f"unknown backend {n!r}; choose from {', '.join(BACKENDS)}")
    bundle = _open(bundle_dir, model, image_size)
    model = bundle.model_name if bundle is not None else (model or SEED_MODEL)
    size = _bundle_image_size(bundle) if bundle is not None else [image_size or SEED_IMAGE_SIZE] * 2
    engine_map = parity_backends.engines_by_precision(engines)
    results: dict[str, Any] = {}
    for name in names:
        runner = _runner(name, bundle, model, batch, size[0] if size else 0, engine_map)
        if isinstance(runner, Skip):
            results[name] = {"status": "skipped", "reason": runner.reason}
            log.info("benchmark: %s skipped: %s", name, runner.reason)
            continue
        plan = None
        if name.startswith("trt-") and bundle is not None:
            plan = parity_backends.engine_path(bundle, backend_precision(name), engine_map)
        res = results[name] = _time_one(runner, batch, config, seed, name, plan)
        if res["status"] != "ran":
            continue
        if plan is not None:
            res["engine"] = _engine_info(plan)
        res["model"] = model
        log.info("benchmark: %s median %.2f ms, %.1f images/s", name, res["latency_ms"]["median"],
                 res["images_per_s"] or 0.0)
    return {"experiment": "forward", "model": model, "batch": batch, "image_size": size,
            "timing": asdict(config), "bundle": str(bundle_dir) if bundle_dir else None,
            "machine": machine_info().to_json(), "results": results}
