"""`trtdeploy parity BUNDLE ...`: every backend against the FP32 reference, as JSON + HTML.

Exit status: 0 when every backend that ran passes, 1 when one fails (or none ran),
2 for usage errors.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..data import DEFAULT_BATCH_SIZE
from ..runners import BACKENDS
from .args import add_batch_size, add_bundle, add_data, add_out, add_skip_bad, add_subset

if TYPE_CHECKING:  # building the parser must not import deploy.parity
    from ..parity import ParityResult

BACKEND_NAMES = ", ".join(BACKENDS)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "parity", help="accuracy parity of every backend vs the FP32 reference (parity.json + parity.html)",
        description="Run TF, ONNX Runtime (FP32/FP16/INT8) and TensorRT engines on the same inputs and judge "
                    "each against the FP32 reference (TF when it runs here, else reference.npz) with "
                    "per-precision thresholds. Backends that cannot run here are listed as skipped.",
    )
    add_bundle(p)
    add_data(p, "inputs to compare on (default: the bundle's reference.npz; labels give accuracy)")
    add_skip_bad(p, "leave unreadable --data images out (listed in the report)")
    p.add_argument("--backends", metavar="LIST", help=f"comma-separated, from: {BACKEND_NAMES} (default: all)")
    p.add_argument("--engine", type=Path, nargs="+", action="extend", default=[], metavar="PLAN",
                   help="TensorRT plan(s) to use instead of BUNDLE/engines/NAME.PRECISION.plan")
    add_subset(p, "use N images (a seeded subset of --data, or the first N of reference.npz)")
    add_batch_size(p, DEFAULT_BATCH_SIZE, "inputs per backend call")
    add_out(p, "DIR", "report directory: parity.json and parity.html (default: BUNDLE/reports)")
    p.add_argument("--threshold", action="append", default=[], metavar="[BACKEND:][OUTPUT:]KEY=VALUE | FILE.json",
                   help="override a threshold, e.g. ort-int8:logits:top1_agreement=0.97 or fp16:accuracy_drop=0.5 "
                        "(VALUE `none` disables); repeatable")
    p.add_argument("--triton", metavar="URL", help="also judge the model a live Triton server serves (host:port), "
                   "as backend triton-PRECISION; an ensemble gets the encoded --data images")
    p.add_argument("--triton-model", metavar="NAME", help="the served model (default: the bundle's model name; "
                   "NAME_ensemble sends image bytes)")
    p.add_argument("--deepstream", action="store_true", help="also run ort-fp32 on the --data images preprocessed "
                   "as DeepStream's nvinfer does (resize only, no central crop), as backend deepstream-fp32")
    p.set_defaults(func=run)


def summary_table(result: ParityResult) -> str:
    """The result as a text table, then why backends were skipped and what failed."""
    main = result.data.main_output
    rows = [("backend", "status", "result", "max|diff|/max|ref|", "cos min", "top1 agr", "top1 %", "Δ pts")]

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    for b, e in result.backends.items():
        m, a = e.outputs.get(main), e.accuracy
        verdict = {True: "PASS", False: "FAIL"}.get(e.passed, "-")
        rows.append((b, e.status, verdict, f(getattr(m, "max_abs_scaled", None), ".2e"),
                     f(getattr(m, "cosine_min", None), ".5f"), f(getattr(m, "top1_agreement", None), ".4f"),
                     f(getattr(a, "top1", None), ".2f"), f(getattr(a, "delta_top1_vs_fp32", None), "+.2f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for b, e in result.backends.items():
        if e.status == "skipped":
            lines.append(f"skipped {b}: {e.reason}")
        for failure in e.failures:
            lines.append(f"FAIL {b}: {failure}")
    return "\n".join(lines)


def _per_layer(bundle, backends: str | None) -> dict | None:
    """Per-layer FP32-vs-FP16/INT8 errors on reference.npz's inputs, where ONNX Runtime runs."""
    from ..parity import installed, load_reference_npz, parse_backends, per_layer_errors

    wanted = [p for p in ("fp16", "int8") if f"ort-{p}" in parse_backends(backends)]
    if not wanted or not installed("onnxruntime") or not installed("onnx"):
        return None

    feed = {bundle.inputs[0].name: load_reference_npz(bundle)["input"]}
    return per_layer_errors(bundle, [feed], wanted) or None


def run(args: argparse.Namespace) -> int:
    from ..bundle import open_bundle
    from ..errors import UsageError
    from ..parity import engines_by_precision, parse_threshold_args, run_parity, write_report

    bundle = open_bundle(args.bundle)
    # Paths the user typed are checked before any work (the per-layer pass takes a while).
    if args.data is not None and not args.data.exists():
        raise UsageError(f"--data {args.data}: no such file or directory; give an image folder, a .txt list of "
                         "images or a .npy/.npz array")
    engines = engines_by_precision(args.engine)
    from ..serving.live import parity_backends

    with parity_backends(bundle, triton=args.triton, triton_model=args.triton_model, deepstream=args.deepstream,
                         data=args.data, num_images=args.num_images, seed=args.seed, skip_bad=args.skip_bad) as added:
        backends = ",".join([args.backends, *added]) if args.backends and added else args.backends
        result = run_parity(bundle, backends=backends, data=args.data, num_images=args.num_images,
                            engines=engines or None, thresholds=parse_threshold_args(args.threshold),
                            batch_size=args.batch_size, seed=args.seed, per_layer=_per_layer(bundle, args.backends),
                            skip_bad=args.skip_bad)
    json_path, html_path = write_report(result, args.out or bundle.reports_dir)
    for warning in result.bundle.warnings:
        print(f"WARNING: {warning}")
    print(f"reference: {result.reference.name} ({result.reference.note}); {result.data.num_images} images")
    print(summary_table(result))
    print(f"{result.verdict}; report: {html_path} (data: {json_path})")
    return 0 if result.passed else 1
