"""`trtdeploy parity` as one library call: hold the bundle, check where the report goes, rank
the layers, run every backend, write parity.json and parity.html. The CLI and the demo call it."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..bundle import Bundle
from ..bundle.reference import load_reference_npz
from .backends import installed
from .per_layer import LayerError, per_layer_errors
from .report import check_report_dir, write_report
from .request import ParityRequest
from .result import ParityResult
from .run import run_parity

log = logging.getLogger("trtdeploy.parity")


@dataclass(frozen=True)
class ParityReport:
    """A finished parity run and the report written for it."""

    result: ParityResult
    json_path: Path
    html_path: Path


def parity_report(bundle: Bundle, request: ParityRequest) -> ParityReport:
    """Run parity for `request` and write its report, the bundle held meanwhile: exclusively
    when the report goes into it (a second writer waits), shared otherwise. The report directory
    is checked before any work."""
    out = Path(request.out) if request.out is not None else bundle.reports_dir
    inside = Path(out).resolve().is_relative_to(bundle.root.resolve())
    with bundle.update("parity") if inside else bundle.reading("parity"):
        check_report_dir(out)
        per_layer = _per_layer(bundle, request) if request.per_layer else None
        result = run_parity(bundle, request, per_layer=per_layer)
        json_path, html_path = write_report(result, out)
    return ParityReport(result, json_path, html_path)


def _per_layer(bundle: Bundle, request: ParityRequest) -> dict[str, dict[str, LayerError]] | None:
    """Per-layer FP32-vs-FP16/INT8 errors on reference.npz's inputs, where ONNX Runtime runs."""
    wanted = [p for p in ("fp16", "int8") if f"ort-{p}" in request.names]
    if not wanted or not installed("onnxruntime") or not installed("onnx"):
        return None
    feed = {bundle.inputs[0].name: load_reference_npz(bundle)["input"]}
    return per_layer_errors(bundle, [feed], wanted) or None
