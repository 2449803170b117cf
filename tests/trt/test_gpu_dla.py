"""DLA builds on a real Jetson (`gpu` marker; each test skips, saying why, without a TensorRT
release that has DLA on Jetson or without a DLA core): what the CPU tests can only assert of the
fakes (tests/trt/test_dla.py) is checked here against TensorRT's own DLA compiler.

- The default DLA build is static (batch 1, min = opt = max) and puts the convolutions on the
  DLA (a dynamic profile would fail, or with --gpu-fallback run everything on the GPU).
- TensorRT 10.x builds it weakly typed with BuilderFlag.FP16 (INT8: + INT8) from model.onnx /
  the Q/DQ model.int8.onnx, as trtexec 10.3 does; 11.4.1+ strongly typed, with --gpu-fallback
  for the FP32 input and output. Either way the engine loads on its core and answers like
  TensorFlow within the FP16 / INT8 tolerances of test_gpu_engines.py.
- `doctor` on the Jetson reports no version- or hardware-compatible engines.
TRTDEPLOY_TEST_BUNDLE=DIR tests another bundle."""
from __future__ import annotations

import json

import numpy as np
import pytest

from .test_gpu_engines import TOLERANCES, bundle, scores  # noqa: F401  (module-scoped fixture: the bundle)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def dla_core() -> int:
    """DLA core 0 of this device, or a skip saying why there is none to build for."""
    import tensorrt as trt

    from deploy.trt.cuda import import_cuda, primary_context
    from deploy.trt.dla import dla_refusal
    from deploy.trt.logger import make_logger

    if dla_refusal(trt.__version__):
        pytest.skip(dla_refusal(trt.__version__))
    with primary_context(import_cuda()):
        cores = trt.Builder(make_logger(trt)).num_DLA_cores
    if not cores:
        pytest.skip("this device has no DLA (TensorRT reports 0 DLA cores; DLA exists on Jetson AGX Orin and Orin NX)")
    return 0


def _strongly_typed_dla() -> bool:
    import tensorrt as trt

    from deploy.trt.versions import parse_version

    return parse_version(trt.__version__).major >= 11


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_default_dla_build_is_static_on_the_dla_and_answers_like_tensorflow(bundle, dla_core, precision,  # noqa: F811
                                                                           capsys):
    from deploy.cli import main
    from deploy.trt.inspection import load_summary
    from deploy.trt.runtime import TrtRunner
    from deploy.trt.sidecar import read_sidecar

    out = bundle.root / "engines" / f"dla{dla_core}.{precision}.plan"
    assert main(["build", str(bundle.root), "--precision", precision, "--dla-core", str(dla_core),
                 "--gpu-fallback", "--out", str(out)]) == 0
    sidecar = read_sidecar(out)
    assert sidecar.batch == (1, 1, 1) and sidecar.dla_core == dla_core
    (tensor,) = sidecar.inputs
    assert tensor.profile[0] == tensor.profile[1] == tensor.profile[2]  # what the engine itself reports
    strong = _strongly_typed_dla()
    assert sidecar.builder["strongly_typed"] is strong
    assert sidecar.builder["precision_flags"] == ([] if strong else ["FP16", "INT8"] if precision == "int8"
                                                  else ["FP16"])
    summary = load_summary(out)
    print(f"DLA {precision}: " + " | ".join(summary.lines()))
    assert summary.dla_layers > 0
    assert 2 * summary.by_precision.get("DLA", 0) > summary.convolutions, summary.lines()  # mostly on the DLA

    reference = np.load(bundle.path("reference.npz"))
    tf = {k.split(":", 1)[1]: reference[k] for k in reference.files if k.startswith("output:")}
    with TrtRunner(out, timing=False) as runner:
        got = runner.infer_any_batch({tensor.name: np.ascontiguousarray(reference["input"].astype(np.float32))})
    max_abs_tol, agreement_tol = TOLERANCES[(precision, "explicit")]
    p_dla, p_tf = scores(got), scores(tf)
    agreement = float((p_dla.argmax(-1) == p_tf.argmax(-1)).mean())
    print(f"DLA {precision}: max|dp|={np.abs(p_dla - p_tf).max():.2e} top-1 agreement={agreement:.3f}")
    assert np.abs(p_dla - p_tf).max() <= max_abs_tol and agreement >= agreement_tol


def test_strongly_typed_dla_without_gpu_fallback_is_refused_with_the_reason(bundle, dla_core, capsys):  # noqa: F811
    from deploy.cli import main

    if not _strongly_typed_dla():
        pytest.skip("TensorRT 10.x builds DLA engines weakly typed: no FP32 boundary layers to refuse")
    assert main(["build", str(bundle.root), "--precision", "fp16", "--dla-core", str(dla_core)]) == 2
    assert "add --gpu-fallback" in capsys.readouterr().err


def test_doctor_on_a_jetson_reports_no_portable_engines(dla_core, capsys):
    from deploy.cli import main

    main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["cuda"]["jetson"] is True
    assert (report["supports"]["version_compatible"], report["supports"]["hardware_compat"]) == (False, False)
    assert report["supports"]["dla"] is True
