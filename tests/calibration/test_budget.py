"""The accuracy-budget search, method choice and fidelity, with fake evaluations (no model)."""
from __future__ import annotations

import numpy as np
import pytest

from calibration.auto import CANDIDATES, choose_method
from calibration.budget import Layer, search
from calibration.histograms import HistogramCollector
from calibration.fidelity import ACCURACY, Evaluation, relative_rmse
from deploy.errors import CalibrationError

RANKING = (Layer("unit_3", ("u3/conv1", "u3/add"), 0.30),
           Layer("logits", ("logits/BiasAdd",), 0.20),
           Layer("unit_1", ("u1/conv1", "u1/conv2"), 0.10),
           Layer("conv1", ("conv1/Conv2D",), 0.05))


def ev(score: float, fidelity: float = 0.1, fp32: float = 1.0) -> Evaluation:
    return Evaluation(metric=ACCURACY, score=score, fp32_score=fp32, agreement=score, fidelity=fidelity,
                      num_images=100)


class FakeModel:
    """Scores a set of nodes kept in float: FP32's 100% minus the points each quantized layer costs."""

    def __init__(self, cost: dict[str, float], fidelity_per_layer: float = 0.01):
        self.cost = cost
        self.fidelity_per_layer = fidelity_per_layer
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, nodes: tuple[str, ...]) -> Evaluation:
        self.calls.append(nodes)
        quantized = [layer for layer in RANKING if not set(layer.nodes) <= set(nodes)]
        lost = sum(self.cost.get(layer.name, 0.0) for layer in quantized)
        return ev(1.0 - lost / 100.0, fidelity=self.fidelity_per_layer * len(quantized))


def test_a_budget_met_at_once_keeps_nothing_and_ranks_nothing():
    model = FakeModel({"unit_3": 0.2})

    def ranking():
        raise AssertionError("no ranking is needed when INT8 already meets the budget")

    result = search(model, 0.5, ranking)
    assert result.met and result.chosen.nodes == () and model.calls == [()]
    assert len(result.trials) == 1 and "0 node(s) kept" in result.lines()[-1]


def test_the_order_follows_the_ranking_and_stops_at_the_first_prefix_within_budget():
    model = FakeModel({"unit_3": 3.0, "logits": 2.0, "unit_1": 0.8, "conv1": 0.1})
    result = search(model, 1.0, lambda: RANKING)
    assert model.calls[:3] == [(), ("u3/conv1", "u3/add"), ("u3/conv1", "u3/add", "logits/BiasAdd")]
    assert result.met and result.chosen.layers == ("unit_3", "logits")
    assert result.chosen.evaluation.drop_points == pytest.approx(0.9)
    # Pruning gives back no layer here: without unit_3 the drop is 3.9 points (the last layer
    # of the prefix, logits, is not tried: the prefix without it missed).
    assert model.calls[3:] == [("logits/BiasAdd",)] and len(result.trials) == 4


def test_pruning_gives_back_layers_the_budget_does_not_need():
    """unit_3 ranks first by tensor error but costs no accuracy: once logits is kept, it goes back to INT8."""
    model = FakeModel({"unit_3": 0.0, "logits": 5.0})
    result = search(model, 1.0, lambda: RANKING)
    assert result.met and result.chosen.nodes == ("logits/BiasAdd",) and result.chosen.layers == ("logits",)
    assert result.trials[-1].note == "without unit_3"


def test_an_impossible_budget_is_reported_after_one_trial_per_layer():
    model = FakeModel({"unit_3": 1.0, "logits": 1.0, "unit_1": 1.0, "conv1": 1.0})

    def stubborn(nodes):  # 2 points lost whatever is kept (e.g. a layer outside the ranking)
        return ev(model(nodes).score - 0.02, fidelity=0.5 - 0.01 * len(nodes))

    result = search(stubborn, 0.5, lambda: RANKING)
    assert not result.met
    assert len(model.calls) == len(RANKING) + 1  # (), then each prefix once: no loop
    assert result.chosen.layers == ("unit_3", "logits", "unit_1", "conv1")  # best score
    assert "no set of ranked layers meets 0.5 points" in result.lines()[-1]


def test_ties_in_score_are_broken_by_fidelity_then_fewer_nodes():
    scores = {(): ev(0.97, 0.30), ("u3/conv1", "u3/add"): ev(0.98, 0.20)}

    def evaluate(nodes):
        return scores.get(nodes, ev(0.98, 0.10 if len(nodes) == 3 else 0.25))

    result = search(evaluate, 0.5, lambda: RANKING[:3])
    assert not result.met and result.chosen.layers == ("unit_3", "logits")  # 98%, fidelity 0.10


def test_negative_budget_is_refused():
    with pytest.raises(CalibrationError, match="--max-drop"):
        search(lambda nodes: ev(1.0), -1.0, lambda: RANKING)


def test_relative_rmse_is_pooled_over_every_logit():
    ref = np.array([[3.0, -4.0], [0.0, 0.0]])
    cand = ref + np.array([[0.5, 0.0], [0.0, -0.5]])
    # sqrt(mean(d^2)) / sqrt(mean(ref^2)) = sqrt(0.5/4) / sqrt(25/4) = sqrt(0.02); a mean of
    # per-row ratios would divide by the zero row.
    assert relative_rmse(cand, ref) == pytest.approx(np.sqrt(0.02))
    assert relative_rmse(ref, ref) == 0.0
    assert relative_rmse(np.ones(3), np.zeros(3)) == pytest.approx(1.0)  # all-zero reference: plain RMSE


def test_drop_is_in_points_and_rank_prefers_score_then_fidelity():
    assert ev(0.99).drop_points == pytest.approx(1.0)
    ranked = sorted([ev(0.98, 0.01), ev(0.99, 0.5), ev(0.99, 0.2)], key=Evaluation.rank_key)
    assert [(e.score, e.fidelity) for e in ranked] == [(0.99, 0.2), (0.99, 0.5), (0.98, 0.01)]


def _collector() -> HistogramCollector:
    rng = np.random.default_rng(3)
    c = HistogramCollector()
    c.update("a", rng.standard_normal(20_000) * np.where(rng.random(20_000) < 0.001, 30.0, 1.0))
    c.update("b", np.maximum(rng.standard_normal(20_000), 0.0))
    return c


def test_auto_keeps_the_best_score_and_breaks_ties_by_fidelity():
    seen = []

    def evaluate(amax):
        seen.append(amax)
        # Scores tie for all but the first candidate; fidelity favours the smallest range on "a".
        return ev(0.95 if len(seen) == 1 else 0.99, fidelity=amax["a"])

    result, amax = choose_method(_collector(), 2048, evaluate)
    assert [(t.method, t.percentile) for t in result.trials] == list(CANDIDATES)
    best = min(range(1, len(seen)), key=lambda i: seen[i]["a"])
    assert result.chosen is result.trials[best] and amax == seen[best]
    lines = result.lines()
    assert "<- chosen" in lines[best + 1]
    # One column per number, whatever the longest label ("percentile 99.999")
    assert len({line.index("%") for line in lines[1:]}) == 1 and lines[0].index("top-1") < lines[1].index("%")


def test_auto_full_tie_keeps_the_first_candidate():
    result, _ = choose_method(_collector(), 2048, lambda amax: ev(1.0, 0.05))
    assert (result.chosen.method, result.chosen.percentile) == CANDIDATES[0]
