"""INT8 within an accuracy budget: keep the most sensitive layers in high precision, fewest first.

`calibrate --max-drop POINTS` asks for an INT8 model that scores at most POINTS below FP32 on
an evaluation set (see `calibration.fidelity`). The ranges are computed once; each trial only
places Q/DQ again (`plan_qdq` with more nodes excluded, `insert_qdq`) and runs ONNX Runtime on
the evaluation set:

1. The INT8 model with nothing kept in high precision. Within budget: done, nothing kept.
2. Otherwise the layers are ranked by the per-layer analysis the parity report uses
   (`deploy.parity.per_layer`: the slim end_points of FP32 and INT8 compared on evaluation images,
   `rank_layers`: largest error growth first), each mapped to its ONNX nodes
   (`layer_nodes`).
3. Trial k keeps the first k ranked layers' nodes in float (none of their inputs or weights
   quantized). The first k within budget gives the smallest such prefix of the ranking.
   If even every ranked layer kept does not meet the budget, the search stops there (at
   most one trial per layer) and reports the best trial it saw (highest score, then lowest
   fidelity, then fewest nodes).
4. The prefix found is pruned: each of its layers but the last, lowest-ranked first, is
   given back to INT8 if the budget still holds without it (at most k - 1 more trials).
   A layer ranks high for the error it adds to the tensors, which is not always the error
   that costs accuracy; pruning keeps only layers the budget needs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from deploy.errors import CalibrationError

from .fidelity import Evaluation

log = logging.getLogger("trtdeploy.calibration")

# Drops are differences of fractions times 100: 1.0000000000000009 must meet a 1.0 budget.
_DROP_TOLERANCE = 1e-9
# Evaluation images the per-layer ranking compares (every end_point of each is held in memory).
RANKING_IMAGES = 16


@dataclass(frozen=True)
class Layer:
    """A ranked layer and the ONNX nodes that keep it in high precision."""

    name: str
    nodes: tuple[str, ...]
    growth: float  # rel_error growth from the per-layer analysis

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "nodes": list(self.nodes), "growth": self.growth}


@dataclass(frozen=True)
class Trial:
    """The INT8 model with `nodes` (the first `layers` of the ranking) kept in high precision."""

    layers: tuple[str, ...]
    nodes: tuple[str, ...]
    evaluation: Evaluation
    note: str = ""  # how the set was made: "" for a prefix of the ranking, "without LAYER" when pruning

    def to_json(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "nodes": list(self.nodes), "note": self.note,
                **self.evaluation.to_json()}


@dataclass(frozen=True)
class BudgetResult:
    """What the search tried and chose."""

    max_drop: float
    met: bool
    chosen: Trial  # the smallest set within budget, or (not met) the best trial
    trials: tuple[Trial, ...]
    ranking: tuple[Layer, ...] = field(default=())
    unmapped: tuple[str, ...] = field(default=())  # ranked layers without ONNX nodes to keep

    def to_json(self) -> dict[str, Any]:
        return {"max_drop_points": self.max_drop, "met": self.met,
                "metric": self.chosen.evaluation.metric,
                "kept_nodes": list(self.chosen.nodes), "kept_layers": list(self.chosen.layers),
                "chosen": self.chosen.to_json(), "trials": [t.to_json() for t in self.trials],
                "ranking": [layer.to_json() for layer in self.ranking], "unmapped": list(self.unmapped)}

    def lines(self) -> list[str]:
        """The trade-off, one line per trial, and the verdict: for people."""
        ev = self.chosen.evaluation
        what = "top-1" if ev.metric == "accuracy" else "agreement"
        out = [f"  {'nodes kept':>10}  {'layers':>6}  {'INT8 ' + what:>14}  {'drop':>7}  {'fidelity':>8}"]
        for t in self.trials:
            e = t.evaluation
            out.append(f"  {len(t.nodes):>10}  {len(t.layers):>6}  {e.score:>14.2%}  {e.drop_points:>7.2f}  "
                       f"{e.fidelity:>8.4f}  {t.note}".rstrip())
        if self.met:
            kept = ", ".join(self.chosen.nodes) or "none"
            out.append(f"  within {self.max_drop:g} points with {len(self.chosen.nodes)} node(s) kept in high "
                       f"precision: {kept}")
        else:
            out.append(f"  no set of ranked layers meets {self.max_drop:g} points (tried {len(self.trials)}); "
                       f"best: {len(self.chosen.nodes)} node(s) kept, {ev.describe()}; written as that")
        return out


def _within(evaluation: Evaluation, max_drop: float) -> bool:
    return evaluation.drop_points <= max_drop + _DROP_TOLERANCE


def search(evaluate: Callable[[tuple[str, ...]], Evaluation], max_drop: float,
           ranking: Callable[[], Sequence[Layer]]) -> BudgetResult:
    """Keep prefixes of `ranking()` in high precision until `evaluate(nodes)` is within `max_drop`.

    `ranking` is called only when the model with nothing kept misses the budget. At most
    len(ranking) + 1 evaluations; a budget no prefix meets ends with the best trial.
    """
    if not max_drop >= 0:
        raise CalibrationError(f"--max-drop must be >= 0 points, got {max_drop}")
    first = Trial((), (), evaluate(()))
    log.info("budget: nothing kept: %s", first.evaluation.describe())
    if _within(first.evaluation, max_drop):
        return BudgetResult(max_drop, True, first, (first,))
    layers = tuple(ranking())
    trials = [first]

    def trial(kept: Sequence[Layer], note: str = "") -> Trial:
        nodes = tuple(dict.fromkeys(n for layer in kept for n in layer.nodes))
        t = Trial(tuple(layer.name for layer in kept), nodes, evaluate(nodes), note)
        trials.append(t)
        log.info("budget: %d layer(s), %d node(s) kept: %s", len(kept), len(nodes), t.evaluation.describe())
        return t

    for k in range(1, len(layers) + 1):
        found = trial(layers[:k])
        if _within(found.evaluation, max_drop):
            return BudgetResult(max_drop, True, _prune(layers[:k], found, trial, max_drop), tuple(trials), layers)
    best = min(trials, key=lambda t: (*t.evaluation.rank_key(), len(t.nodes)))
    return BudgetResult(max_drop, False, best, tuple(trials), layers)


def _prune(kept: Sequence[Layer], found: Trial, trial: Callable[..., Trial],
           max_drop: float) -> Trial:
    """Drop layers of a prefix within budget while it stays within budget, lowest-ranked first
    (the last one is skipped: the prefix without it missed). At most len(kept) - 1 trials; every
    remaining layer is then needed on its own."""
    kept = list(kept)
    for layer in reversed(kept[:-1]):
        rest = [k for k in kept if k is not layer]
        candidate = trial(rest, f"without {layer.name}")
        if _within(candidate.evaluation, max_drop):
            kept, found = rest, candidate
    return found


def rank_layers_for_search(bundle, fp32_model, int8_bytes: bytes, feeds: Sequence[Any], onnx_nodes,
                           keep_fp32: Sequence[str] = ()) -> tuple[list[Layer], list[str]]:
    """Layers by the per-layer analysis (largest error growth first) with their ONNX nodes not
    already in `keep_fp32`; and the ranked layers that map to no node."""
    from deploy.parity.per_layer import compare_intermediates, layer_names, layer_nodes, model_intermediates, rank_layers

    names = layer_names(bundle)
    if not names:
        raise CalibrationError(f"{bundle.root}: the manifest has no end_points to rank layers by; re-export the "
                               "bundle with `trtdeploy export`, or keep nodes by hand with --keep-fp32")
    end_points = bundle.end_points
    fp32 = model_intermediates(fp32_model, end_points, feeds, names)
    int8 = model_intermediates(int8_bytes, end_points, feeds, names)
    ranked = rank_layers(compare_intermediates(fp32, int8, names))
    skip = set(keep_fp32)
    layers, unmapped = [], []
    for row in ranked:
        nodes = tuple(n for n in layer_nodes(row.name, onnx_nodes) if n not in skip)
        if nodes:
            layers.append(Layer(row.name, nodes, float(row.growth)))
        else:
            unmapped.append(row.name)
    return layers, unmapped


def ranking_feeds(evalset, images: int = RANKING_IMAGES) -> list[dict[str, Any]]:
    """The first `images` inputs of the evaluation set, as feeds."""
    out, have = [], 0
    for feed in evalset.feeds():
        take = {k: v[:images - have] for k, v in feed.items()}
        out.append(take)
        have += len(next(iter(take.values())))
        if have >= images:
            break
    return out


def keep_within_budget(bundle, model, amax, evalset, max_drop: float, keep_fp32: Sequence[str] = ()) -> BudgetResult:
    """`search` on `model` with ranges `amax`: each trial places Q/DQ with the user's `keep_fp32`
    plus the kept nodes and is scored on `evalset`."""
    from .qdq import insert_qdq, plan_qdq

    nothing_kept: list[bytes] = []  # built once: the first trial and the ranking both run it

    def build(nodes: tuple[str, ...]) -> bytes:
        if not nodes and nothing_kept:
            return nothing_kept[0]
        built = insert_qdq(model, plan_qdq(model, keep_fp32=[*keep_fp32, *nodes]), amax).SerializeToString()
        if not nodes:
            nothing_kept.append(built)
        return built

    unmapped: list[str] = []

    def ranking() -> list[Layer]:
        onnx_nodes = [(n.name, n.op_type) for n in model.graph.node]
        layers, missing = rank_layers_for_search(bundle, model, build(()), ranking_feeds(evalset),
                                                 onnx_nodes, keep_fp32)
        unmapped.extend(missing)
        log.info("budget: %d layers ranked (%s first)", len(layers), layers[0].name if layers else "none")
        return layers

    result = search(lambda nodes: evalset.evaluate(build(nodes)), max_drop, ranking)
    return BudgetResult(result.max_drop, result.met, result.chosen, result.trials, result.ranking, tuple(unmapped))
