"""Accuracy parity: every backend's outputs against the FP32 reference, judged per precision.

- `metrics`: per-output metrics (OutputComparison, compare_outputs) and accuracy (AccuracyCounter).
- `thresholds`: pass limits per precision and the `--threshold` override grammar.
- `backends`: the runner factory (a runner, or why it cannot run here) and engine lookup.
- `inputs`: reference.npz batches and input-set batches (through `deploy.data`).
- `per_layer`: per-layer error against FP32 and the calibrate line that keeps layers in float.
- `request`: what a run compares (`ParityRequest`).
- `run`: `run_parity`, the run and the judging.
- `pipeline`: `parity_report`, the whole command: the bundle held, the run, the report written.
- `result`: the typed result (`ParityResult`; `to_json()` is parity.json); `summary`: it as text.
- `engine_layers`: what each TensorRT engine that ran really runs (its layers file).
- `layer_timing`: the bundle's `trtdeploy profile` results, time beside per-layer error.
- `report`: parity.json and the self-contained parity.html.

Every module needs only numpy at import; TensorFlow, ONNX Runtime, TensorRT, onnx and
matplotlib are imported where they are used.
"""
from ..bundle.reference import load_reference_npz
from ..runners import BACKENDS, backend_precision
# The runner factory is used as `backends.make_runner`: one name to replace it by (the tests' fakes).
from .backends import Skip, engine_path, engine_precision, engines_by_precision, installed, parse_backends
from .inputs import Batch, folder_batches, npz_batches
from .per_layer import (LayerError, LayerSection, RankedLayer, compare_intermediates, keep_in_high_precision,
                     per_layer_errors, per_layer_section, rank_layers)
from .metrics import Accuracy, AccuracyCounter, Histogram, OutputComparison, OutputMetrics, accuracy, compare_outputs
from .report import render_html, write_report
from .result import BackendEntry, BundleInfo, DataInfo, ParityResult, Reference
from .request import ParityRequest
from .run import main_output, run_parity
from .thresholds import (Thresholds, ThresholdOverride, parse_threshold_args, parse_threshold_override,
                         resolve_thresholds)

__all__ = [
    "Accuracy", "AccuracyCounter", "BACKENDS", "BackendEntry", "Batch", "BundleInfo", "DataInfo", "Histogram",
    "LayerError", "LayerSection", "OutputComparison", "OutputMetrics", "ParityRequest", "ParityResult", "RankedLayer", "Reference",
    "Skip", "ThresholdOverride", "Thresholds", "accuracy", "backend_precision", "compare_intermediates",
    "compare_outputs", "engine_path", "engine_precision", "engines_by_precision", "folder_batches", "installed",
    "keep_in_high_precision", "load_reference_npz", "main_output", "npz_batches",
    "parse_backends", "parse_threshold_args", "parse_threshold_override", "per_layer_errors", "per_layer_section",
    "rank_layers", "render_html", "resolve_thresholds", "run_parity", "write_report",
]
