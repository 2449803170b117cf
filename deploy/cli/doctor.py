"""`trtdeploy doctor [BUNDLE] [--json]`: is this device ready for TensorRT engines?"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor", help="check this device: TensorRT, CUDA driver, GPUs, DLA, and which engines of a bundle load",
        description="Report TensorRT (version, where it loads from), the CUDA driver, each GPU (compute "
                    "capability, memory), DLA cores, pycuda and numpy, what this TensorRT can build, and with a "
                    "BUNDLE which of its engines this device can load. Exit 0 when ready, 2 with one line per "
                    "problem otherwise (after the report).",
    )
    p.add_argument("bundle", type=Path, nargs="?", metavar="BUNDLE", help="also check this bundle's engines")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..trt.doctor import diagnose, format_report

    report = diagnose(args.bundle)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(format_report(report)))
    sys.stdout.flush()
    for problem in report["problems"]:
        print(f"error: {problem}", file=sys.stderr)
    return 0 if report["ready"] else 2
