"""`trtdeploy build BUNDLE --precision fp32|fp16|int8 ...`: a TensorRT engine from a bundle."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..trt.choices import (DEFAULT_BATCH, DEFAULT_DLA_BATCH, DEFAULT_WORKSPACE_MIB, HARDWARE_COMPAT_LEVELS,
                           INT8_MODES, PRECISIONS)
from .args import add_bundle, add_data, add_out, held_bundle, non_negative_int, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "build", help="build a TensorRT engine (engines/NAME.PRECISION.plan + .json)",
        description="Build a TensorRT engine from the bundle's ONNX. FP16 and INT8 (explicit) come from "
                    "model.fp16.onnx / the Q/DQ model.int8.onnx and a strongly typed network; "
                    "--int8-mode implicit (TensorRT <= 10) uses the FP32 ONNX, BuilderFlag.INT8 and the "
                    "bundle's calibration cache.",
    )
    add_bundle(p)
    p.add_argument("--precision", choices=PRECISIONS, required=True,
                   help="fp32 (model.onnx), fp16 (model.fp16.onnx) or int8 (model.int8.onnx; with --int8-mode "
                        "implicit, model.onnx and calibration/trt.cache)")
    p.add_argument("--batch", type=positive_int, nargs="+", metavar="N",
                   help="MIN OPT MAX: the batch range of the optimization profile (default: "
                        f"{' '.join(map(str, DEFAULT_BATCH))}); one N builds for that batch size only. A DLA build "
                        f"(--dla-core) takes one batch size (default {DEFAULT_DLA_BATCH}): the DLA has no dynamic "
                        "shapes")
    p.add_argument("--workspace", type=positive_int, default=DEFAULT_WORKSPACE_MIB, metavar="MiB",
                   help="builder workspace limit in MiB (default: %(default)s)")
    p.add_argument("--timing-cache", type=Path, metavar="FILE",
                   help="load and update this timing cache (faster rebuilds on the same TensorRT and GPU)")
    p.add_argument("--int8-mode", choices=INT8_MODES, default="explicit",
                   help="explicit: Q/DQ ONNX (TensorRT 10 and 11); implicit: calibrator + cache (TensorRT <= 10)")
    p.add_argument("--version-compatible", action="store_true",
                   help="engine loadable by newer TensorRT of the same major version")
    p.add_argument("--hardware-compat", choices=HARDWARE_COMPAT_LEVELS,
                   help="engine runs on any GPU of compute capability >= 8.0 (not on Jetson)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 for FP32 math (faster on Ampere+, ~1e-3 relative error; off by default "
                        "so FP32 engines match FP32 references)")
    add_out(p, "FILE.plan", "the engine file to write (sidecar FILE.json beside it); default "
                            "BUNDLE/engines/NAME.PRECISION.plan")
    add_data(p, "implicit INT8: calibrate live on this data instead of using calibration/trt.cache",
             old_name="--calib-data")
    p.add_argument("--dla-core", type=non_negative_int, metavar="N",
                   help="run on DLA core N (Jetson Orin; FP16/INT8; one batch size; TensorRT 10.x up to 10.7, built "
                        "weakly typed with FP16/INT8 flags as trtexec does, or 11.4.1+, strongly typed; not with "
                        "--version-compatible or --hardware-compat)")
    p.add_argument("--gpu-fallback", action="store_true",
                   help="with --dla-core: layers the DLA cannot run go to the GPU (listed after the build); needed "
                        "on 11.4.1+, where the model's FP32 inputs and outputs make FP32 layers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..trt.build import BuildConfig, build_engine

    config = BuildConfig(
        precision=args.precision, batch=tuple(args.batch) if args.batch else None, workspace_mib=args.workspace,
        timing_cache=args.timing_cache, int8_mode=args.int8_mode, version_compatible=args.version_compatible,
        hardware_compat=args.hardware_compat, tf32=args.tf32, calib_data=args.data,
        out=args.out, dla_core=args.dla_core, gpu_fallback=args.gpu_fallback,
    )
    with held_bundle(args, "build", write=True) as bundle:
        plan = build_engine(bundle, config)
    print(plan)
    print_layer_summary(plan)
    return 0


def print_layer_summary(plan: Path) -> None:
    """What the engine runs ("48 of 53 convolutions run in INT8; ..."), from its layers file."""
    from ..trt.inspection import load_summary

    summary = load_summary(plan)
    if summary is not None:
        for line in summary.lines():
            print(line)
