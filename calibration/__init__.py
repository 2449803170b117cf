"""INT8 calibration on the workstation: activation statistics (histograms), range methods, Q/DQ insertion
and the pipeline that writes model.int8.onnx and TensorRT's calibration cache (whose format
lives in deploy.trt.calibration_cache, so the device reads it without this package). Its
inputs come from deploy.data. Importing it needs only numpy."""
