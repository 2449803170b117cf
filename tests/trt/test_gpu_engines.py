"""Build FP32/FP16/INT8 engines for a real bundle and compare them with the TensorFlow
reference outputs in reference.npz. Needs TensorRT and a CUDA device (`gpu` marker) and a
bundle: TRTDEPLOY_TEST_BUNDLE=/path/to/bundle (e.g. the default model's export)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

# Per precision: max |TRT - TF| on the softmax output, and top-1 agreement with TF.
TOLERANCES = {
    ("fp32", "explicit"): (1e-3, 0.99),
    ("fp16", "explicit"): (1e-2, 0.97),
    ("int8", "explicit"): (1e-1, 0.90),
    ("int8", "implicit"): (1e-1, 0.90),
}
LINKED = ("manifest.json", "model.onnx", "model.fp16.onnx", "model.int8.onnx", "calibration", "reference.npz")


def _default_bundle(work: Path) -> Path:
    """Export the embedded default model, calibrate INT8 on its training digits with the CLI's
    defaults (the cache header says TensorRT 10.3.0 whatever TensorRT builds from it), convert
    FP16."""
    pytest.importorskip("tensorflow", reason="set TRTDEPLOY_TEST_BUNDLE or install the export extra")
    from calibration.pipeline import CalibrationRequest, calibrate
    from deploy.bundle import open_bundle
    from deploy.digits import write_image_folder
    from deploy.export import ExportConfig, export
    from deploy.fp16 import convert_fp16

    bundle = export(ExportConfig(model="default", num_reference=16), work / "bundle")
    calibrate(bundle, CalibrationRequest(write_image_folder(work / "train", "train"), method="entropy"))
    convert_fp16(open_bundle(bundle.root))
    return bundle.root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The bundle under test, seen through links so engines are written to a scratch copy."""
    from deploy.bundle import open_bundle

    src = os.environ.get("TRTDEPLOY_TEST_BUNDLE")
    if not src:
        src = str(_default_bundle(tmp_path_factory.mktemp("default")))
    if not (Path(src) / "manifest.json").is_file():
        pytest.skip(f"TRTDEPLOY_TEST_BUNDLE={src} is not a bundle (no manifest.json)")
    root = tmp_path_factory.mktemp("bundle")
    for name in LINKED:
        if (Path(src) / name).exists():
            (root / name).symlink_to((Path(src) / name).resolve())
    return open_bundle(root)


def driver_current_context() -> int | None:
    """The CUcontext current on this thread, as the driver sees it (pycuda only knows its own stack)."""
    import ctypes

    libcuda = ctypes.CDLL("libcuda.so.1")
    ctx = ctypes.c_void_p()
    assert libcuda.cuCtxGetCurrent(ctypes.byref(ctx)) == 0
    return ctx.value


def scores(outputs: dict[str, np.ndarray]) -> np.ndarray:
    from deploy.cli.infer import probabilities

    return probabilities(outputs)


@pytest.mark.parametrize("precision, mode", sorted(TOLERANCES))
def test_engine_matches_tensorflow(bundle, precision, mode, tmp_path):
    import pycuda.driver as cuda
    import tensorrt as trt

    from deploy.trt.build import BuildConfig, build_engine
    from deploy.trt.runtime import TrtRunner
    from deploy.trt.versions import supports_implicit_int8

    if mode == "implicit":
        if not supports_implicit_int8(trt):
            pytest.skip(f"TensorRT {trt.__version__} has no calibrators (implicit INT8 is TensorRT <= 10)")
        if not bundle.path("calibration/trt.cache").is_file():
            pytest.skip("bundle has no calibration/trt.cache")
        if not os.environ.get("TRTDEPLOY_TEST_BUNDLE"):
            from deploy.trt.calibration_cache import DEFAULT_VERSION, read_cache, trt_version_code

            header = read_cache(bundle.path("calibration/trt.cache")).version
            assert header == trt_version_code(DEFAULT_VERSION)  # served as trt.__version__'s
    reference = np.load(bundle.path("reference.npz"))
    inputs = reference["input"]
    tf = {k.split(":", 1)[1]: reference[k] for k in reference.files if k.startswith("output:")}
    batch_max = max(2, len(inputs))

    cuda.init()
    before = driver_current_context()
    plan = build_engine(bundle, BuildConfig(precision=precision, int8_mode=mode, batch=(1, batch_max, batch_max),
                                            timing_cache=tmp_path / "timing.cache"))
    (tensor,) = bundle.inputs
    with TrtRunner(plan) as runner:
        got = runner.infer({tensor.name: np.ascontiguousarray(inputs.astype(np.float32))})
        one = runner.infer({tensor.name: np.ascontiguousarray(inputs[:1].astype(np.float32))})
        assert runner.timings()["calls"] == 2 and runner.last_timing.gpu_ms > 0
    assert cuda.Context.get_current() is None  # nothing left pushed after close()
    assert driver_current_context() == before  # nor on the driver's stack (pycuda's detach() would leave it)

    max_abs_tol, agreement_tol = TOLERANCES[(precision, mode)]
    p_trt, p_tf = scores(got), scores(tf)
    max_abs = float(np.abs(p_trt - p_tf).max())
    agreement = float((p_trt.argmax(-1) == p_tf.argmax(-1)).mean())
    print(f"{precision}/{mode}: max|dp|={max_abs:.2e} top-1 agreement={agreement:.3f} n={len(inputs)}")
    assert max_abs <= max_abs_tol
    assert agreement >= agreement_tol
    np.testing.assert_allclose(scores(one)[0], p_trt[0], atol=max_abs_tol)  # batch size does not change results


def test_demo_runs_and_passes_every_engine(tmp_path):
    """The main job on a GPU machine: `trtdeploy demo` builds the three engines and the parity
    report judges them on the 360 held-out digits with the default thresholds."""
    import json

    pytest.importorskip("tensorflow", reason="the demo exports the default model with TensorFlow")
    from deploy.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    result = json.loads((tmp_path / "demo" / "bundle" / "reports" / "parity.json").read_text())
    for name in ("trt-fp32", "trt-fp16", "trt-int8"):
        entry = result["backends"][name]
        assert entry["status"] == "ran", (name, entry.get("reason"))
        assert entry["pass"] is True and entry["accuracy"]["top1"] >= 99.0, (name, entry)
