"""`trtdeploy calibrate`: INT8 calibration -> model.int8.onnx (Q/DQ) + calibration/ (scales, TensorRT cache)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data import DEFAULT_BATCH_SIZE
from ..int8 import AUTO_METHOD, CALIBRATION_METHODS
from ..trt.calibration_cache import DEFAULT_VERSION
from .args import (add_batch_size, add_bundle, add_data, add_keep_fp32, add_skip_bad, add_subset, held_bundle,
                   non_negative_float)


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="calibrate INT8 ranges; write model.int8.onnx and the TensorRT cache",
                       description="Run the FP32 model over calibration images with ONNX Runtime, choose a range "
                                   "per tensor, and write model.int8.onnx (Q/DQ placed for TensorRT's fusions), "
                                   "calibration/scales.json, calibration/trt.cache (TensorRT <= 10) and "
                                   "calibration/dataset.json. Re-running with the same model, data and method "
                                   "reuses the ranges.")
    add_bundle(p)
    add_data(p, "calibration data", required=True)
    p.add_argument("--method", choices=(*CALIBRATION_METHODS, AUTO_METHOD), default="entropy",
                   help="range selection (default entropy, as TensorRT's EntropyCalibration2); auto tries entropy, "
                        "percentile 99.9/99.99/99.999 and mse on the same statistics and keeps the best on the "
                        "evaluation images")
    p.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (default 99.99)")
    add_subset(p, "use a seeded random subset of N images")
    add_batch_size(p, DEFAULT_BATCH_SIZE, "inputs per ONNX Runtime call")
    add_keep_fp32(p, "ONNX node names to keep in high precision: no Q/DQ on their inputs and weights, so a "
                     "strongly typed TensorRT network runs them in FP32", old_name="--exclude")
    p.add_argument("--max-drop", type=non_negative_float, metavar="POINTS",
                   help="INT8 within POINTS of FP32 top-1 on the evaluation images (of top-1 agreement with FP32 "
                        "when they have no labels): keep the most sensitive layers in high precision, as few as "
                        "meet it; exit status 1 when no set does (the best one found is written)")
    p.add_argument("--eval-data", type=Path, metavar="PATH",
                   help="evaluation images (same kinds as --data): INT8 is scored against FP32 on them, and "
                        "--max-drop and --method auto choose by them (default for those two: a seeded held-out "
                        "20%% of --data, at most 1000, that calibration does not use)")
    p.add_argument("--recalibrate", action="store_true",
                   help="replace calibration results made for another model, data set or method")
    add_skip_bad(p, "skip unreadable images instead of failing")
    p.add_argument("--trt-version", default=DEFAULT_VERSION, metavar="VERSION",
                   help="TensorRT version written into calibration/trt.cache's header, for tools that read the "
                        "file themselves (trtexec --calib); `trtdeploy build` serves the cache to the TensorRT it "
                        "runs whatever this says (default %(default)s, JetPack 6)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..trt.calibration_cache import trt_version_code

    if args.eval_data is not None and not args.eval_data.exists():
        raise UsageError(f"--eval-data {args.eval_data}: no such file or directory")
    trt_version_code(args.trt_version)  # before any work
    with held_bundle(args, "calibrate", write=True) as bundle:
        return _calibrate(args, bundle)


def _calibrate(args: argparse.Namespace, bundle) -> int:
    """The run and its report, the bundle held (the scoring after it reads what was written)."""
    from calibration.pipeline import CalibrationRequest, calibrate, evaluate_accuracy

    request = CalibrationRequest(args.data, method=args.method, num_images=args.num_images, seed=args.seed,
                                 batch_size=args.batch_size, keep_fp32=args.keep_fp32, recalibrate=args.recalibrate,
                                 skip_bad=args.skip_bad, trt_version=args.trt_version, percentile=args.percentile,
                                 max_drop=args.max_drop, eval_data=args.eval_data)
    result = calibrate(bundle, request)
    print(f"calibrated {bundle.model_name}: Q/DQ on {result.num_qdq_activations} activation tensors and "
          f"{result.num_qdq_tensors - result.num_qdq_activations} weights, ranges of {result.num_observed} "
          f"activation tensors in trt.cache ({result.method}, {result.algorithm}), {result.num_images} images, "
          f"{result.seconds:.1f} s")
    if result.reused:
        print("  reused calibration/scales.json (same model, data and method): no statistics pass")
    print(f"  wrote {', '.join(result.files)}")
    if result.evaluation is not None:
        print(_evaluation_report(result))
        return 1 if result.budget is not None and not result.budget.met else 0
    acc = evaluate_accuracy(bundle, result.dataset, batch_size=args.batch_size)
    if acc is not None:
        print(f"  top-1 on the calibration images ({acc.num_images}): FP32 {acc.top1['fp32']:.2%}, "
              f"INT8 {acc.top1['int8']:.2%}, agreement {acc.agreement['int8']:.2%} "
              "(ONNX Runtime; use held-out images for a fair number)")
    return 0


def _evaluation_report(result) -> str:
    """The method comparison and the budget trade-off, on the evaluation images."""
    ev = result.evaluation
    where = f"{ev['count']} images {'held out of' if ev['held_out'] else 'of'} {ev['source']}"
    lines = [f"  evaluated on {where} (ONNX Runtime, the Q/DQ model as written)"]
    if result.auto is not None:
        if hasattr(result.auto, "lines"):
            lines += ["  --method auto:", *result.auto.lines()]
        else:
            chosen = result.auto["chosen"]
            lines.append(f"  --method auto: reused the recorded choice ({chosen['method']}"
                         f"{'' if chosen['percentile'] is None else ' ' + format(chosen['percentile'], 'g')})")
    if result.budget is not None:
        lines += [f"  --max-drop {result.budget.max_drop:g}:", *result.budget.lines()]
    final = ev["int8"]
    what = "top-1" if final["metric"] == "accuracy" else "top-1 agreement with FP32"
    fp32 = f" (FP32 {final['fp32']:.2%})" if final["metric"] == "accuracy" else ""
    lines.append(f"  model.int8.onnx on the evaluation images: {what} {final['int8']:.2%}{fp32}, drop "
                 f"{final['drop_points']:.2f} points, fidelity {final['fidelity']:.4f} (relative RMSE of the logits)")
    return "\n".join(lines)
