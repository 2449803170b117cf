"""`calibrate` end to end on the default model with the held-out digits as image folders:
artifacts and hashes, reuse and refusal, nothing written on errors, INT8 accuracy."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")

import calibration.stats  # noqa: E402
from deploy.trt.calibration_cache import read_cache  # noqa: E402
from calibration.pipeline import CalibrationRequest, calibrate, evaluate_accuracy  # noqa: E402
from calibration.qdq import observed_tensors, plan_qdq, qdq_activations  # noqa: E402
from deploy.bundle import open_bundle  # noqa: E402
from deploy.bundle.layout import LOCK  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.errors import CalibrationError, DataError, UsageError  # noqa: E402
from deploy.fsutil import sha256_file  # noqa: E402

NUM_CALIB = 128


@pytest.fixture(scope="module")
def exported(default_bundle_dir):
    return default_bundle_dir


@pytest.fixture(scope="module")
def calibrated(exported, digits, tmp_path_factory):
    b = open_bundle(shutil.copytree(exported, tmp_path_factory.mktemp("calibrated") / "bundle"))
    return b, calibrate(b, CalibrationRequest(digits[0], num_images=NUM_CALIB, batch_size=32))


def snapshot(root):
    """Every file of the bundle and its hash (the lock file, which any command may create, aside)."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOCK}


def test_artifacts_hashes_and_manifest(calibrated):
    b, result = calibrated
    assert not result.reused and result.statistics_seconds > 0
    for rel in ("model.int8.onnx", "calibration/scales.json", "calibration/trt.cache", "calibration/dataset.json"):
        assert (b.root / rel).is_file(), rel
        assert b.manifest["files"][rel] == sha256_file(b.root / rel), rel
        assert json.loads((b.root / "manifest.json").read_text())["files"][rel] == b.manifest["files"][rel]
    assert not [p for p in b.root.rglob(".*") if p.name != LOCK], "temporary left behind"  # the lock file stays
    info = json.loads((b.root / "manifest.json").read_text())["precision"]["int8"]
    plan = plan_qdq(onnx.load(str(b.root / "model.onnx")))
    assert info["method"] == "entropy" and info["num_images"] == NUM_CALIB and info["keep_fp32"] == []
    assert info["num_qdq_tensors"] == plan.num_qdq_tensors == result.num_qdq_tensors
    int8 = onnx.load(str(b.root / "model.int8.onnx"))
    assert info["num_qdq_tensors"] == sum(n.op_type == "QuantizeLinear" for n in int8.graph.node)


def test_trt_cache_covers_every_activation(calibrated):
    """TensorRT's own calibrator scales every network tensor; a Conv output feeding an Add
    without a scale would keep that Conv and Add out of INT8 in an implicit build."""
    b, result = calibrated
    cache = read_cache(b.root / "calibration/trt.cache")
    scales = json.loads((b.root / "calibration/scales.json").read_text())
    model = onnx.load(str(b.root / "model.onnx"))
    observed = observed_tensors(model)
    assert cache.algorithm == "EntropyCalibration2" and cache.version == 100300
    assert list(cache.scales) == observed  # ONNX tensor names = TensorRT's parser names
    assert result.num_observed == len(observed) == 62
    assert result.num_qdq_activations == len(qdq_activations(plan_qdq(model)))
    conv3 = [n.output[0] for n in model.graph.node if n.name.endswith("conv3/BiasAdd")]
    assert len(conv3) == 6 and set(conv3) <= set(cache.scales)
    for name in observed:
        assert cache.amax(name) == pytest.approx(scales["amax"][name], rel=1e-6)
        assert 0 < scales["amax"][name] <= scales["max"][name] * (1 + 1e-6)
    assert scales["model_sha256"] == sha256_file(b.root / "model.onnx")
    info = json.loads((b.root / "manifest.json").read_text())["precision"]["int8"]
    assert info["num_cache_tensors"] == 62


def test_statistics_are_one_pass_over_every_activation(exported, digits, tmp_path, monkeypatch):
    b = open_bundle(shutil.copytree(exported, tmp_path / "bundle"))
    calls = []
    real = calibration.stats.collect_statistics

    def spy(model, tensors, *args, **kwargs):
        calls.append(list(tensors))
        return real(model, tensors, *args, **kwargs)

    monkeypatch.setattr(calibration.stats, "collect_statistics", spy)
    calibrate(b, CalibrationRequest(digits[0], num_images=32, batch_size=32))
    assert len(calls) == 1 and calls[0] == observed_tensors(onnx.load(str(b.root / "model.onnx")))


def test_scales_of_the_qdq_tensors_only_are_not_reused(calibrated, digits, tmp_path):
    """A scales.json from before every activation was observed cannot make the full cache."""
    b = open_bundle(shutil.copytree(calibrated[0].root, tmp_path / "bundle"))
    path = b.root / "calibration/scales.json"
    scales = json.loads(path.read_text())
    qdq = set(qdq_activations(plan_qdq(onnx.load(str(b.root / "model.onnx")))))
    scales["amax"] = {k: v for k, v in scales["amax"].items() if k in qdq}
    path.write_text(json.dumps(scales))
    with b.update("test") as up:  # as an older trtdeploy wrote and recorded it
        b.record_file("calibration/scales.json")
        up.commit()
    with pytest.raises(CalibrationError, match=r"no range for \d+ of the model's 62 activation tensors .*--recalibrate"):
        calibrate(b, CalibrationRequest(digits[0], num_images=NUM_CALIB, batch_size=32))
    result = calibrate(b, CalibrationRequest(digits[0], num_images=NUM_CALIB, batch_size=32, recalibrate=True))
    assert not result.reused and len(read_cache(b.root / "calibration/trt.cache").scales) == 62


