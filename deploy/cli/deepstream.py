"""`trtdeploy deepstream BUNDLE --out DIR`: a Gst-nvinfer classifier config, its labels and model file."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_bundle, add_out, held_bundle, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "deepstream", help="a DeepStream Gst-nvinfer classifier config (preprocessing mapped, labels, model file)",
        description="Write DIR/config_infer_classifier.txt ([property] keys of Gst-nvinfer: the model file, "
                    "network-mode, infer-dims, net-scale-factor and offsets from the bundle's preprocessing, "
                    "output-blob-names, classifier-threshold, labelfile-path), DIR/labels.txt (DeepStream's "
                    "classifier format: one line, names separated by ';') and the model file. What nvinfer cannot "
                    "reproduce (slim's central crop) is said in the file and here; measure it with `trtdeploy "
                    "parity BUNDLE --data DIR --deepstream`.",
    )
    add_bundle(p)
    add_out(p, "DIR", "output directory (replaced if a previous run wrote it)", required=True)
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="network-mode and which ONNX (default: %(default)s)")
    p.add_argument("--engine", type=Path, metavar="PLAN", help="a TensorRT plan for model-engine-file instead of an "
                   "ONNX that nvinfer builds")
    p.add_argument("--int8-mode", choices=("explicit", "implicit"), default="explicit",
                   help="int8: the Q/DQ ONNX (explicit), or model.onnx with int8-calib-file = our trt.cache "
                        "(implicit, TensorRT 10.x) (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="batch-size (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.0, metavar="P",
                   help="classifier-threshold (default: %(default)s)")
    p.add_argument("--approximate", action="store_true",
                   help="map a preprocessing whose arithmetic needs per-channel scales to nvinfer's single "
                        "net-scale-factor (their mean) instead of refusing it")
    p.add_argument("--labels", type=Path, metavar="FILE", help="class names, one per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..serving.deepstream import DeepStreamOptions, summary, write_deepstream

    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: give at least 1")
    opts = DeepStreamOptions(precision=args.precision, engine=args.engine, int8_mode=args.int8_mode,
                             batch_size=args.batch_size, threshold=args.threshold, approximate=args.approximate,
                             labels=args.labels)
    with held_bundle(args, "deepstream", write=False) as bundle:  # read only: its output is elsewhere
        path, notes = write_deepstream(bundle, opts, args.out)
    print("\n".join(summary(path, notes)))
    return 0
