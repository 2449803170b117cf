"""Benchmarks as JSON (stdout, and --out FILE).

    python tools/benchmark.py forward [--model resnet_v2_152] [--batch 32] [--image-size 224]
                                      [--warmup 1] [--iters 5] [--bundle DIR] [--backends tf,ort-fp32,...]

`forward` is the seed experiment: forward passes of one slim ResNet v2 after a warm-up. Without
--bundle, on TensorFlow (deploy.slim's --model, random weights, at --image-size); with --bundle,
the bundle's model on TensorFlow (its SavedModel), ONNX Runtime FP32/INT8 on the CPU and every
TensorRT engine of the bundle (GPU compute and host latency from CUDA events, plus the engine's
build options from its sidecar). The defaults (1 warm-up, 5 timed runs) keep CI runs short
(resnet_v2_152, batch 32 on a 2-core CPU: ~24 s a pass); use --warmup 10 --iters 100 for
numbers you publish.

Subcommands register through SUBCOMMANDS: each entry adds its parser (with the shared options
it uses: `--out` for all, the timing options for `forward`) and sets `func(args) -> dict`.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from deploy.bench.forward import forward_benchmark
from deploy.runners.timing import TimingConfig
from deploy.cli.args import add_batch_size, add_renamed
from deploy.errors import DeployError
from deploy.fsutil import atomic_write_json
from deploy.runners.tf import quiet_tensorflow_startup


def timing_options() -> argparse.ArgumentParser:
    timing = argparse.ArgumentParser(add_help=False)
    timing.add_argument("--warmup", type=int, default=TimingConfig.warmup,
                        help="untimed runs first (default: %(default)s)")
    timing.add_argument("--iters", type=int, default=TimingConfig.iters, help="timed runs (default: %(default)s)")
    timing.add_argument("--backends", metavar="LIST", help="comma-separated backend names (default: all)")
    return timing


def add_forward(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("forward", parents=[common, timing_options()],
                       help="forward-pass latency and throughput per backend")
    p.add_argument("--model", help="deploy.slim network the tf backend times without --bundle "
                                    "(default: resnet_v2_152)")
    p.add_argument("--batch", type=int, default=32, help="default: %(default)s")
    p.add_argument("--image-size", type=int, help="input height and width without --bundle (default: 224)")
    p.add_argument("--bundle", type=Path, metavar="DIR",
                   help="time this bundle's model: tf (its SavedModel), ort-* and trt-* backends")
    p.add_argument("--engine", type=Path, nargs="+", action="extend", default=[], metavar="PLAN",
                   help="TensorRT plans instead of BUNDLE/engines/NAME.PRECISION.plan")
    p.set_defaults(func=run_forward)


def run_forward(args: argparse.Namespace) -> dict[str, Any]:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None
    return forward_benchmark(model=args.model, batch=args.batch, image_size=args.image_size,
                             config=TimingConfig(warmup=args.warmup, iters=args.iters), bundle_dir=args.bundle,
                             backends=backends, engines=args.engine or None)


def add_calibration(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("calibration", parents=[common],
                       help="our INT8 calibration vs ONNX Runtime's quantize_static and the plain FP32 forward "
                            "pass, same model and data; memory of `trtdeploy calibrate`")
    p.add_argument("--model", default="resnet_v2_50", help="default: %(default)s (random weights)")
    p.add_argument("--image-size", type=int, default=224, help="default: %(default)s")
    p.add_argument("--num-images", type=int, nargs="+", default=[64], metavar="N",
                   help="images of the timed comparison (default: %(default)s); more values add memory points: "
                        "`trtdeploy calibrate` at its default flags on that many images from a labelled folder, "
                        "each in a fresh process: seconds per image and peak RSS")
    p.add_argument("--point-args", default="", metavar="ARGS",
                   help="more flags for the memory points' command, e.g. \"--method auto\" or \"--max-drop 1\"")
    p.add_argument("--method", default="entropy", choices=["entropy"],
                   help="the peer comparison is defined for entropy only (default: %(default)s)")
    add_batch_size(p, 8, "calibration inputs per ONNX Runtime call")
    add_renamed(p, "--batch", "--batch-size", dest="batch_size", type=int)
    p.add_argument("--workdir", type=Path, help="keep the exported model and images here")
    p.set_defaults(func=run_calibration)


def run_calibration(args: argparse.Namespace) -> dict[str, Any]:
    from deploy.bench.calibration import benchmark_calibration

    return benchmark_calibration(num_images=args.num_images[0], model=args.model, image_size=args.image_size,
                                 method=args.method, workdir=args.workdir, batch_size=args.batch_size,
                                 points=args.num_images[1:], point_args=args.point_args.split())


# Registration point: each entry adds one subcommand (its parser takes `common`, the options
# every subcommand has, as a parent and sets `func(args) -> dict`).
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    add_forward, add_calibration]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON here")
    parser = argparse.ArgumentParser(prog="benchmark.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and TensorFlow's own start-up messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in SUBCOMMANDS:
        register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # -v keeps TensorFlow's own start-up logging
        quiet_tensorflow_startup()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        result = args.func(args)
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    if args.out:
        atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
