"""`build_engine` end to end on the default model's bundle, over the stand-in TensorRT builder and
pycuda of fakes.py and fake_cuda.py: how the calibration cache is served to a TensorRT that is not
the one named in its header, what is said when TensorRT refuses it anyway, which network tensors
lack a scale, timing caches that are not timing caches, and what each build step asks of TensorRT
(flags, profiles, parser errors, a plan that does not load back). What TensorRT itself builds is
tested on a GPU (test_gpu_engines.py)."""
from __future__ import annotations

import json
import logging
import shutil

import pytest

pytest.importorskip("onnxruntime")

from deploy.trt.calibration_cache import read_cache  # noqa: E402
from calibration.pipeline import CalibrationRequest, calibrate  # noqa: E402
from deploy.bundle import open_bundle  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.errors import CalibrationError, EngineError  # noqa: E402
from deploy.trt import build as build_module  # noqa: E402
from deploy.trt import cuda as cuda_module  # noqa: E402
from deploy.trt.build import BuildConfig, build_engine  # noqa: E402

from .fake_cuda import FakeCuda  # noqa: E402
from .fakes import make_fake_trt  # noqa: E402

IMPLICIT = BuildConfig(precision="int8", int8_mode="implicit", batch=(1, 8, 8), calib_batch=8)


@pytest.fixture(scope="module")
def calibrated_dir(default_bundle_dir, tmp_path_factory):
    """The default bundle calibrated with the CLI's defaults (trt.cache header: TensorRT 10.3.0)."""
    from deploy.digits import write_image_folder

    images = write_image_folder(tmp_path_factory.mktemp("digits") / "train", "train")
    root = shutil.copytree(default_bundle_dir, tmp_path_factory.mktemp("calibrated") / "bundle")
    calibrate(open_bundle(root), CalibrationRequest(images, num_images=64, batch_size=32))
    return root


@pytest.fixture
def bundle(calibrated_dir, tmp_path):
    return open_bundle(shutil.copytree(calibrated_dir, tmp_path / "bundle"))


