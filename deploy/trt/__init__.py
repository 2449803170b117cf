"""TensorRT engine building and the pycuda runtime.

The device half of the pipeline: it needs only tensorrt, pycuda and numpy, and imports
the first two lazily, so `import deploy.trt.build` works on a machine without either.
Nothing here imports TensorFlow, ONNX or ONNX Runtime.

- `versions`: import TensorRT, parse its version, what each version can do.
- `cuda`: pycuda import, the primary CUDA context, the GPU's name and compute capability.
- `sidecar`: the JSON written beside every engine and the checks run before loading one.
- `build`: `BuildConfig` and `build_engine(bundle, config)`.
- `calibrator`: the TensorRT <= 10 entropy calibrator that serves the bundle's cache.
- `calibration_cache`: the TensorRT <= 10 calibration-cache format (calibration writes it, build reads it).
- `runtime`: `TrtRunner`, the engine behind the common runner interface.
- `inspection`: the engine inspector's layers (NAME.PRECISION.layers.json) and what they say.
- `dla`: DLA builds for Jetson Orin (which releases, which core, GPU fallback).
- `doctor`: `trtdeploy doctor`, the device and a bundle's engines checked.
- `graphs`: CUDA-graph capture and replay of `execute_async_v3` through libcuda (ctypes).
- `profiler`: `trtdeploy profile`, per-layer times from TensorRT's IProfiler.
- `enginebench`: `trtdeploy bench`, trtexec's metrics through the runner.
- `machine`: the GPU (name, capability, memory, driver, clocks) that bench, profile and doctor record.
- `api_surface`: how tests find every TensorRT and pycuda name this package uses.
"""
