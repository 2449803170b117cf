"""TensorFlow runner: the exported SavedModel, fed in the bundle's input layout."""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from typing import Iterator, Mapping

import numpy as np

from ..bundle import SAVED_MODEL, Bundle
from ..errors import ToolMissingError
from .base import Runner, TensorSpec

log = logging.getLogger("trtdeploy.runners")

# What TensorFlow's shared libraries print while `import tensorflow` runs: absl's C++ log lines
# ("I0000 00:00:1795698272.732359    7202 cudart_stub.cc:31] Could not find cuda drivers ...",
# the oneDNN note, computation_placer's), which go to stderr whatever TF_CPP_MIN_LOG_LEVEL says
# because absl::InitializeLog has not run yet; absl's preamble saying so; cpu_feature_guard's
# second line; and the cuDNN/cuFFT/cuBLAS "Unable to register ... factory" errors of GPU builds,
# which TensorFlow itself calls harmless. Errors and anything else still show.
STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\s*$"
    r"|[IW]\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] "
    r"|E\d{4} [\d:.]+\s+\d+ [^\s\]]+:\d+\] Unable to register cu\w+ factory: "
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.\s*$")


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str] = STARTUP_NOISE) -> Iterator[None]:
    """Collect what is written to file descriptor 2 (C++ libraries write there directly), then
    pass on every line `noise` does not match, in order, once the block ends. A process that
    dies inside the block (a C++ abort) takes the collected lines with it: -v shows them."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no stderr to redirect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not noise.match(line))
            if kept:
                os.write(2, kept.encode())


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of `tensorflow` inside `filtered_stderr`."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # TensorFlow sees its own loader
        with filtered_stderr():
            self.loader.exec_module(module)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of `tensorflow` wherever it is imported (ours, tf2onnx's, tf-slim's).

    Every lookup gets the wrapped loader, not only the first: `importlib.util.find_spec`
    probes (parity lists TensorFlow as skipped or not with one) look the module up without
    loading it. Once it is loaded, the import system finds it in sys.modules and never asks."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_startup() -> None:
    """Hide TensorFlow's C++ start-up chatter (CUDA probing on every machine without a GPU,
    oneDNN notes): TF_CPP_MIN_LOG_LEVEL=3 for what it logs once running (a value the user set
    is kept), and `STARTUP_NOISE` filtered from stderr while it is imported, which that
    variable cannot reach. Failures that matter raise in Python."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


_tf_configured = False


def import_tf():
    """TensorFlow, set up for this process:

    - TF32 off (on every call, whoever turned it on): TensorFlow is the FP32 reference every
      other backend is judged against, and TF32 (its default on Ampere and newer GPUs) rounds
      convolution inputs to 10-bit mantissas, ~1e-3 relative error, ten times the FP32 parity
      threshold.
    - GPU memory on demand (once, before TensorFlow touches a GPU): by default its first GPU
      use maps nearly all GPU memory, and TensorRT in the same process (the demo, parity with
      tf and trt-*) has none left.

    No effect on CPUs."""
    global _tf_configured
    try:
        import tensorflow as tf
    except ImportError:
        raise ToolMissingError("TensorFlow is not installed; `pip install 'trtdeploy[export]'`") from None
    if not _tf_configured:
        _grow_gpu_memory(tf)
        _tf_configured = True
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return tf


def _grow_gpu_memory(tf) -> None:
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as e:  # TensorFlow initialised its GPUs before this process called import_tf
            log.warning("TensorFlow already holds its GPU memory (%s); TensorRT may run short of memory "
                        "in this process", e)
            return


class TFRunner(Runner):
    """Runs `BUNDLE/saved_model` (signature `serving_default`, NHWC inside).

    Inputs are taken in the manifest's layout (NCHW by default, as the ONNX model and TensorRT
    take them) and transposed here, so every runner gets the same feed.
    """

    name = "tf"

    def __init__(self, bundle: Bundle, name: str = "tf"):
        self.bundle = bundle
        self.name = name
        self._fn = None
        self._input = bundle.inputs[0]

    def activate(self) -> None:
        if self._fn is not None:
            return
        tf = import_tf()
        path = self.bundle.file(SAVED_MODEL)  # checked against the manifest, as every bundle file read
        self._fn = tf.saved_model.load(str(path)).signatures["serving_default"]

    def close(self) -> None:
        self._fn = None

    def input_specs(self) -> list[TensorSpec]:
        i = self._input
        return [TensorSpec(i.name, tuple(None if d < 0 else d for d in i.shape), np.dtype(i.dtype))]

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.activate()
        tf = import_tf()
        x = feed[self._input.name]
        if self._input.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        out = self._fn(input=tf.constant(x))
        return {o.name: out[o.name].numpy() for o in self.bundle.outputs}
