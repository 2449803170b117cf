"""The statistics pass on a real export of the default model: what it fetches, and that its
shortcuts (Relu outputs from their inputs, bound output buffers, threads) give the counts a
plain loop over every activation gives."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")

import calibration.stats  # noqa: E402
from calibration.qdq import observed_tensors  # noqa: E402
from calibration.stats import collect_statistics, fetch_plan  # noqa: E402
from deploy.onnx_graph import with_outputs  # noqa: E402
from deploy.runners.ort import make_session  # noqa: E402
from tests.calibration.test_histograms import StraightforwardCollector, _assert_same_statistics  # noqa: E402


@pytest.fixture(scope="module")
def fp32(default_bundle_dir):
    return onnx.load(str(default_bundle_dir / "model.onnx"))


@pytest.fixture(scope="module")
def feeds(default_bundle_dir):
    """The 8 reference inputs and 3x their negatives (so ranges grow after the first batch) in
    batches of 6, 6 and 4: the last smaller than the first, as a set's last batch is."""
    with np.load(default_bundle_dir / "reference.npz") as ref:
        x = ref["input"]
    both = np.concatenate([x, -3.0 * x])
    return [{"input": both[:6]}, {"input": both[6:12]}, {"input": both[12:]}]


def test_relu_outputs_are_derived_not_fetched(fp32):
    observed = observed_tensors(fp32)
    plan = fetch_plan(fp32, observed)
    relus = [n for n in fp32.graph.node if n.op_type == "Relu"]
    assert relus and all(plan.relu_outputs[n.input[0]] for n in relus)
    derived = {y for ys in plan.relu_outputs.values() for y in ys}
    assert derived == {n.output[0] for n in relus} and not derived & set(plan.fetched)
    assert plan.fed == ("input",) and set(plan.fetched) | derived | {"input"} == set(observed)


def test_a_relu_of_a_derived_relu_is_fetched():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r1"], name="a"), helper.make_node("Relu", ["r1"], ["r2"], name="b")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("r2", TensorProto.FLOAT, [2])])
    plan = fetch_plan(helper.make_model(graph), ["x", "r1", "r2"])
    assert plan.relu_outputs == {"x": ("r1",)} and plan.fetched == ("r2",)


def test_statistics_pass_matches_a_plain_loop_bit_for_bit(fp32, feeds, monkeypatch):
    """Relu outputs binned from their inputs, batches after the first written into its output
    arrays (the smaller last one into their leading rows), tensors in two threads: the same
    counts as every activation fetched and binned one after the other."""
    observed = observed_tensors(fp32)
    bound = []
    real = calibration.stats._Outputs._run_bound
    monkeypatch.setattr(calibration.stats._Outputs, "_run_bound",
                        lambda self, feed, rows: bound.append(rows) or real(self, feed, rows))
    fast = collect_statistics(fp32, observed, feeds, threads=2)
    assert bound == [6, 4]  # the first batch's outputs became the buffers

    session = make_session(with_outputs(fp32, observed[1:]))
    ref = StraightforwardCollector()
    tops = {}
    for feed in feeds:
        for name, value in zip(observed, [feed["input"], *session.run(observed[1:], feed)]):
            ref.update(name, value)
        tops = tops or {n: st["top"] for n, st in ref.stats.items()}
    assert sum(ref.stats[n]["top"] > tops[n] for n in observed) > len(observed) // 2  # ranges grew
    for name in observed:
        _assert_same_statistics(fast, ref, name)
    assert fast.names == observed
