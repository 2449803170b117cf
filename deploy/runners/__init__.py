"""Runners: TensorFlow (`deploy.runners.tf`), ONNX Runtime (`deploy.runners.ort`),
TensorRT (`deploy.trt.runtime`). Each backend module is imported only when used."""
from .base import Runner, TensorSpec

__all__ = ["Runner", "TensorSpec"]
