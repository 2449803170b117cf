"""Calibration speed: our pipeline against ONNX Runtime's `quantize_static`, same model, same images.

Both sides start from the same FP32 ONNX and the same image files, decode and preprocess
them the same way (our InputSet), and end with a Q/DQ ONNX file:

- ours: `calibration.pipeline.calibrate` (statistics on every float activation, entropy
  over 2048 bins as TensorRT, Q/DQ insertion, checks, bundle files), with --recalibrate.
- peer: `onnxruntime.quantization.quantize_static` with QuantFormat.QDQ,
  CalibrationMethod.Entropy, per-channel symmetric int8 weights, symmetric int8
  activations, no bias quantization. Its entropy histograms have ONNX Runtime's fixed 128
  bins (not configurable through quantize_static), and it observes every tensor of the
  quantizable ops, so the two do different amounts of work by design: the number is what a
  user waits for either tool, not a like-for-like kernel comparison.

Memory points (`points`) run our side alone on more or fewer images, each in a fresh process:
seconds per image, and peak resident memory, which must not grow with the number of images.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..env import machine_info
from ..errors import UsageError

log = logging.getLogger("trtdeploy.bench")

IMAGE_SEED = 1234


def _images(folder: Path, num: int, size: int) -> Path:
    """`num` seeded-noise PNGs (size x size RGB); the same bytes on every run."""
    from PIL import Image

    from ..fsutil import atomic_path

    if folder.is_dir() and len(list(folder.glob("*.png"))) == num:
        return folder
    rng = np.random.default_rng(IMAGE_SEED)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for i in range(num):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp / f"noise_{i:03d}.png")
    return folder


def benchmark_calibration(num_images: int = 64, model: str = "resnet_v2_50", image_size: int = 224,
                          method: str = "entropy", workdir: str | Path | None = None,
                          batch_size: int = 8, points: Sequence[int] = ()) -> dict[str, Any]:
    """Time our calibration and ONNX Runtime's quantize_static on the same data; see the module doc.

    `points`: numbers of images at which our calibration runs again, each in a fresh child
    process, for seconds per image and peak memory (see `memory_points`)."""
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from deploy.data.inputs import InputSet
    from calibration.pipeline import CalibrationRequest, calibrate
    from deploy.data.preprocess import Preprocess

    from ..bundle import Bundle, open_bundle
    from ..export import ExportConfig, export

    if num_images < 1 or batch_size < 1 or any(n < 1 for n in points):
        raise UsageError(f"need every --num-images >= 1 and --batch-size >= 1, got {[num_images, *points]} "
                         f"and {batch_size}")
    if method != "entropy":
        raise ValueError("the peer comparison is defined for entropy only (ONNX Runtime's CalibrationMethod.Entropy)")
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="bench_calibration."))
    bundle_dir = work / f"{model}_{image_size}"
    if (bundle_dir / "manifest.json").is_file():
        bundle: Bundle = open_bundle(bundle_dir)
    else:
        log.info("exporting %s (random weights) to %s", model, bundle_dir)
        bundle = export(ExportConfig(model=model, image_size=(image_size, image_size)), bundle_dir, force=True)
    images = _images(work / f"images_{num_images}_{image_size}", num_images, image_size)
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    result = calibrate(bundle, CalibrationRequest(images, method=method, batch_size=batch_size, recalibrate=True))
    ours = time.perf_counter() - t0

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            dataset = InputSet.from_path(images, input=bundle.inputs[0],
                                               preprocess=Preprocess.from_json(bundle.preprocessing))
            self._batches = dataset.batches(batch_size, desc="onnxruntime calibration")

        def get_next(self):
            return next(self._batches, None)

    peer_out = work / "peer.int8.onnx"
    t0 = time.perf_counter()
    # ONNX Runtime prints its progress to stdout; keep stdout for the JSON result.
    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(
            str(bundle.onnx_path("fp32")), str(peer_out), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Entropy,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                           "CalibTensorRangeSymmetric": True, "CalibMaxIntermediateOutputs": 2},
        )
    peer = time.perf_counter() - t0
    load_after = os.getloadavg()
    return {
        "ours_seconds": round(ours, 2),
        "ours_statistics_seconds": round(result.statistics_seconds, 2),
        "ours_tensors_observed": result.num_observed,
        "peer_seconds": round(peer, 2),
        "ratio_peer_over_ours": round(peer / ours, 3),
        "num_images": num_images,
        "batch_size": batch_size,
        "model": model,
        "image_size": image_size,
        "method": method,
        "peer": f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ, Entropy, per-channel, symmetric)",
        "machine": machine_info().to_json(),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "workdir": str(work),
        **memory_points(bundle.root, work, points, image_size, batch_size, method),
    }


def memory_points(bundle_dir: Path, work: Path, points: Sequence[int], image_size: int, batch_size: int,
                  method: str) -> dict[str, Any]:
    """Our calibration of `bundle_dir` on N seeded-noise images (a folder) for each N in `points`,
    each in a fresh child process. Peak memory is the kernel's high-water mark of that process's
    resident memory (not a sample), Python, onnx and ONNX Runtime included: see `peak_rss_mb`."""
    if not points:
        return {}
    rows = []
    for n in points:
        images = _images(work / f"images_{n}_{image_size}", n, image_size)
        code = ("import json, sys; from deploy.bench.calibration import calibration_point; "
                "print(json.dumps(calibration_point(*json.loads(sys.argv[1]))))")
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        args = json.dumps([str(bundle_dir), str(images), batch_size, method])
        done = subprocess.run([sys.executable, "-c", code, args], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise UsageError(f"calibration of {n} images failed in its child process: "
                             f"{done.stderr.strip().splitlines()[-1:] or done.returncode}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"num_images": n, **row, "seconds_per_image": round(row["seconds"] / n, 4)})
        log.info("calibration of %d images: %.1f s, peak RSS %.0f MB", n, row["seconds"], row["peak_rss_mb"])
    return {"points": rows, "points_input": "image folder (PNG)",
            "peak_rss_method": "VmHWM of a fresh child process per point (the kernel's high-water mark of its "
                               "resident memory since exec)"}


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM counts from exec; ru_maxrss would also
    count the parent's memory at fork (a child of this benchmark, which holds TensorFlow and
    the peer's run, reported 7.5 GB for every point), so it is only the fallback elsewhere."""
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def calibration_point(bundle_dir: str, images: str, batch_size: int, method: str) -> dict[str, Any]:
    """One `memory_points` row, run in the child process."""
    from calibration.pipeline import CalibrationRequest, calibrate

    from ..bundle import open_bundle

    t0 = time.perf_counter()
    request = CalibrationRequest(images, method=method, batch_size=batch_size, recalibrate=True)
    result = calibrate(open_bundle(bundle_dir), request)
    return {"seconds": round(time.perf_counter() - t0, 2), "statistics_seconds": round(result.statistics_seconds, 2),
            "peak_rss_mb": peak_rss_mb()}
