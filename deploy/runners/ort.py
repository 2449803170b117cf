"""ONNX Runtime runner: runs the FP32, FP16 and Q/DQ INT8 files TensorRT will consume, on the CPU."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BundleError, ToolMissingError
from .base import Runner, TensorSpec

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
}


def import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ToolMissingError(
            "ONNX Runtime is not installed; `pip install 'trtdeploy[export]'` (or onnxruntime)"
        ) from None
    return ort


def make_session(model: str | Path | bytes, threads: int | None = None, spinning: bool = True):
    """An ONNX Runtime CPU session with logging at error level (Q/DQ models warn by the screenful).

    `spinning=False`: ONNX Runtime's threads sleep instead of spinning while they wait, for a
    caller that runs its own threads between runs (the calibration statistics)."""
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
        where = "model bytes" if isinstance(model, bytes) else str(model)
        raise BundleError(f"{where}: ONNX Runtime cannot load it ({str(e).splitlines()[0]}); re-export it") from None


class OrtRunner(Runner):
    """Runs an ONNX file with ONNX Runtime's CPU provider."""

    def __init__(self, model: str | Path, name: str = "onnxruntime", outputs: Sequence[str] | None = None,
                 threads: int | None = None):
        self.model_path = Path(model)
        if not self.model_path.is_file():
            raise BundleError(f"{self.model_path}: no such ONNX file")
        self.name = name
        self._outputs = list(outputs) if outputs else None
        self._threads = threads
        self._session = None

    def activate(self) -> None:
        if self._session is None:
            self._session = make_session(self.model_path, self._threads)

    def close(self) -> None:
        self._session = None

    @property
    def session(self):
        self.activate()
        return self._session

    def input_specs(self) -> list[TensorSpec]:
        specs = []
        for i in self.session.get_inputs():
            shape = tuple(d if isinstance(d, int) else None for d in i.shape)
            specs.append(TensorSpec(i.name, shape, np.dtype(_ORT_TYPES[i.type])))
        return specs

    def output_names(self) -> list[str]:
        return self._outputs or [o.name for o in self.session.get_outputs()]

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = self.output_names()
        values = self.session.run(names, dict(feed))
        return dict(zip(names, values))
