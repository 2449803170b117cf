"""`trtdeploy fp16`: model.onnx -> model.fp16.onnx (FP16 inside, FP32 I/O)."""
from __future__ import annotations

import argparse

from .args import add_bundle, add_keep_fp32, held_bundle


def add_parser(sub) -> None:
    p = sub.add_parser("fp16", help="write model.fp16.onnx (FP16 inside, FP32 at the inputs/outputs)",
                       description="Convert the bundle's FP32 ONNX to FP16. Softmax, reductions and nodes whose "
                                   "values would overflow FP16 (reference inputs, calibration maxima) stay FP32.")
    add_bundle(p)
    add_keep_fp32(p, "ONNX node names to keep in FP32")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fp16 import convert_fp16

    with held_bundle(args, "fp16", write=True) as bundle:
        path = convert_fp16(bundle, keep_fp32=args.keep_fp32)
    info = bundle.fp16
    print(f"wrote {path} ({len(info.kept_fp32)} nodes kept FP32)")
    for node, reason in info.reasons.items():
        print(f"  {node}: {reason}")
    return 0
