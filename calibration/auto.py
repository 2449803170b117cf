"""`calibrate --method auto`: try several range methods on the same statistics, keep the best.

One statistics pass feeds every candidate (the histograms are shared; only amax is chosen
again per method). Each candidate's Q/DQ model is scored on the evaluation set
(`calibration.fidelity`): the highest accuracy (or agreement with FP32) wins, and among
equal scores the lowest fidelity (relative RMSE of the logits). On a full tie the earlier
candidate wins, in the order below (TensorRT's own method first).

Combined with --max-drop, auto picks the method first and the budget search runs on it: the
candidates' scores with nothing kept in float already show which ranges clip least, and
searching every candidate would multiply the evaluations by their number.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from deploy.errors import CalibrationError
from deploy.int8 import AUTO_METHOD as AUTO

from .histograms import HistogramCollector
from .ranges import CalibrationConfig, compute_amax
from .fidelity import Evaluation

log = logging.getLogger("trtdeploy.calibration")

# (method, percentile) tried by --method auto, in tie-break order.
CANDIDATES: tuple[tuple[str, float | None], ...] = (
    ("entropy", None), ("percentile", 99.9), ("percentile", 99.99), ("percentile", 99.999), ("mse", None))


@dataclass(frozen=True)
class MethodTrial:
    method: str
    percentile: float | None
    evaluation: Evaluation

    @property
    def label(self) -> str:
        return self.method if self.percentile is None else f"{self.method} {self.percentile:g}"

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "percentile": self.percentile, **self.evaluation.to_json()}


@dataclass(frozen=True)
class AutoResult:
    chosen: MethodTrial
    trials: tuple[MethodTrial, ...]

    def to_json(self) -> dict[str, Any]:
        return {"chosen": {"method": self.chosen.method, "percentile": self.chosen.percentile},
                "candidates": [t.to_json() for t in self.trials]}

    def lines(self) -> list[str]:
        what = "top-1" if self.chosen.evaluation.metric == "accuracy" else "agreement"
        w = max(len("method"), *(len(t.label) for t in self.trials))
        out = [f"  {'method':<{w}}  {'INT8 ' + what:>14}  {'drop':>7}  {'fidelity':>8}"]
        for t in self.trials:
            e = t.evaluation
            mark = "  <- chosen" if t is self.chosen else ""
            out.append(f"  {t.label:<{w}}  {e.score:>14.2%}  {e.drop_points:>7.2f}  {e.fidelity:>8.4f}{mark}")
        return out


def choose_method(collector: HistogramCollector, num_bins: int,
                  evaluate: Callable[[Mapping[str, float]], Evaluation]) -> tuple[AutoResult, dict[str, float]]:
    """Score every candidate's ranges with `evaluate(amax)`; the best result and its ranges."""
    trials: list[MethodTrial] = []
    ranges: list[dict[str, float]] = []
    for method, percentile in CANDIDATES:
        config = CalibrationConfig(method=method, percentile=percentile or 99.99, num_bins=num_bins)
        amax = compute_amax(collector, config)
        trial = MethodTrial(method, percentile, evaluate(amax))
        log.info("auto: %s: %s", trial.label, trial.evaluation.describe())
        trials.append(trial)
        ranges.append(amax)
    best = min(range(len(trials)), key=lambda i: trials[i].evaluation.rank_key())
    return AutoResult(trials[best], tuple(trials)), ranges[best]


def chosen_config(choice: AutoResult | Mapping[str, Any] | None, base: CalibrationConfig,
                  source: Any) -> CalibrationConfig:
    """The configuration auto chose (`choice`: a fresh result, or its record in `source`,
    the scales.json being reused)."""
    record = choice.to_json() if isinstance(choice, AutoResult) else choice
    if not record or "chosen" not in record:
        raise CalibrationError(f"{source}: no method choice recorded for --method auto; pass --recalibrate")
    chosen = record["chosen"]
    return CalibrationConfig(chosen["method"], chosen["percentile"] or base.percentile, base.num_bins)
