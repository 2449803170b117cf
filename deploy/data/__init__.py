"""What every stage reads as input: preprocessing presets (`preprocess`) and input sets
(`inputs`: image folders, list files, .npy/.npz). Used by calibration, parity, infer and the
implicit-INT8 build; numpy and Pillow only (this file: the standard library, so the CLI's
parsers can read the default below)."""

# Inputs per model call where a command streams an input set (calibrate, its accuracy pass, parity).
DEFAULT_BATCH_SIZE = 16