def fake_tensorrt(monkeypatch, version: str):
    cuda = FakeCuda()
    trt = make_fake_trt(version, cuda)
    monkeypatch.setattr(build_module, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(cuda_module, "import_cuda", lambda: cuda)
    return trt, cuda


@pytest.mark.parametrize("version", ["10.3.0", "10.16.1.11", "10.13.3.9"])
def test_implicit_int8_serves_the_cache_to_any_tensorrt_10(bundle, monkeypatch, version):
    """The cache says TRT-100300; TensorRT 10.16 would skip it and calibrate with no batches."""
    trt, cuda = fake_tensorrt(monkeypatch, version)
    cache = read_cache(bundle.path("calibration/trt.cache"))
    assert cache.version == 100300
    plan = build_engine(bundle, IMPLICIT)
    assert trt.batches_asked == 0 and trt.scales == cache.scales
    sidecar = json.loads(plan.with_suffix(".json").read_text())
    assert (sidecar["mode"], sidecar["tensorrt"]) == ("implicit", version)
    # served, not rewritten: the bundle's file and its recorded hash are untouched
    assert read_cache(bundle.path("calibration/trt.cache")).version == 100300
    assert sidecar["calibration_cache_sha256"] == bundle.file_hash("calibration/trt.cache")
    assert cuda.driver_stack() == [] and cuda.stack() == []


def test_a_refused_cache_is_reported_as_such(bundle, monkeypatch):
    trt, _ = fake_tensorrt(monkeypatch, "10.16.1.11")
    trt.accept_cache = False  # as for a cache TensorRT finds malformed
    with pytest.raises(CalibrationError) as e:
        build_engine(bundle, IMPLICIT)
    message = str(e.value)
    assert "TensorRT 10.16.1.11 did not accept the served cache and asked for calibration batches" in message
    assert str(bundle.path("calibration/trt.cache")) in message and "workspace" not in message
    assert trt.batches_asked == 1
    assert not bundle.path("engines").exists()


def test_cli_builds_implicit_int8_on_tensorrt_10_16(bundle, monkeypatch, capsys):
    fake_tensorrt(monkeypatch, "10.16.1.11")
    assert main(["build", str(bundle.root), "--precision", "int8", "--int8-mode", "implicit",
                 "--batch", "1", "8", "8"]) == 0
    # The plan first; the layer summary (deploy.trt.inspection) follows it.
    assert capsys.readouterr().out.splitlines()[0].endswith("resnet_v2_digits.int8.plan")


def activations(bundle) -> list[str]:
    import onnx

    from calibration.qdq import observed_tensors

    return observed_tensors(onnx.load(str(bundle.onnx_path("fp32"))))


def test_every_network_activation_has_a_scale(bundle, monkeypatch, caplog):
    """The cache covers every float tensor the parser makes of the ONNX graph (the stand-in
    parser names them as TensorRT's does: by ONNX tensor name), and the build says how many
    lack one."""
    fake_tensorrt(monkeypatch, "10.16.1.11")
    with caplog.at_level(logging.INFO, logger="trtdeploy.trt"):
        build_engine(bundle, IMPLICIT)
    n = len(activations(bundle))
    assert n == 62  # the input and the 61 node outputs of the default model
    assert any(f"0 of the network's {n} activation tensors have no scale;" in r.getMessage() for r in caplog.records)


def test_a_cache_of_the_qdq_tensors_only_is_reported(bundle, monkeypatch, caplog):
    """A cache from before every activation was observed: the build says what is missing."""
    import onnx

    from deploy.trt.calibration_cache import write_cache
    from calibration.qdq import plan_qdq, qdq_activations

    cache = read_cache(bundle.path("calibration/trt.cache"))
    qdq = qdq_activations(plan_qdq(onnx.load(str(bundle.onnx_path("fp32")))))
    write_cache(bundle.path("calibration/trt.cache"), {t: cache.amax(t) for t in qdq})
    with bundle.update("test") as up:  # as an older trtdeploy wrote and recorded it
        bundle.record_file("calibration/trt.cache")
        up.commit()
    fake_tensorrt(monkeypatch, "10.16.1.11")
    with caplog.at_level(logging.INFO, logger="trtdeploy.trt"):
        build_engine(bundle, IMPLICIT)
    n = len(activations(bundle))
    assert any(f"{n - len(qdq)} of the network's {n} activation tensors have no scale (e.g." in r.getMessage()
               for r in caplog.records)


# --------------------------------------------------------------------------- timing cache
@pytest.mark.parametrize("content, why", [
    (b"\x00garbage, not a timing cache", "not a TensorRT timing cache"),
    (b"TIMING:9.9.9", "made by another TensorRT or GPU"),
])
def test_unusable_timing_cache_starts_afresh_and_is_replaced_after_the_build(bundle, monkeypatch, caplog, tmp_path,
                                                                              content, why):
    trt, _ = fake_tensorrt(monkeypatch, "10.16.1.11")
    timing = tmp_path / "timing.cache"
    timing.write_bytes(content)
    trt.fail_build = True
    with caplog.at_level(logging.WARNING, logger="trtdeploy.trt"):
        with pytest.raises(EngineError, match="could not build an engine"):
            build_engine(bundle, BuildConfig(precision="fp32", timing_cache=timing))
    assert timing.read_bytes() == content  # a failed build leaves the file alone
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.startswith(f"{timing}: {why}") and "starting a fresh one" in warning
    trt.fail_build = False
    plan = build_engine(bundle, BuildConfig(precision="fp32", timing_cache=timing))
    assert timing.read_bytes() == trt.timing_key
    stats = json.loads(plan.with_suffix(".json").read_text())["timing_cache"]
    assert stats == {"path": str(timing), "bytes_before": len(content), "loaded": False,
                     "bytes_after": len(trt.timing_key)}
    build_engine(bundle, BuildConfig(precision="fp32", timing_cache=timing))  # now it loads
    assert json.loads(plan.with_suffix(".json").read_text())["timing_cache"]["loaded"] is True


def test_cli_with_a_corrupt_timing_cache(bundle, monkeypatch, tmp_path, caplog):
    fake_tensorrt(monkeypatch, "11.4.0.106")
    timing = tmp_path / "timing.cache"
    timing.write_bytes(b"not a cache")
    with caplog.at_level(logging.WARNING, logger="trtdeploy.trt"):
        assert main(["build", str(bundle.root), "--precision", "fp32", "--timing-cache", str(timing)]) == 0
    assert any(r.getMessage().startswith(f"{timing}: not a TensorRT timing cache") for r in caplog.records)
    assert timing.read_bytes().startswith(b"TIMING:11.4.0.106")


# --------------------------------------------------------------------------- build steps
def test_builder_settings_reach_tensorrt(bundle, monkeypatch):
    """What `_configure` and `_parse` ask of TensorRT, and what the sidecar says about it."""
    trt, _ = fake_tensorrt(monkeypatch, "11.4.0.106")
    config = BuildConfig(precision="int8", batch=(2, 4, 16), workspace_mib=512, tf32=True, version_compatible=True,
                         hardware_compat="ampere+")
    plan = build_engine(bundle, config)
    network, builder_config = trt.built_with
    assert network.flags == 1 << 5  # STRONGLY_TYPED
    assert builder_config.flags == {trt.BuilderFlag.TF32, trt.BuilderFlag.VERSION_COMPATIBLE}
    assert builder_config.hardware_compatibility_level == trt.HardwareCompatibilityLevel.AMPERE_PLUS
    assert builder_config.workspace == 512 << 20
    (profile,) = builder_config.profiles
    assert profile.shapes == {"input": ((2, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))}
    assert trt.host_code_allowed == [True]  # a version-compatible plan is loaded back with host code allowed
    sidecar = json.loads(plan.with_suffix(".json").read_text())
    assert (sidecar["onnx"], sidecar["version_compatible"], sidecar["hardware_compat"]) == (
        "model.int8.onnx", True, "ampere+")
    assert sidecar["builder"]["tf32"] is True and sidecar["builder"]["workspace_mib"] == 512


def test_defaults_clear_tf32_and_implicit_int8_is_weakly_typed(bundle, monkeypatch):
    trt, _ = fake_tensorrt(monkeypatch, "10.16.1.11")
    build_engine(bundle, BuildConfig(precision="fp32"))
    network, builder_config = trt.built_with
    assert network.flags == 1 << 5 and builder_config.flags == set() and trt.host_code_allowed == [False]
    build_engine(bundle, IMPLICIT)
    network, builder_config = trt.built_with
    assert network.flags == 0
    assert builder_config.flags == {trt.BuilderFlag.INT8, trt.BuilderFlag.FP16}
    assert builder_config.calibration_profile.shapes == {"input": ((8, 3, 32, 32),) * 3}


def test_parser_errors_name_the_nodes(bundle, monkeypatch):
    from .fake_builder import FakeParserError

    trt, _ = fake_tensorrt(monkeypatch, "10.16.1.11")
    trt.parse_errors = [FakeParserError(3, "unit_1/conv1", "Conv", "weights are not constant"),
                        FakeParserError(-1, "", "", "opset 99 is not supported")]
    with pytest.raises(EngineError) as e:
        build_engine(bundle, BuildConfig(precision="fp32"))
    assert str(e.value).endswith("TensorRT 10.16.1.11 cannot parse it:\n  node 3 'unit_1/conv1' (Conv): weights are "
                                 "not constant\n  model: opset 99 is not supported")
    assert trt.built_with is None and not bundle.path("engines").exists()


def test_a_plan_that_does_not_load_back_is_not_written(bundle, monkeypatch):
    trt, cuda = fake_tensorrt(monkeypatch, "10.16.1.11")
    trt.load_back = False
    with pytest.raises(EngineError, match=r"resnet_v2_digits.fp32.plan: TensorRT built an engine it cannot load "
                                          r"back \(.*engine plan is corrupt"):
        build_engine(bundle, BuildConfig(precision="fp32"))
    assert not bundle.path("engines").exists()
    assert cuda.driver_stack() == [] and cuda.stack() == []
