"""Runners: TensorFlow (`deploy.runners.tf`), ONNX Runtime (`deploy.runners.ort`),
TensorRT (`deploy.trt.runtime`). Each backend module is imported only when used.

A backend is one runner at one precision: `tf` (the SavedModel, the FP32 reference),
`ort-<precision>` (ONNX Runtime on the bundle's ONNX of that precision) and
`trt-<precision>` (a TensorRT engine). Parity, the benchmarks and the CLI take these names.
"""
from .base import Runner, TensorSpec

BACKENDS = ("tf", "ort-fp32", "ort-fp16", "ort-int8", "trt-fp32", "trt-fp16", "trt-int8")


def backend_precision(backend: str) -> str:
    """`tf` -> fp32, `ort-int8` -> int8, ..."""
    return "fp32" if backend == "tf" else backend.split("-", 1)[1]


__all__ = ["BACKENDS", "Runner", "TensorSpec", "backend_precision"]
