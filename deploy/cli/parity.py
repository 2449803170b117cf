"""`trtdeploy parity BUNDLE ...`: every backend against the FP32 reference, as JSON + HTML.

Exit status: 0 when every backend that ran passes, 1 when one fails (or none ran),
2 for usage errors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

BACKEND_NAMES = "tf, ort-fp32, ort-fp16, ort-int8, trt-fp32, trt-fp16, trt-int8"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "parity", help="accuracy parity of every backend vs the FP32 reference (parity.json + parity.html)",
        description="Run TF, ONNX Runtime (FP32/FP16/INT8) and TensorRT engines on the same inputs and judge "
                    "each against the FP32 reference (TF when it runs here, else reference.npz) with "
                    "per-precision thresholds. Backends that cannot run here are listed as skipped.",
    )
    from . import BUNDLE_HELP, DATA_HELP

    p.add_argument("bundle", type=Path, metavar="BUNDLE", help=BUNDLE_HELP)
    p.add_argument("--data", type=Path, metavar="PATH",
                   help=f"inputs to compare on: {DATA_HELP}; labels give accuracy (default: the bundle's "
                        "reference.npz)")
    p.add_argument("--skip-bad", action="store_true", help="leave unreadable --data images out (listed in the report)")
    p.add_argument("--backends", metavar="LIST", help=f"comma-separated, from: {BACKEND_NAMES} (default: all)")
    p.add_argument("--engine", type=Path, nargs="+", action="extend", default=[], metavar="PLAN",
                   help="TensorRT plan(s) to use instead of BUNDLE/engines/NAME.PRECISION.plan")
    p.add_argument("--num-images", type=int, metavar="N",
                   help="use N images (a seeded subset of --data, or the first N of reference.npz)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --num-images subset (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, metavar="B", help="default: %(default)s")
    p.add_argument("--out", type=Path, metavar="DIR", help="report directory (default: BUNDLE/reports)")
    p.add_argument("--threshold", action="append", default=[], metavar="[BACKEND:][OUTPUT:]KEY=VALUE | FILE.json",
                   help="override a threshold, e.g. ort-int8:logits:top1_agreement=0.97 or fp16:accuracy_drop=0.5 "
                        "(VALUE `none` disables); repeatable")
    p.set_defaults(func=run)


def summary_table(result: dict) -> str:
    main = result["data"]["main_output"]
    rows = [("backend", "status", "result", "max|diff|/max|ref|", "cos min", "top1 agr", "top1 %", "Δ pts")]

    def f(x, spec):
        return "-" if x is None else format(x, spec)

    for b, e in result["backends"].items():
        m = e["outputs"].get(main, {})
        a = e["accuracy"] or {}
        verdict = {True: "PASS", False: "FAIL"}.get(e["pass"], "-")
        rows.append((b, e["status"], verdict, f(m.get("max_abs_scaled"), ".2e"), f(m.get("cosine_min"), ".5f"),
                     f(m.get("top1_agreement"), ".4f"), f(a.get("top1"), ".2f"),
                     f(a.get("delta_top1_vs_fp32"), "+.2f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    for b, e in result["backends"].items():
        if e["status"] == "skipped":
            lines.append(f"skipped {b}: {e['reason']}")
        for failure in e["failures"]:
            lines.append(f"FAIL {b}: {failure}")
    return "\n".join(lines)


def _per_layer(bundle, backends: str | None) -> dict | None:
    """Per-layer FP32-vs-FP16/INT8 errors on reference.npz's inputs, where ONNX Runtime runs."""
    from ..parity import installed, load_reference_npz, parse_backends

    wanted = [p for p in ("fp16", "int8") if f"ort-{p}" in parse_backends(backends)]
    if not wanted or not installed("onnxruntime") or not installed("onnx"):
        return None
    from ..per_layer import per_layer_errors

    feed = {bundle.inputs[0].name: load_reference_npz(bundle)["input"]}
    return per_layer_errors(bundle, [feed], wanted) or None


def run(args: argparse.Namespace) -> int:
    from ..bundle import open_bundle
    from ..errors import UsageError
    from ..layer_timing import load_profiles
    from ..parity import engines_by_precision, parse_threshold_args, run_parity
    from ..report import write_report

    bundle = open_bundle(args.bundle)
    # Paths the user typed are checked before any work (the per-layer pass takes a while).
    if args.data is not None and not args.data.exists():
        raise UsageError(f"--data {args.data}: no such file or directory; give an image folder, a .txt list of "
                         "images or a .npy/.npz array")
    engines = engines_by_precision(args.engine)
    result = run_parity(bundle, backends=args.backends, data=args.data, num_images=args.num_images,
                        engines=engines or None, thresholds=parse_threshold_args(args.threshold),
                        batch_size=args.batch_size, seed=args.seed, per_layer=_per_layer(bundle, args.backends),
                        skip_bad=args.skip_bad)
    result["layer_timing"] = load_profiles(bundle.reports_dir)  # written by `trtdeploy profile`
    json_path, html_path = write_report(result, args.out or bundle.reports_dir)
    ref = result["reference"]
    for warning in result["bundle"]["warnings"]:
        print(f"WARNING: {warning}")
    print(f"reference: {ref['name']} ({ref['note']}); {result['data']['num_images']} images")
    print(summary_table(result))
    print(f"{result['verdict']}; report: {html_path} (data: {json_path})")
    return 0 if result["pass"] else 1
