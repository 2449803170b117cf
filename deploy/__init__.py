"""trtdeploy: TF-slim style models to TensorRT with parity you can trust.

Importing this package needs only numpy: TensorFlow, ONNX, ONNX Runtime, TensorRT
and pycuda are imported by the modules that use them, when they are used.
"""
__version__ = "0.1.0"
