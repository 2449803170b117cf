"""`trtdeploy demo --out DIR`: the whole pipeline on the embedded default model.

export -> held-out and training digits as image folders -> INT8 calibration (from the
training split) and FP16 -> TensorRT engines where TensorRT and a GPU exist -> the parity
report for every backend that can run here, with per-layer analysis.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..int8 import CALIBRATION_METHODS
from .args import add_out

log = logging.getLogger("trtdeploy.demo")

MARKER = ".trtdeploy-demo"


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on the embedded default model",
                       description="Export the embedded digits ResNet v2, write its held-out images, calibrate "
                                   "INT8 and convert FP16, build TensorRT engines where possible, and write the "
                                   "parity report (DIR/bundle/reports/parity.html).")
    add_out(p, "DIR", "output directory: the bundle, the images and the report (a previous demo's is replaced)",
            required=True)
    p.add_argument("--method", choices=CALIBRATION_METHODS, default="entropy",
                   help="INT8 calibration method (default: %(default)s)")
    p.set_defaults(func=run)


def _check_out(out: Path) -> None:
    from ..errors import UsageError

    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise UsageError(f"{out}: exists and is not a previous demo's output; choose another --out")


def _engines(bundle) -> tuple[list[Path], str | None]:
    """Build FP32/FP16/INT8 engines if TensorRT and a CUDA device are usable here."""
    from ..errors import DeployError
    from ..trt.build import BuildConfig, build_engine
    from ..trt.cuda import import_cuda
    from ..trt.versions import import_tensorrt

    try:
        import_tensorrt()
        import_cuda()
    except DeployError as e:
        return [], str(e)
    return [build_engine(bundle, BuildConfig(precision=p, batch=(1, 16, 64))) for p in ("fp32", "fp16", "int8")], None


def run(args: argparse.Namespace) -> int:
    from calibration.pipeline import CalibrationRequest, calibrate

    from ..digits import write_image_folder
    from ..export import ExportConfig, export
    from ..fsutil import atomic_write_text
    from ..parity import engines_by_precision
    from ..parity.pipeline import parity_report
    from ..parity.request import ParityRequest
    from ..parity.summary import export_parity_line, summary_table
    from ..fp16 import convert_fp16
    from ..slim.registry import DEFAULT_MODEL

    out: Path = args.out
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MARKER, "output of `trtdeploy demo`; safe to delete\n")
    start = time.time()

    print(f"1/6 export {DEFAULT_MODEL} -> {out / 'bundle'}")
    bundle = export(ExportConfig(model=DEFAULT_MODEL, num_reference=16), out / "bundle", force=True)
    print(f"    TF vs ONNX Runtime: {export_parity_line(bundle.export_parity['outputs']['logits'])}")

    print("2/6 held-out and training digits as image folders")
    data = {}
    for split in ("test", "train"):
        folder = out / "data" / ("heldout" if split == "test" else "train")
        if not folder.is_dir():
            write_image_folder(folder, split)
        data[split] = folder
        print(f"    {folder}: {sum(1 for _ in folder.rglob('*.png'))} images")

    print(f"3/6 INT8 calibration ({args.method}) from the training images")
    calibrate(bundle, CalibrationRequest(data["train"], method=args.method, recalibrate=True))  # reloads `bundle`
    print("4/6 FP16 conversion")
    print(f"    {convert_fp16(bundle)}")

    print("5/6 TensorRT engines")
    engines, why_not = _engines(bundle)
    for e in engines:
        print(f"    built {e}")
    if why_not:
        print(f"    skipped: {why_not}")

    print("6/6 parity report on the held-out images")
    report = parity_report(bundle, ParityRequest(data=data["test"], engines=engines_by_precision(engines)))
    result = report.result
    print(summary_table(result))
    print(f"\nreport: {report.html_path}\n        {report.json_path}")
    print(f"demo finished in {time.time() - start:.0f} s: {'PASS' if result.passed else 'FAIL'}")
    return 0 if result.passed else 1
