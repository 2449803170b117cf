"""deploy.onnx_graph.with_outputs: intermediates of FP32 and FP16 models as ONNX Runtime outputs."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from deploy.onnx_graph import with_outputs  # noqa: E402
from deploy.runners.ort import make_session  # noqa: E402


def _model(dtype: int = TensorProto.FLOAT):
    """x -> Relu -> r -> Neg -> y, in `dtype`."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Neg", ["r"], ["y"], name="neg")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, [2])],
                              [helper.make_tensor_value_info("y", dtype, [2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("dtype, np_type", [(TensorProto.FLOAT, np.float32), (TensorProto.FLOAT16, np.float16)])
def test_intermediates_become_outputs_of_any_float_type(dtype, np_type):
    model = _model(dtype)
    session = make_session(with_outputs(model, ["r", "y", "r"]))
    assert [o.name for o in session.get_outputs()] == ["y", "r"]  # no duplicates, existing output kept
    r, y = session.run(["r", "y"], {"x": np.array([-1.0, 2.0], np_type)})
    assert r.dtype == np_type and r.tolist() == [0.0, 2.0] and y.tolist() == [0.0, -2.0]
    assert [o.name for o in model.graph.output] == ["y"]  # the caller's model is left alone


def test_a_path_is_loaded(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model(), str(path))
    (r,) = make_session(with_outputs(path, ["r"])).run(["r"], {"x": np.array([-3.0, 4.0], np.float32)})
    assert r.tolist() == [0.0, 4.0]
