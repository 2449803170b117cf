"""Q/DQ placement on a real export of the default model (digits ResNet v2), checked on the graph."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

from calibration.ranges import CalibrationConfig, compute_amax  # noqa: E402
from calibration.qdq import insert_qdq, observed_tensors, plan_qdq, qdq_activations  # noqa: E402
from calibration.stats import collect_statistics  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.errors import UsageError  # noqa: E402
from deploy.runners.ort import make_session  # noqa: E402


@pytest.fixture(scope="module")
def bundle_dir(default_bundle_dir):
    return default_bundle_dir


@pytest.fixture(scope="module")
def fp32(bundle_dir):
    return onnx.load(str(bundle_dir / "model.onnx"))


@pytest.fixture(scope="module")
def reference(bundle_dir):
    with np.load(bundle_dir / "reference.npz") as ref:
        return {k: ref[k] for k in ref.files}


@pytest.fixture(scope="module")
def amax(fp32, reference):
    plan = plan_qdq(fp32)
    collector = collect_statistics(fp32, qdq_activations(plan), [{"input": reference["input"]}])
    return compute_amax(collector, CalibrationConfig("max"))


@pytest.fixture(scope="module")
def int8(fp32, amax):
    return insert_qdq(fp32, plan_qdq(fp32), amax)


class Graph:
    def __init__(self, model):
        self.model = model
        self.nodes = list(model.graph.node)
        self.producer = {t: n for n in self.nodes for t in n.output}
        self.inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}

    def op(self, tensor):
        p = self.producer.get(tensor)
        return p.op_type if p is not None else None

    def through_qdq(self, tensor):
        """(original tensor, whether a DequantizeLinear sat on the way)."""
        if self.op(tensor) != "DequantizeLinear":
            return tensor, False
        q = self.producer[self.producer[tensor].input[0]]
        assert q.op_type == "QuantizeLinear"
        return q.input[0], True

    def of_type(self, op):
        return [n for n in self.nodes if n.op_type == op]


@pytest.fixture(scope="module")
def g(int8):
    return Graph(int8)


def test_checker_and_opset(int8):
    onnx.checker.check_model(int8, full_check=True)
    assert next(o.version for o in int8.opset_import if o.domain in ("", "ai.onnx")) >= 13


def test_zero_points_are_int8_zero_and_names_derive_from_the_tensor(g):
    qs, dqs = g.of_type("QuantizeLinear"), g.of_type("DequantizeLinear")
    assert qs and len(qs) == len(dqs)
    for n in qs + dqs:
        zp = g.inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
        assert np.all(g.inits[n.input[1]] > 0), n.name
    for q in qs:
        assert q.name == f"{q.input[0]}_QuantizeLinear"


def test_conv_weights_per_output_channel(g):
    convs = g.of_type("Conv")
    assert convs
    for conv in convs:
        dq = g.producer[conv.input[1]]
        assert dq.op_type == "DequantizeLinear", conv.name
        q = g.producer[dq.input[0]]
        w = g.inits[q.input[0]]
        scale = g.inits[q.input[1]]
        axis = {a.name: a.i for a in q.attribute}.get("axis")
        assert axis == 0 and scale.shape == (w.shape[0],), conv.name
        np.testing.assert_allclose(scale, np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127, rtol=1e-6)
        # Activation input quantized per tensor.
        act_dq = g.producer[conv.input[0]]
        assert act_dq.op_type == "DequantizeLinear" and g.inits[act_dq.input[1]].shape == (), conv.name


def test_biases_stay_float(g):
    for conv in g.of_type("Conv"):
        if len(conv.input) > 2:
            assert conv.input[2] in g.inits and g.inits[conv.input[2]].dtype == np.float32, conv.name


def test_no_qdq_between_conv3_and_add_and_the_shortcut_input_is_quantized(g):
    """The main branch's conv3 fuses with the Add; the other input (identity, subsample
    MaxPool or projection `shortcut` Conv) is read as INT8."""
    adds = g.of_type("Add")
    assert len(adds) == 6
    for add in adds:
        origins = [g.through_qdq(t) for t in add.input]
        for (orig, quantized) in origins:
            if g.producer.get(orig) is not None and g.producer[orig].name.endswith("conv3/BiasAdd"):
                assert not quantized, f"{add.name}: DequantizeLinear between conv3 and Add"
            else:
                assert quantized, f"{add.name}: residual input {orig} without Q/DQ"
        assert sum(quantized for _, quantized in origins) == 1, add.name


def test_projection_shortcut_conv_output_is_quantized(fp32, g):
    projections = [a for a in g.of_type("Add") if all(g.op(g.through_qdq(t)[0]) == "Conv" for t in a.input)]
    assert [a.name.split("/")[1:3] for a in projections] == [["block2", "unit_1"], ["block3", "unit_1"]]
    for add in projections:
        quantized = [g.producer[orig].name for orig, q in map(g.through_qdq, add.input) if q]
        assert quantized == [add.name.replace("/add", "/shortcut/BiasAdd")]
    reasons = {a.tensor: a.reasons for a in plan_qdq(fp32).activations}
    shortcut_outputs = [n.output[0] for n in fp32.graph.node if n.name.endswith("shortcut/BiasAdd")]
    assert len(shortcut_outputs) == 2 and all(reasons[t] == ("residual add input",) for t in shortcut_outputs)


def test_projection_shortcut_found_by_structure_not_names():
    """Renamed nodes and swapped Add inputs: the Conv that reads upstream of the other is the
    shortcut; two Convs side by side on one tensor have no shortcut."""
    from onnx import TensorProto, helper, numpy_helper

    def conv(name, x, y):
        w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), f"{name}_w")
        return helper.make_node("Conv", [x, w.name], [y], name=name), w

    def model(nodes_and_weights, add_inputs):
        nodes = [n for n, _ in nodes_and_weights] + [helper.make_node("Add", add_inputs, ["y"], name="add")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                                  [w for _, w in nodes_and_weights])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    chain = [conv("a", "x", "a_out"), conv("b", "a_out", "b_out"), conv("skip", "x", "skip_out")]
    for add_inputs in (["b_out", "skip_out"], ["skip_out", "b_out"]):
        plan = plan_qdq(model(chain, add_inputs))
        residual = [(a.tensor, a.consumers) for a in plan.activations if "residual add input" in a.reasons]
        assert residual == [("skip_out", (("add", add_inputs.index("skip_out")),))]
    side_by_side = [conv("a", "x", "a_out"), conv("b", "x", "b_out")]
    plan = plan_qdq(model(side_by_side, ["a_out", "b_out"]))
    assert not [a for a in plan.activations if "residual add input" in a.reasons]


def test_preact_batchnorm_inputs_not_after_conv_are_quantized(g):
    bns = g.of_type("BatchNormalization")
    assert bns
    for bn in bns:
        orig, quantized = g.through_qdq(bn.input[0])
        assert quantized == (g.op(orig) != "Conv"), bn.name
    assert any(bn.name.endswith("postnorm/FusedBatchNormV3") for bn in bns)


def test_shortcut_maxpool_inputs_are_quantized(g):
    add_inputs = {g.through_qdq(t)[0] for n in g.of_type("Add") for t in n.input}
    shortcuts = [n for n in g.of_type("MaxPool") if n.name.endswith("bottleneck_v2/shortcut")]
    assert len(shortcuts) == 2
    for n in shortcuts:
        assert n.output[0] in add_inputs
        assert g.through_qdq(n.input[0])[1], n.name


def test_head_and_softmax_stay_float_but_logits_conv_input_is_quantized(g):
    for op in ("GlobalAveragePool", "Softmax", "Reshape", "Squeeze"):
        for n in g.of_type(op):
            assert not g.through_qdq(n.input[0])[1], n.name
    logits = next(n for n in g.of_type("Conv") if "logits" in n.name)
    assert g.through_qdq(logits.input[0])[1]


def test_qdq_activations_are_exactly_the_quantized_activations(fp32, g):
    plan = plan_qdq(fp32)
    quantized_activations = {q.input[0] for q in g.of_type("QuantizeLinear") if q.input[0] not in g.inits}
    assert set(qdq_activations(plan)) == quantized_activations
    assert len(qdq_activations(plan)) == len(set(qdq_activations(plan)))
    assert plan.num_qdq_tensors == len(g.of_type("QuantizeLinear"))


def test_qdq_op_types_are_the_ops_that_get_qdq(fp32):
    """deploy.int8.QDQ_OP_TYPES (what parity offers to keep in high precision) is exactly the
    set of op types whose inputs carry Q/DQ: the digits model has every case but AveragePool,
    which the edge zoo's have (tests/calibration/test_qdq_zoo.py)."""
    from deploy.int8 import QDQ_OP_TYPES

    plan = plan_qdq(fp32)
    op_type = {n.name: n.op_type for n in fp32.graph.node}
    consumers = [c for q in (*plan.activations, *plan.weights) for c, _ in q.consumers]
    assert {op_type[c] for c in consumers} == set(QDQ_OP_TYPES) - {"AveragePool"}


