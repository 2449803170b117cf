"""`trtdeploy export`: the bundle, its ONNX, parity, and the error paths."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")

from deploy.bundle import open_bundle  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.fsutil import sha256_file  # noqa: E402
from deploy.runners.ort import OrtRunner  # noqa: E402
from deploy.runners.tf import TFRunner  # noqa: E402


@pytest.fixture(scope="module")
def digits_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "bundle"
    assert main(["export", "--model", "default", "--out", str(out)]) == 0
    return open_bundle(out)


def test_bundle_contents(digits_bundle):
    b = digits_bundle
    for rel in ("manifest.json", "model.onnx", "reference.npz", "saved_model"):
        assert (b.root / rel).exists(), rel
    assert not [p for p in b.root.parent.iterdir() if p.name.startswith(".")], "temporary left behind"
    m = b.manifest
    assert m["model"]["name"] == "resnet_v2_digits" and m["model"]["weights"] == "checkpoint"
    assert m["inputs"] == [{"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32", "layout": "NCHW"}]
    assert [o["name"] for o in m["outputs"]] == ["logits", "predictions"]
    assert m["outputs"][0]["shape"] == [-1, 10]
    assert m["preprocessing"] == {"preset": "digits", "height": 32, "width": 32, "layout": "NCHW"}
    assert m["label_offset"] == 0
    assert m["files"]["model.onnx"] == sha256_file(b.root / "model.onnx")
    for v in ("tensorflow", "tf2onnx", "onnx", "onnxruntime"):
        assert v in m["tools"]
    assert "resnet_v2_digits/block1/unit_1/bottleneck_v2" in m["end_points"]
    assert m["model"]["trained_image_size"] == [32, 32] and m["model"]["warnings"] == []


def test_onnx_is_clean_dynamic_and_matches_tf(digits_bundle):
    model = onnx.load(str(digits_bundle.onnx_path()))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    ref = np.load(digits_bundle.path("reference.npz"))
    x = ref["input"]
    assert x.shape[1] == 3
    with OrtRunner(digits_bundle.onnx_path()) as ort, TFRunner(digits_bundle) as tf_runner:
        for batch in (1, 3):  # dynamic batch
            got = ort.infer({"input": np.ascontiguousarray(x[:batch])})
            want = tf_runner.infer({"input": np.ascontiguousarray(x[:batch])})
            scale = np.abs(want["logits"]).max()
            assert np.abs(got["logits"] - want["logits"]).max() <= 1e-4 * scale
    # reference.npz holds TF's outputs for its inputs (the last loop ran batch 3). Export ran them
    # as one batch of 8, so oneDNN may have summed in another order: judge the error against the
    # logits' scale (as above), not per element: an element-wise rtol/atol of 1e-5 leaves a logit
    # near 0 less than 1e-6 of the logits' scale, the size of reordering noise itself.
    stored = ref["output:logits"][:3]
    assert np.abs(stored - want["logits"]).max() <= 1e-4 * np.abs(stored).max()
    parity = digits_bundle.manifest["export_parity"]
    assert parity["pass"] and parity["outputs"]["logits"]["top1_agreement"] == 1.0
    # the trained default model classifies its held-out reference samples
    assert (ref["output:logits"].argmax(-1) == ref["labels"]).mean() >= 0.9


def test_end_points_exist_in_onnx(digits_bundle):
    model = onnx.load(str(digits_bundle.onnx_path()))
    produced = {o for n in model.graph.node for o in n.output}
    assert set(digits_bundle.manifest["end_points"].values()) <= produced


def test_tf_reference_runs_without_tf32():
    """On Ampere+ GPUs TensorFlow would round FP32 convolutions to TF32 (~1e-3): the reference
    every backend is judged against must be FP32."""
    import tensorflow as tf

    from deploy.runners.tf import import_tf

    tf.config.experimental.enable_tensor_float_32_execution(True)
    assert import_tf() is tf
    assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_nhwc_layout(tmp_path):
    out = tmp_path / "nhwc"
    assert main(["export", "--model", "default", "--layout", "nhwc", "--num-reference", "2", "--out", str(out)]) == 0
    b = open_bundle(out)
    assert b.inputs[0].shape == (-1, 32, 32, 3) and b.inputs[0].layout == "NHWC"
    assert b.manifest["export_parity"]["pass"]


def test_trained_model_at_another_size_warns_in_cli_manifest_and_report(tmp_path, capsys):
    """The default at 8x8 exported with exit 0 and "parity PASS" (TF and ONNX agree) yet scored 9.72%
    on held-out digits: the size it was trained at is recorded, and any other size is warned about."""
    out = tmp_path / "b"
    assert main(["export", "--model", "default", "--image-size", "16", "16", "--num-reference", "2",
                 "--out", str(out)]) == 0
    said = "exported at 16x16, but the weights were trained at 32x32: expect poor accuracy"
    assert f"  WARNING: {said}" in capsys.readouterr().out
    model = open_bundle(out).manifest["model"]
    assert model["trained_image_size"] == [32, 32] and model["image_size"] == [16, 16]
    assert len(model["warnings"]) == 1 and model["warnings"][0].startswith(said)
    assert main(["parity", str(out), "--backends", "ort-fp32"]) == 0
    assert f"WARNING: {said}" in capsys.readouterr().out
    page = (out / "reports" / "parity.html").read_text()
    assert "Model weights: <b>checkpoint</b>; input 16x16, trained at 32x32" in page
    assert f"WARNING: {said}" in page


@pytest.fixture(scope="module")
def checkpoint_21(tmp_path_factory):
    """A tf-slim checkpoint of resnet_v2_digits with 21 classes: the issue's
    `--model resnet_v2_101 --num-classes 21 --checkpoint CKPT`, in small."""
    from deploy.slim.checkpoint import save_slim_checkpoint
    from deploy.slim.net import SlimNet
    from deploy.slim.netspec import zoo_spec

    model = SlimNet(zoo_spec("resnet_v2_digits", num_classes=21), seed=3)
    return save_slim_checkpoint(model.variables_by_name, tmp_path_factory.mktemp("ckpt21") / "model.ckpt")


# Every export shape the CLI accepts (the default classifier and --layout nhwc are exported above):
# extra argv, input shape, logits shape, printed top-1 agreement (only [N, classes] outputs have one).
EXPORT_SHAPES = [
    pytest.param([], ["--no-global-pool", "--output-stride", "4"], (-1, 3, 32, 32), (-1, 8, 8, 10), False,
                 id="dense-atrous4"),
    pytest.param(["--checkpoint", "CKPT21"], ["--num-classes", "21", "--image-size", "40", "40", "--output-stride",
                 "8", "--no-global-pool", "--layout", "nhwc"], (-1, 40, 40, 3), (-1, 5, 5, 21), False,
                 id="issue-shape-21-classes-dense-nhwc"),
    pytest.param(["--checkpoint", "CKPT21"], ["--image-size", "40", "40", "--output-stride", "8"],
                 (-1, 3, 40, 40), (-1, 21), True, id="classes-from-checkpoint-atrous8-classifier"),
]


@pytest.mark.parametrize("weights,argv,in_shape,logits_shape,agreement", EXPORT_SHAPES)
def test_every_export_shape_through_the_cli(tmp_path, capsys, checkpoint_21, weights, argv, in_shape,
                                            logits_shape, agreement):
    weights = [str(checkpoint_21) if a == "CKPT21" else a for a in weights]
    out = tmp_path / "b"
    assert main(["export", "--model", "resnet_v2_digits", *weights, *argv, "--num-reference", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    b = open_bundle(out)
    assert b.inputs[0].shape == in_shape
    assert [(o.name, o.shape) for o in b.outputs] == [("logits", logits_shape), ("predictions", logits_shape)]
    assert b.num_classes == logits_shape[-1]
    assert b.manifest["model"]["global_pool"] is (len(logits_shape) == 2)
    assert b.manifest["export_parity"]["pass"]
    lines = [line for line in printed.out.splitlines() if "TF vs ONNX Runtime [logits]" in line]
    assert len(lines) == 1 and "max abs" in lines[0]
    assert ("top-1 agreement 100.0%" in lines[0]) is agreement
    assert "parity PASS" in printed.out
    # The embedded weights were trained at 32x32; a user's checkpoint's size is unknown: no warning.
    assert b.manifest["model"]["trained_image_size"] == (None if weights else [32, 32])
    assert "WARNING" not in printed.out


@pytest.mark.parametrize("argv,message", [
    (["--model", "resnet_v2_7"], "unknown model 'resnet_v2_7'"),
    (["--model", "default", "--checkpoint", "/nonexistent/model.ckpt"], "no such checkpoint"),
    (["--model", "default", "--num-classes", "7"], "the model needs [1, 1, 256, 7] (pass --num-classes"),
    (["--model", "resnet_v2_50", "--checkpoint", "DIGITS"], "has no variables under resnet_v2_50/"),
    (["--model", "default", "--output-stride", "6"], "output_stride"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, argv, message):
    from deploy.slim.registry import REGISTRY

    argv = [str(REGISTRY["resnet_v2_digits"].checkpoint) if a == "DIGITS" else a for a in argv]
    out = tmp_path / "b"
    assert main(["export", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_out_needs_force(tmp_path, capsys):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "--model", "default", "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", "--model", "default", "--out", str(blocker / "b")]) == 2
    assert "cannot be created" in capsys.readouterr().err


@pytest.mark.slow
def test_resnet_v2_50_224_export_parity(tmp_path):
    """The issue's bar: resnet_v2_50 at 224, max abs error <= 1e-4 x max |logit|."""
    out = tmp_path / "r50"
    assert main(["export", "--model", "resnet_v2_50", "--num-reference", "2", "--out", str(out)]) == 0
    b = open_bundle(out)
    p = b.manifest["export_parity"]
    ref = np.load(b.path("reference.npz"))
    assert p["outputs"]["logits"]["max_abs"] <= 1e-4 * np.abs(ref["output:logits"]).max()
    assert b.manifest["model"]["weights"] == "random" and "NOT a trained model" in b.manifest["model"]["warning"]
    assert json.loads((out / "manifest.json").read_text())["outputs"][0]["shape"] == [-1, 1001]
