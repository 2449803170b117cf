"""FP16 conversion (`trtdeploy fp16`): FP32 I/O, kept nodes, ONNX Runtime, accuracy on held-out digits."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto  # noqa: E402

from calibration.pipeline import evaluate_accuracy  # noqa: E402
from deploy.bundle import open_bundle  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.digits import write_image_folder  # noqa: E402
from deploy.errors import UsageError  # noqa: E402
from deploy.fsutil import sha256_file  # noqa: E402
from deploy.fp16 import OVERFLOW_LIMIT, convert_fp16, plan_fp16  # noqa: E402
from deploy.runners.ort import make_session  # noqa: E402

KEEP = "resnet_v2_digits/block2/unit_1/bottleneck_v2/conv2/Conv2D"


@pytest.fixture(scope="module")
def exported(default_bundle_dir):
    return default_bundle_dir


@pytest.fixture(scope="module")
def converted(exported, tmp_path_factory):
    root = shutil.copytree(exported, tmp_path_factory.mktemp("converted") / "bundle")
    assert main(["fp16", str(root), "--keep-fp32", KEEP]) == 0
    return open_bundle(root)


def types(model):
    inferred = onnx.shape_inference.infer_shapes(model)
    t = {v.name: v.type.tensor_type.elem_type
         for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    t.update({i.name: i.data_type for i in model.graph.initializer})
    return t


def test_io_stays_float32_and_file_is_recorded(converted):
    path = converted.root / "model.fp16.onnx"
    manifest = json.loads((converted.root / "manifest.json").read_text())
    assert manifest["files"]["model.fp16.onnx"] == sha256_file(path)
    session = make_session(path)
    assert [(i.name, i.type) for i in session.get_inputs()] == [("input", "tensor(float)")]
    assert [(o.name, o.type) for o in session.get_outputs()] == [("logits", "tensor(float)"),
                                                               ("predictions", "tensor(float)")]


def test_inside_is_fp16_and_kept_nodes_are_fp32(converted):
    model = onnx.load(str(converted.root / "model.fp16.onnx"))
    onnx.checker.check_model(model)
    t = types(model)
    kept = converted.manifest["precision"]["fp16"]["kept_fp32"]
    by_op = {n.op_type: n.name for n in model.graph.node}
    assert by_op["Softmax"] in kept and by_op["GlobalAveragePool"] in kept and KEEP in kept
    for node in model.graph.node:
        floats = [x for x in (*node.input, *node.output) if t.get(x) in (TensorProto.FLOAT, TensorProto.FLOAT16)]
        if node.op_type == "Cast":
            continue
        want = TensorProto.FLOAT if node.name in kept else TensorProto.FLOAT16
        assert floats and all(t[x] == want for x in floats), node.name
    fp16_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name != KEEP]
    assert fp16_convs and all(t[n.input[1]] == TensorProto.FLOAT16 for n in fp16_convs)
    # Original tensor names survive (per-layer comparison by name).
    original = onnx.load(str(converted.root / "model.onnx"))
    names = {x for n in model.graph.node for x in n.output}
    assert {x for n in original.graph.node for x in n.output} - {"logits"} <= names | {"logits_fp16"}


def test_overflowing_tensors_keep_producer_and_consumers_fp32(exported):
    model = onnx.load(str(exported / "model.onnx"))
    add = next(n for n in model.graph.node if n.op_type == "Add")
    readers = [n.name for n in model.graph.node if add.output[0] in n.input]
    plan = plan_fp16(model, {add.output[0]: OVERFLOW_LIMIT * 1.5})
    assert add.name in plan.kept_fp32 and readers and all(r in plan.kept_fp32 for r in readers)
    assert add.name not in plan_fp16(model, {add.output[0]: OVERFLOW_LIMIT * 0.5}).kept_fp32


def test_unknown_keep_fp32_is_a_usage_error(exported, tmp_path):
    root = shutil.copytree(exported, tmp_path / "bundle")
    with pytest.raises(UsageError, match="no_such_node"):
        convert_fp16(open_bundle(root), keep_fp32=["no_such_node"])
    assert not (root / "model.fp16.onnx").exists()


def test_fp16_accuracy_on_held_out_digits(converted, tmp_path):
    held_out = write_image_folder(tmp_path / "test", "test")
    acc = evaluate_accuracy(converted, held_out, precisions=("fp32", "fp16"), batch_size=128)
    print(f"fp16: {acc}")
    assert acc.num_images == 360
    assert abs(acc.top1["fp32"] - acc.top1["fp16"]) <= 0.001  # the acceptance: 0.1 points
    assert acc.agreement["fp16"] >= 0.99
    with np.load(converted.root / "reference.npz") as ref:
        x, want = ref["input"], ref["output:logits"]
    got = make_session(converted.root / "model.fp16.onnx").run(["logits"], {"input": x})[0]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