def test_observed_tensors_are_every_float_activation(fp32):
    """What TensorRT's own calibrator would give a scale: the input and every node output,
    Conv outputs feeding an Add included; no weights."""
    observed = observed_tensors(fp32)
    node_outputs = [t for n in fp32.graph.node for t in n.output]
    assert observed == ["input", *node_outputs]
    adds = [n for n in fp32.graph.node if n.op_type == "Add"]
    producer = {t: n for n in fp32.graph.node for t in n.output}
    conv_into_add = [t for a in adds for t in a.input if producer.get(t) is not None and producer[t].op_type == "Conv"]
    assert len(conv_into_add) == 8 and set(conv_into_add) <= set(observed)  # 6 conv3 + 2 projection shortcuts
    assert not set(observed) & {t.name for t in fp32.graph.initializer}
    assert set(qdq_activations(plan_qdq(fp32))) < set(observed)


def test_original_names_preserved(fp32, int8):
    before = {t for n in fp32.graph.node for t in n.output} | {t.name for t in fp32.graph.initializer}
    after = {t for n in int8.graph.node for t in n.output} | {t.name for t in int8.graph.initializer}
    assert before <= after
    assert {n.name for n in fp32.graph.node} <= {n.name for n in int8.graph.node}
    assert [o.name for o in int8.graph.output] == [o.name for o in fp32.graph.output]


