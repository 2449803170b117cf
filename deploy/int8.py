"""INT8 facts shared by calibration (workstation), the TensorRT cache format, parity and the CLI.

Standard library only: `trtdeploy calibrate --help` and the device side import it.
"""
from __future__ import annotations

# Symmetric int8: scale = amax / INT8_MAX, zero point 0 (TensorRT rejects any other).
INT8_MAX = 127

# How calibration chooses each tensor's range (calibration/ranges.py implements them).
CALIBRATION_METHODS = ("entropy", "max", "percentile", "mse")
# `calibrate --method auto`: several of those on the same statistics, the best kept (calibration/auto.py).
AUTO_METHOD = "auto"

# The ONNX op types whose inputs `calibration.qdq.plan_qdq` may give Q/DQ pairs: Conv (input
# and weight; depthwise convs too), the residual Add, the pre-activation BatchNormalization, the
# shortcut MaxPool and a MaxPool on a quantized tensor, and AveragePool. Keeping a node of
# another type in high precision changes nothing.
QDQ_OP_TYPES = ("Conv", "Add", "BatchNormalization", "MaxPool", "AveragePool")
