"""`trtdeploy parity BUNDLE ...`: every backend against the FP32 reference, as JSON + HTML.

Exit status: 0 when every backend that ran passes, 1 when one fails (or none ran),
2 for usage errors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data import DEFAULT_BATCH_SIZE
from ..runners import BACKENDS
from .args import add_batch_size, add_bundle, add_data, add_out, add_skip_bad, add_subset

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


def run(args: argparse.Namespace) -> int:
    from ..bundle import open_bundle
    from ..errors import UsageError
    from ..parity import engines_by_precision, parse_threshold_args
    from ..parity.pipeline import parity_report
    from ..parity.request import ParityRequest
    from ..parity.summary import summary_table
    from ..serving.live import live_backends

    # Paths the user typed are checked before any work (the per-layer pass takes a while).
    if args.data is not None and not args.data.exists():
        raise UsageError(f"--data {args.data}: no such file or directory; give an image folder, a .txt list of "
                         "images or a .npy/.npz array")
    bundle = open_bundle(args.bundle, verify=args.verify)
    extra = live_backends(bundle, triton=args.triton, triton_model=args.triton_model, deepstream=args.deepstream,
                          data=args.data, num_images=args.num_images, seed=args.seed, skip_bad=args.skip_bad)
    backends = ",".join([args.backends, *extra]) if args.backends and extra else args.backends
    request = ParityRequest.of(backends, data=args.data, num_images=args.num_images, seed=args.seed,
                               skip_bad=args.skip_bad, batch_size=args.batch_size,
                               engines=engines_by_precision(args.engine), extra_backends=extra,
                               thresholds=tuple(parse_threshold_args(args.threshold)), out=args.out)
    report = parity_report(bundle, request)
    result = report.result
    for warning in result.bundle.warnings:
        print(f"WARNING: {warning}")
    print(f"reference: {result.reference.name} ({result.reference.note}); {result.data.num_images} images")
    print(summary_table(result))
    print(f"{result.verdict}; report: {report.html_path} (data: {report.json_path})")
    return 0 if result.passed else 1
