"""TensorFlow runner: the exported SavedModel, fed in the bundle's input layout."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..bundle import Bundle
from ..errors import BundleError, ToolMissingError
from .base import Runner, TensorSpec


def quiet_tensorflow_startup() -> None:
    """Hide TensorFlow's C++ start-up chatter (CUDA probing: "failed call to cuInit" on every
    machine without a GPU, oneDNN notes) before TensorFlow is imported; failures that matter
    raise in Python. A value the user set is kept."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def import_tf():
    """TensorFlow, with TF32 off: it is the FP32 reference every other backend is judged
    against, and TF32 (TensorFlow's default on Ampere and newer GPUs) rounds convolution
    inputs to 10-bit mantissas, ~1e-3 relative error, ten times the FP32 parity threshold.
    No effect on CPUs."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ToolMissingError("TensorFlow is not installed; `pip install 'trtdeploy[export]'`") from None
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return tf


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
        path = self.bundle.path("saved_model")
        if not path.is_dir():
            raise BundleError(f"{path}: missing; the TF reference needs the SavedModel (re-run `trtdeploy export`)")
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
