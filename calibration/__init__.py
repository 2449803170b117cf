"""Calibration sets, preprocessing presets, activation statistics, calibrators,
TensorRT's calibration cache and Q/DQ insertion. Importing it needs only numpy."""
