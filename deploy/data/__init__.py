"""What every stage reads as input: preprocessing presets (`preprocess`) and input sets
(`inputs`: image folders, list files, .npy/.npz). Used by calibration, parity, infer and the
implicit-INT8 build; numpy and Pillow only."""
