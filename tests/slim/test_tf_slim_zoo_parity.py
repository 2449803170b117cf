"""Acceptance: checkpoints written by tf-slim 1.1.0's own resnet_v1, vgg and inception load by name through
`trtdeploy export`, and every chosen end point of the exported model (ONNX Runtime on model.onnx,
and the SavedModel) matches tf-slim's `end_points` entry on tf-slim's inputs.

Bound: max |ours - tf-slim| <= 1e-4 x max |tf-slim entry| per end point. Both sides are FP32
convolutions that differ only in summation order (oneDNN vs ONNX Runtime kernels), ~1e-6 of the
scale even 50 layers deep; a wrong layer, padding, stride placement or BN epsilon is >= 1e-2.
Probabilities are not compared at that scale: they are judged by what the measured logit error
allows (see `assert_probabilities`).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf_slim", reason="tf-slim is a test-only dependency (the dev extra)")

from deploy.bundle import open_bundle  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.runners.ort import OrtRunner  # noqa: E402
from deploy.runners.tf import TFRunner  # noqa: E402

HERE = Path(__file__).parent
REL_TOL = 1e-4
# A v1 ResNet with resnet_v1_50's structure at a fraction of its cost, for the dense case.
ATROUS_V1 = {"name": "resnet_v1_small", "family": "v1",
             "blocks": [["block1", 8, 2, 2], ["block2", 16, 2, 2], ["block3", 32, 2, 2], ["block4", 64, 1, 1]],
             "num_classes": 21, "image_size": [161, 161], "preprocessing": "vgg",
             "output_stride": 8, "global_pool": False}


def slim_reference(tmp_path: Path, model: str, size: int, output_stride: int | None, global_pool: bool,
                   num_classes: int) -> dict[str, np.ndarray]:
    """Run tf-slim in its own process: it writes tmp_path/model.ckpt and reference.npz."""
    subprocess.run([sys.executable, str(HERE / "slim_reference.py"), model, str(size), str(output_stride or "none"),
                    str(int(global_pool)), str(num_classes), str(tmp_path)], check=True, capture_output=True)
    with np.load(tmp_path / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z.astype(np.float64) - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def assert_close(name: str, got: np.ndarray, want: np.ndarray) -> float:
    """Same values up to a squeeze (tf-slim 1.1.0 keeps [N, 1, 1, C] logits); returns the scaled error."""
    assert got.squeeze().shape == want.squeeze().shape, (name, got.shape, want.shape)
    err = float(np.abs(got.reshape(want.shape) - want).max() / np.abs(want).max())
    assert err <= REL_TOL, (name, err)
    return err


def assert_probabilities(got: np.ndarray, logits: np.ndarray, ref_logits: np.ndarray) -> None:
    """softmax(z + d) / softmax(z) lies in [exp(-2 max|d|), exp(2 max|d|)] for every class, so each
    probability may move by p * expm1(2 max|d|) (max|d| measured on the logits); 1e-5 x p more
    covers float32 rounding of exp and of the 1000-term sum."""
    delta = float(np.abs(logits.reshape(ref_logits.shape) - ref_logits).max())
    want = softmax(ref_logits).reshape(-1, ref_logits.shape[-1])
    got = got.reshape(want.shape)
    assert (np.abs(got - want) <= want * (np.expm1(2 * delta) + 1e-5) + 1e-30).all(), delta


# Softmax end points are judged by what the logit error allows; Inception v3's auxiliary head
# is training-only and not built.
NOT_COMPARED = ("predictions", "Predictions", "AuxLogits")


def export_and_compare(tmp_path: Path, which: list[str], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Export with tf-slim's checkpoint and every tf-slim end point as an output; compare ORT and TF."""
    slim_points = [k[3:] for k in ref if k.startswith("ep:") and k[3:] not in NOT_COMPARED]
    outputs = ["logits", "predictions", *slim_points]
    out = tmp_path / "bundle"
    assert main(["export", *which, "--checkpoint", str(tmp_path / "model.ckpt"), "--outputs", ",".join(outputs),
                 "--num-reference", "2", "--out", str(out)]) == 0
    bundle = open_bundle(out)
    assert bundle.manifest["model"]["weights"] == "checkpoint" and bundle.manifest["export_parity"]["pass"]
    assert [o.name for o in bundle.outputs] == outputs
    x = ref["images"]
    feed = {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    errors = {}
    for runner in (OrtRunner(bundle.onnx_path()), TFRunner(bundle)):
        with runner:
            got = runner.infer(feed)
        errors[f"{runner.name}:logits"] = assert_close("logits", got["logits"], ref["net"])
        for name in slim_points:
            errors[f"{runner.name}:{name}"] = assert_close(name, got[name], ref[f"ep:{name}"])
        # tf-slim's VGG has no softmax end point: ours is judged against softmax(tf-slim logits)
        assert_probabilities(got["predictions"], got["logits"], ref["net"])
    print(json.dumps({"worst": max(errors, key=errors.get), "max_scaled_error": max(errors.values()),
                      "outputs": len(outputs)}))
    return errors


@pytest.mark.slow
def test_resnet_v1_50_classifier_224(tmp_path):
    ref = slim_reference(tmp_path, "resnet_v1_50", 224, None, True, 1000)
    assert ref["net"].shape == (2, 1, 1, 1000)
    errors = export_and_compare(tmp_path, ["--model", "resnet_v1_50"], ref)
    assert "onnxruntime:resnet_v1_50/block4" in errors and "tf:resnet_v1_50/block1/unit_3/bottleneck_v1/conv2" in errors


def test_resnet_v1_atrous_odd_size_no_global_pool(tmp_path):
    spec = tmp_path / "resnet_v1_small.json"
    spec.write_text(json.dumps(ATROUS_V1))
    ref = slim_reference(tmp_path, str(spec), 161, 8, False, 21)
    assert ref["net"].shape == (2, 21, 21, 21)  # (161 - 1) / 8 + 1
    errors = export_and_compare(tmp_path, ["--spec", str(spec)], ref)
    assert "onnxruntime:resnet_v1_small/block4" in errors


@pytest.mark.slow
def test_vgg_16_224(tmp_path):
    ref = slim_reference(tmp_path, "vgg_16", 224, None, True, 1000)
    assert ref["net"].shape == (2, 1000) and "ep:vgg_16/conv5/conv5_3" in ref
    errors = export_and_compare(tmp_path, ["--model", "vgg_16"], ref)
    assert "onnxruntime:vgg_16/fc6" in errors and "tf:vgg_16/pool5" in errors


@pytest.mark.slow
def test_inception_v1_224(tmp_path):
    ref = slim_reference(tmp_path, "inception_v1", 224, None, False, 1001)
    assert ref["net"].shape == (2, 1001) and "ep:Mixed_5b" in ref
    errors = export_and_compare(tmp_path, ["--model", "inception_v1"], ref)
    assert "onnxruntime:Mixed_4f" in errors and "tf:Logits" in errors


@pytest.mark.slow
def test_inception_v3_299_loads_with_the_auxiliary_head_skipped(tmp_path):
    ref = slim_reference(tmp_path, "inception_v3", 299, None, False, 1001)
    assert ref["net"].shape == (2, 1001) and "ep:AuxLogits" in ref  # tf-slim built and saved the aux head
    errors = export_and_compare(tmp_path, ["--model", "inception_v3"], ref)
    assert "onnxruntime:Mixed_7c" in errors and "tf:PreLogits" in errors
    skipped = open_bundle(tmp_path / "bundle").manifest["model"]["skipped_variables"]
    assert skipped and all(v.startswith("InceptionV3/AuxLogits/") for v in skipped)
    assert "InceptionV3/AuxLogits/Conv2d_2b_1x1/weights" in skipped