def test_keep_fp32_keeps_a_node_unquantized(fp32, amax):
    conv = next(n for n in fp32.graph.node if n.op_type == "Conv" and "block2/unit_1" in n.name
                and n.name.endswith("conv2/Conv2D"))
    bn = next(n for n in fp32.graph.node if n.name.endswith("block3/unit_1/bottleneck_v2/preact/FusedBatchNormV3"))
    plan = plan_qdq(fp32, keep_fp32=[conv.name, bn.name])
    g = Graph(insert_qdq(fp32, plan, amax))
    by_name = {n.name: n for n in g.nodes}
    assert list(by_name[conv.name].input) == list(conv.input)  # activation and weight as in FP32
    assert list(by_name[bn.name].input) == list(bn.input)
    assert conv.input[0] not in qdq_activations(plan)
    # Neighbours keep theirs; the excluded BN's input tensor still feeds no other quantized edge here.
    others = [n for n in g.of_type("Conv") if n.name != conv.name]
    assert all(g.through_qdq(n.input[0])[1] and g.through_qdq(n.input[1])[1] for n in others)
    assert len(plan.weights) == len(plan_qdq(fp32).weights) - 1


def test_keep_fp32_rejects_unknown_names(fp32):
    with pytest.raises(UsageError) as e:
        plan_qdq(fp32, keep_fp32=["resnet_v2_digits/no_such_node"])
    msg = str(e.value)
    assert "no_such_node" in msg
    assert any(n.name in msg for n in fp32.graph.node)


def test_onnx_runtime_runs_int8(int8, reference):
    session = make_session(int8.SerializeToString())
    logits, probs = session.run(["logits", "predictions"], {"input": reference["input"]})
    assert logits.shape == reference["output:logits"].shape and np.isfinite(logits).all()
    agreement = np.mean(logits.argmax(1) == reference["output:logits"].argmax(1))
    assert agreement >= 0.75
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def _tiny_conv_model(opset: int = 17, extra_init: str | None = None):
    """x -> Conv(w) -> y: one activation and one weight to quantize."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")]
    if extra_init:
        inits.append(numpy_helper.from_array(np.ones(1, np.float32), extra_init))
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_insert_qdq_on_a_tiny_model_leaves_the_input_alone():
    model = _tiny_conv_model()
    before = model.SerializeToString()
    out = insert_qdq(model, plan_qdq(model), {"x": 2.0})
    assert model.SerializeToString() == before
    conv, = (n for n in out.graph.node if n.op_type == "Conv")
    assert list(conv.input) == ["x_dequantized", "w_dequantized"]
    x = np.linspace(-2, 2, 32, dtype=np.float32).reshape(1, 2, 4, 4)
    (y,) = make_session(out.SerializeToString()).run(["y"], {"x": x})
    # ones weights, scale 2/127 on x: y = sum over the 2 channels of x rounded to the INT8 grid
    step = np.float32(2.0 / 127)
    np.testing.assert_allclose(y, np.repeat(np.round(x / step).sum(1, keepdims=True) * step, 2, axis=1), rtol=1e-6)


@pytest.mark.parametrize("case, match", [
    ("old opset", "opset 11 < 13"),
    ("no range", "no calibrated range for 1 tensor"),
    ("bad range", "amax 0.0 is not positive"),
    ("name taken", "cannot name the Q/DQ pair of 'x': 'x_scale' already exists"),
    ("other model", "plan names nodes this model lacks"),
    ("mismatch", "plan does not match the model: node 'conv' input 0 is 'x', planned 'w'"),
])
def test_insert_qdq_refuses(case, match):
    from calibration.qdq import ActivationQdq, QdqPlan
    from deploy.errors import CalibrationError

    model = _tiny_conv_model(opset=11 if case == "old opset" else 17,
                             extra_init="x_scale" if case == "name taken" else None)
    plan, amax = plan_qdq(model), {"x": 0.0 if case == "bad range" else 2.0}
    if case == "no range":
        amax = {}
    elif case == "other model":
        plan = QdqPlan((ActivationQdq("x", (("conv_renamed", 0),), ("conv input",)),), ())
    elif case == "mismatch":
        plan = QdqPlan((ActivationQdq("w", (("conv", 0),), ("conv input",)),), ())
        amax = {"w": 1.0}
    with pytest.raises(CalibrationError, match=match):
        insert_qdq(model, plan, amax)