def test_dataset_manifest(calibrated, digits):
    b, _ = calibrated
    ds = json.loads((b.root / "calibration/dataset.json").read_text())
    scales = json.loads((b.root / "calibration/scales.json").read_text())
    assert ds["count"] == len(ds["items"]) == NUM_CALIB
    assert ds["sha256"] == scales["dataset_sha256"]
    for item in ds["items"][:5]:
        assert not item["path"].startswith("/")
        assert item["sha256"] == sha256_file(digits[0] / item["path"])


def test_rerun_reuses_scales_without_statistics(calibrated, digits, monkeypatch):
    b, _ = calibrated
    before = snapshot(b.root)

    def no_statistics(*args, **kwargs):
        raise AssertionError("statistics pass ran although scales.json matches")

    monkeypatch.setattr(calibration.stats, "collect_statistics", no_statistics)
    result = calibrate(b, CalibrationRequest(digits[0], num_images=NUM_CALIB, batch_size=32))
    assert result.reused and result.statistics_seconds == 0
    after = snapshot(b.root)
    for rel in ("model.int8.onnx", "calibration/scales.json", "calibration/trt.cache", "calibration/dataset.json"):
        assert after[rel] == before[rel], rel


@pytest.mark.parametrize("change, expect", [
    ({"method": "max"}, "method changed (entropy -> max)"),
    ({"num_images": 64}, "calibration data changed"),
])
def test_changed_inputs_are_refused_unless_recalibrate(bundle, digits, change, expect):
    calibrate(bundle, CalibrationRequest(digits[0], num_images=NUM_CALIB))
    before = snapshot(bundle.root)
    kwargs = {"num_images": NUM_CALIB, **change}
    with pytest.raises(CalibrationError) as e:
        calibrate(bundle, CalibrationRequest(digits[0], **kwargs))
    assert expect in str(e.value) and "--recalibrate" in str(e.value)
    assert snapshot(bundle.root) == before
    result = calibrate(bundle, CalibrationRequest(digits[0], recalibrate=True, **kwargs))
    assert not result.reused
    assert json.loads((bundle.root / "manifest.json").read_text())["precision"]["int8"]["method"] == \
        change.get("method", "entropy")


def test_empty_set_leaves_bundle_unchanged(bundle, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    before = snapshot(bundle.root)
    with pytest.raises(DataError):
        calibrate(bundle, CalibrationRequest(empty))
    assert snapshot(bundle.root) == before
    assert not (bundle.root / "calibration").exists()


def test_unknown_keep_fp32_node_is_a_usage_error(bundle, digits):
    before = snapshot(bundle.root)
    with pytest.raises(UsageError, match="no_such_node"):
        calibrate(bundle, CalibrationRequest(digits[0], keep_fp32=["no_such_node"]))
    assert snapshot(bundle.root) == before


def test_cli_summary(bundle, digits, capsys):
    assert main(["calibrate", str(bundle.root), "--data", str(digits[1]), "--num-images", "64",
                 "--method", "percentile", "--keep-fp32", "resnet_v2_digits/logits/BiasAdd"]) == 0
    out = capsys.readouterr().out
    assert "percentile" in out and "top-1" in out and "INT8" in out
    int8 = onnx.load(str(bundle.root / "model.int8.onnx"))
    fp32 = onnx.load(str(bundle.root / "model.onnx"))
    # The excluded node reads its FP32 input, no DequantizeLinear (tf2onnx numbers the tensor name
    # with a process-wide counter, so it is taken from model.onnx rather than written here).
    logits, = (n for n in int8.graph.node if n.name == "resnet_v2_digits/logits/BiasAdd")
    want, = (n.input[0] for n in fp32.graph.node if n.name == "resnet_v2_digits/logits/BiasAdd")
    assert logits.input[0] == want
    assert main(["calibrate", str(bundle.root), "--data", str(digits[1]), "--num-images", "64"]) == 2
    assert "--recalibrate" in capsys.readouterr().err


# The acceptance numbers: INT8 top-1 on the held-out digits within 0.5 points of
# FP32, agreement >= 99%.
@pytest.mark.parametrize("method", ["entropy", "percentile", "max", "mse"])
def test_int8_accuracy_on_held_out_digits(bundle, digits, method):
    calibrate(bundle, CalibrationRequest(digits[0], method=method, num_images=256, batch_size=64))
    acc = evaluate_accuracy(bundle, digits[1], precisions=("fp32", "int8"), batch_size=128)
    print(f"{method}: {acc}")
    assert acc.num_images == 360
    assert abs(acc.top1["fp32"] - acc.top1["int8"]) <= 0.005
    assert acc.agreement["int8"] >= 0.99
    assert np.isclose(acc.agreement["fp32"], 1.0)
