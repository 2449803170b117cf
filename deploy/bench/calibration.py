"""Calibration speed: our pipeline against ONNX Runtime's `quantize_static` and against the plain
FP32 forward pass, same model, same images, same threads.

All three start from the same FP32 ONNX and the same image files and decode and preprocess
them the same way (our InputSet, the same batches); the two calibrations end with a Q/DQ ONNX file:

- ours: `calibration.pipeline.calibrate` (statistics on every float activation, entropy
  over 2048 bins as TensorRT, Q/DQ insertion, checks, bundle files), with --recalibrate.
- peer: `onnxruntime.quantization.quantize_static` with QuantFormat.QDQ,
  CalibrationMethod.Entropy, per-channel symmetric int8 weights, symmetric int8
  activations, no bias quantization. Its entropy histograms have ONNX Runtime's fixed 128
  bins (not configurable through quantize_static), and it observes every tensor of the
  quantizable ops, so the two do different amounts of work by design: the number is what a
  user waits for either tool, not a like-for-like kernel comparison.
- forward: an ONNX Runtime session of the FP32 model (default options, ONNX Runtime's default
  threads as both calibrations) created and run over every batch: what any pass over the
  images costs, the floor of a calibration that looks at every activation.

Memory points (`points`) run the command users run, `trtdeploy calibrate BUNDLE --data FOLDER`
at its default flags (plus `point_args`), each in a fresh process, on labelled folders of
256x256 images (resized and cropped, and scored after calibration as the command does):
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


POINT_IMAGE_SIZE = 256
POINT_CLASSES = 10


def _images(folder: Path, num: int, size: int, classes: int = 0) -> Path:
    """`num` seeded-noise PNGs (size x size RGB); the same bytes on every run. With `classes`, in
    that many class folders (labelled images: the command scores FP32 and INT8 on them)."""
    from PIL import Image

    from ..fsutil import atomic_path

    if folder.is_dir() and len(list(folder.rglob("*.png"))) == num:
        return folder
    rng = np.random.default_rng(IMAGE_SEED)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for i in range(num):
            where = tmp / str(i % classes) if classes else tmp
            where.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(where / f"noise_{i:04d}.png")
    return folder


def forward_seconds(model_path: Path, dataset, batch_size: int) -> float:
    """A fresh FP32 session run over every batch of `dataset` (decoding included), in seconds."""
    from ..runners.ort import make_session

    t0 = time.perf_counter()
    session = make_session(model_path)
    outputs = [o.name for o in session.get_outputs()]
    for feed in dataset.batches(batch_size, desc=None):
        session.run(outputs, feed)
    return time.perf_counter() - t0


def benchmark_calibration(num_images: int = 64, model: str = "resnet_v2_50", image_size: int = 224,
                          method: str = "entropy", workdir: str | Path | None = None,
                          batch_size: int = 8, points: Sequence[int] = (),
                          point_args: Sequence[str] = ()) -> dict[str, Any]:
    """Time our calibration, ONNX Runtime's quantize_static and the plain FP32 forward pass on the
    same data, in this order; see the module doc.

    `points`: numbers of images at which `trtdeploy calibrate` runs, each in a fresh process, for
    seconds per image and peak memory (see `memory_points`)."""
    import onnxruntime

    from calibration.pipeline import CalibrationRequest, calibrate
    from deploy.data.inputs import InputSet
    from deploy.data.preprocess import Preprocess

    if num_images < 1 or batch_size < 1 or any(n < 1 for n in points):
        raise UsageError(f"need every --num-images >= 1 and --batch-size >= 1, got {[num_images, *points]} "
                         f"and {batch_size}")
    if method != "entropy":
        raise ValueError("the peer comparison is defined for entropy only (ONNX Runtime's CalibrationMethod.Entropy)")
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="bench_calibration."))
    bundle = _bundle(work, model, image_size)
    images = _images(work / f"images_{num_images}_{image_size}", num_images, image_size)
    kernel = kernel_seconds(work)
    _warm_kernels()  # ours is timed with the kernels compiled; `kernel` says what compiling costs
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    result = calibrate(bundle, CalibrationRequest(images, method=method, batch_size=batch_size, recalibrate=True))
    ours = time.perf_counter() - t0
    peer = peer_seconds(bundle, images, batch_size, work / "peer.int8.onnx")
    dataset = InputSet.from_path(images, input=bundle.inputs[0], preprocess=Preprocess.from_json(bundle.preprocessing))
    forward = forward_seconds(bundle.onnx_path("fp32"), dataset, batch_size)
    load_after = os.getloadavg()
    return {
        "ours_seconds": round(ours, 2),
        "ours_statistics_seconds": round(result.statistics_seconds, 2),
        "ours_tensors_observed": result.num_observed,
        "peer_seconds": round(peer, 2),
        "forward_seconds": round(forward, 3),
        "ratio_ours_over_forward": round(ours / forward, 3),
        "ratio_peer_over_ours": round(peer / ours, 3),
        "num_images": num_images,
        "batch_size": batch_size,
        "model": model,
        "image_size": image_size,
        "method": method,
        "threads": f"ONNX Runtime's default intra-op threads for all three; ours bins in {os.cpu_count()} threads",
        "peer": f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ, Entropy, per-channel, symmetric)",
        "forward": "a fresh FP32 ONNX Runtime session over the same batches, decoding included",
        "kernel": kernel,
        "machine": machine_info().to_json(),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "workdir": str(work),
        **memory_points(bundle.root, work, points, point_args),
    }


def _bundle(work: Path, model: str, image_size: int):
    from ..bundle import open_bundle
    from ..export import ExportConfig, export

    bundle_dir = work / f"{model}_{image_size}"
    if (bundle_dir / "manifest.json").is_file():
        return open_bundle(bundle_dir)
    log.info("exporting %s (random weights) to %s", model, bundle_dir)
    return export(ExportConfig(model=model, image_size=(image_size, image_size)), bundle_dir, force=True)


def peer_seconds(bundle, images: Path, batch_size: int, out: Path) -> float:
    """ONNX Runtime's quantize_static of the bundle's FP32 model on `images` (our decoding), in seconds."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from deploy.data.inputs import InputSet
    from deploy.data.preprocess import Preprocess

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            dataset = InputSet.from_path(images, input=bundle.inputs[0],
                                         preprocess=Preprocess.from_json(bundle.preprocessing))
            self._batches = dataset.batches(batch_size, desc="onnxruntime calibration")

        def get_next(self):
            return next(self._batches, None)

    t0 = time.perf_counter()
    # ONNX Runtime prints its progress to stdout; keep stdout for the JSON result.
    with contextlib.redirect_stdout(sys.stderr):
        quantize_static(
            str(bundle.onnx_path("fp32")), str(out), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Entropy,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                           "CalibTensorRangeSymmetric": True, "CalibMaxIntermediateOutputs": 2},
        )
    return time.perf_counter() - t0


