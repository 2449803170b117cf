"""The bundle's layout, named once: every stage finds its files through these names.

    manifest.json  model.onnx  model.fp16.onnx  model.int8.onnx  reference.npz
    saved_model/   calibration/  engines/  reports/
    .trtdeploy.lock  .trtdeploy-journal.json   (the writers' lock; a pending update)
"""
from __future__ import annotations

MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
REFERENCE_NPZ = "reference.npz"
SAVED_MODEL = "saved_model"
SCALES_JSON = "calibration/scales.json"
TRT_CACHE = "calibration/trt.cache"
DATASET_JSON = "calibration/dataset.json"
CALIBRATION_FILES = (ONNX_FILES["int8"], SCALES_JSON, TRT_CACHE, DATASET_JSON)
ENGINES_DIR = "engines"
REPORTS_DIR = "reports"
LOCK = ".trtdeploy.lock"
JOURNAL = ".trtdeploy-journal.json"

# What a bundle holds at its top level; `export --force` replaces a directory holding these
# and nothing else (a user's file in it is not ours to delete).
TOP_LEVEL = frozenset({MANIFEST, *ONNX_FILES.values(), REFERENCE_NPZ, SAVED_MODEL, "calibration", ENGINES_DIR,
                       REPORTS_DIR, LOCK, JOURNAL})


def remake_command(rel: str, root: object) -> str:
    """The command that (re)writes the bundle file `rel`."""
    if rel == ONNX_FILES["fp16"]:
        return f"trtdeploy fp16 {root}"
    if rel in CALIBRATION_FILES:
        return f"trtdeploy calibrate {root} --data DATA --recalibrate"
    if rel.startswith(ENGINES_DIR + "/"):
        return f"trtdeploy build {root}"
    return f"trtdeploy export --out {root} --force"
