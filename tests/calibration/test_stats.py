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
from tests.calibration.numpy_collector import HistogramCollector as NumpyCollector  # noqa: E402
from tests.calibration.test_histograms import (  # noqa: E402
    StraightforwardCollector,
    _assert_same_statistics,
    assert_same_as_numpy,
)


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


@pytest.mark.parametrize("budget", [calibration.stats.RUN_BYTES, 1])
def test_statistics_pass_matches_a_plain_loop_bit_for_bit(fp32, feeds, budget, monkeypatch):
    """Relu outputs binned from their inputs, outputs written into arrays allocated once (the
    smaller last batch into their leading rows), two threads binning, and (a budget of 1 byte)
    every batch run one row at a time, the first one twice for its maxima: the same counts as every activation of whole batches fetched and
    binned one after the other, and as the numpy collector this pass replaced."""
    monkeypatch.setattr(calibration.stats, "RUN_BYTES", budget)
    observed = observed_tensors(fp32)
    calls = []
    real = calibration.stats._Runs.run
    monkeypatch.setattr(calibration.stats._Runs, "run",
                        lambda self, feed, lo, hi: calls.append(hi - lo) or real(self, feed, lo, hi))
    fast = collect_statistics(fp32, observed, feeds, threads=2)
    if budget == 1:  # 16 rows, and the first batch's again (its maxima first, then its first row again)
        assert calls == [1] * (16 + 6)
    else:
        assert calls == [6, 6, 4]

    session = make_session(with_outputs(fp32, observed[1:]))
    ref, old = StraightforwardCollector(), NumpyCollector()
    plan = fetch_plan(fp32, observed)
    tops = {}
    for feed in feeds:
        values = dict(zip(observed, [feed["input"], *session.run(observed[1:], feed)]))
        for name, value in values.items():
            ref.update(name, value)
        for name in [*plan.fetched, *plan.fed]:
            old.update(name, values[name], plan.relu_outputs.get(name, ()))
        tops = tops or {n: st["top"] for n, st in ref.stats.items()}
    assert sum(ref.stats[n]["top"] > tops[n] for n in observed) > len(observed) // 2  # ranges grew
    for name in observed:
        _assert_same_statistics(fast, ref, name)
        assert_same_as_numpy(fast, old, name)
    assert fast.names == observed


@pytest.mark.slow
def test_resnet_v2_50_histograms_and_ranges_equal_the_numpy_collectors(tmp_path):
    """resnet_v2_50 at 224 (random weights), 8 images through the bundle's preprocessing in
    batches of 4: the statistics pass (batches in parts of 2 rows, the compiled pass, two
    threads) gives the counts of the numpy collector
    it replaced, fed every whole batch, for all 145 tensors; so every method's ranges are the same."""
    from calibration.qdq import plan_qdq, qdq_activations
    from calibration.ranges import CalibrationConfig, compute_amax
    from deploy.bench.calibration import _images
    from deploy.data.inputs import InputSet
    from deploy.data.preprocess import Preprocess
    from deploy.export import ExportConfig, export

    bundle = export(ExportConfig(model="resnet_v2_50", image_size=(224, 224)), tmp_path / "bundle", force=True)
    model = onnx.load(str(bundle.onnx_path("fp32")))
    observed = list(dict.fromkeys([*observed_tensors(model), *qdq_activations(plan_qdq(model))]))
    data = InputSet.from_path(_images(tmp_path / "images", 8, 256), input=bundle.inputs[0],
                              preprocess=Preprocess.from_json(bundle.preprocessing))
    feeds = list(data.batches(4, desc=None))
    calls = []
    real = calibration.stats._Runs.run
    calibration.stats._Runs.run = lambda self, feed, lo, hi: calls.append(hi - lo) or real(self, feed, lo, hi)
    budget, calibration.stats.RUN_BYTES = calibration.stats.RUN_BYTES, 160 << 20  # 72 MB a row: parts of 2 rows
    try:
        fast = collect_statistics(model, observed, feeds)
    finally:
        calibration.stats._Runs.run, calibration.stats.RUN_BYTES = real, budget
    assert calls == [2] * (4 + 2)  # and the first batch's parts once more, for its maxima

    plan = fetch_plan(model, observed)
    session = make_session(with_outputs(model, plan.fetched))
    old = NumpyCollector()
    for feed in feeds:
        values = {**dict(zip(plan.fetched, session.run(list(plan.fetched), feed))), "input": feed["input"]}
        for name in [*plan.fetched, *plan.fed]:
            old.update(name, values[name], plan.relu_outputs.get(name, ()))
        del values
    assert len(observed) == 145
    for name in observed:
        assert_same_as_numpy(fast, old, name)
    for method in ("entropy", "percentile", "mse", "max"):
        assert compute_amax(fast, CalibrationConfig(method)) == compute_amax(old, CalibrationConfig(method)), method