def _warm_kernels() -> None:
    from calibration.histograms import HistogramCollector

    for dtype in (np.float32, np.float64):
        HistogramCollector().update("warm-up", np.arange(-2, 3, dtype=dtype), relu_outputs=("relu",))


_KERNEL_CODE = ("import json, time; t = time.perf_counter(); from deploy.bench.calibration import _warm_kernels; "
                "_warm_kernels(); from calibration import binning; "
                "print(json.dumps([time.perf_counter() - t, binning.cache_location()]))")


def kernel_seconds(work: Path) -> dict[str, Any]:
    """The compiled kernels' first use in a fresh process with an empty numba cache (compiling
    them, both dtypes), and in the next process (loading them from that cache)."""
    cache = Path(tempfile.mkdtemp(prefix="numba-cache.", dir=work))
    env = {**_child_env(), "NUMBA_CACHE_DIR": str(cache)}
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", _KERNEL_CODE], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise UsageError(f"the kernel timing's child process failed: {done.stderr.strip().splitlines()[-1:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {"first_run_seconds": round(runs[0][0], 2), "cached_run_seconds": round(runs[1][0], 2),
            "what": "a fresh process importing calibration and binning a float32 and a float64 tensor, with an "
                    "empty numba cache (compiles) and then with the cache it wrote (loads)"}


def _child_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}


def memory_points(bundle_dir: Path, work: Path, points: Sequence[int], point_args: Sequence[str] = ()
                  ) -> dict[str, Any]:
    """`trtdeploy calibrate BUNDLE --data FOLDER --recalibrate [point_args]` on N labelled noise
    images for each N in `points`, each in a fresh process: its wall time and peak memory, the
    kernel's high-water mark of its resident memory (see `peak_rss_mb`), Python, onnx and ONNX
    Runtime included."""
    if not points:
        return {}
    rows = []
    for n in points:
        images = _images(work / f"labelled_{n}_{POINT_IMAGE_SIZE}", n, POINT_IMAGE_SIZE, classes=POINT_CLASSES)
        command = [sys.executable, "-m", "deploy", "calibrate", str(bundle_dir), "--data", str(images),
                   "--recalibrate", *point_args]
        row = command_point(command)
        rows.append({"num_images": n, **row, "seconds_per_image": round(row["seconds"] / n, 4)})
        log.info("trtdeploy calibrate on %d images: %.1f s, peak RSS %.0f MB", n, row["seconds"], row["peak_rss_mb"])
    return {"points": rows,
            "points_command": f"trtdeploy calibrate BUNDLE --data FOLDER --recalibrate {' '.join(point_args)}".strip(),
            "points_input": f"{POINT_CLASSES} class folders of {POINT_IMAGE_SIZE}x{POINT_IMAGE_SIZE} PNGs (resized, "
                            "cropped, and scored after calibration)",
            "peak_rss_method": "VmHWM of the fresh `trtdeploy calibrate` process (the kernel's high-water mark of "
                               "its resident memory since exec), read every 20 ms until it exits"}


def command_point(command: Sequence[str]) -> dict[str, Any]:
    """Run `command`; its wall time and peak resident memory. The high-water mark is read from
    /proc while it runs (the kernel keeps it per process; it is gone once the process exits)."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
    peak = [0.0]

    def watch() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _vm_hwm_mb(proc.pid) or 0.0)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise UsageError(f"{' '.join(command[2:4])} failed (exit {proc.returncode}): "
                         f"{(err.strip().splitlines() or ['no message'])[-1]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak[0], 1), "exit_status": proc.returncode,
            "summary": next((line.strip() for line in out.splitlines() if line.startswith("calibrated")), "")}


def _vm_hwm_mb(pid: int | str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's VmHWM counts from exec; ru_maxrss would also
    count the parent's memory at fork (a child of this benchmark, which holds TensorFlow and
    the peer's run, reported 7.5 GB for every point), so it is only the fallback elsewhere."""
    import resource

    hwm = _vm_hwm_mb("self")
    return round(hwm, 1) if hwm is not None else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
