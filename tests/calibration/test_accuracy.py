"""calibration.pipeline.evaluate_top1: top-1 against labels and agreement with the first model,
counted by parity's AccuracyCounter (one definition of a hit, label offset included)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from calibration.pipeline import evaluate_top1  # noqa: E402
from deploy.errors import CalibrationError  # noqa: E402


def _logits_model(path, weights: np.ndarray):
    """logits = x @ weights (x: [N, 3], 3 classes)."""
    w = onnx.numpy_helper.from_array(weights.astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["logits"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 3])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_top1_agreement_and_label_offset(tmp_path):
    identity = _logits_model(tmp_path / "a.onnx", np.eye(3))
    swapped = _logits_model(tmp_path / "b.onnx", np.eye(3)[[1, 0, 2]])  # classes 0 and 1 swapped
    x = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]  # model a predicts 0, 1, 2, 2; model b 1, 0, 2, 2
    batches = [({"x": x[:2]}, np.array([0, 1])), ({"x": x[2:]}, np.array([2, 0]))]
    acc = evaluate_top1({"a": identity, "b": swapped}, batches, output="logits")
    assert acc.num_images == 4
    assert acc.top1 == {"a": 0.75, "b": 0.25} and acc.agreement == {"a": 1.0, "b": 0.5}
    # With one background output first, dataset label L is output L + 1: outputs 1 and 2 are labels 0 and 1.
    background_first = [({"x": x[1:3]}, np.array([0, 1]))]
    assert evaluate_top1({"a": identity}, background_first, output="logits", label_offset=1).top1 == {"a": 1.0}


def test_no_labelled_images_is_an_error(tmp_path):
    with pytest.raises(CalibrationError, match="no labelled images"):
        evaluate_top1({"a": _logits_model(tmp_path / "a.onnx", np.eye(3))}, [], output="logits")
