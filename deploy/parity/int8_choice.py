"""How model.int8.onnx was chosen, for the parity report: `calibrate --method auto`, `--max-drop`
and `--eval-data` record it in the manifest's precision.int8 (calibration/selection.py)."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Mapping

from ..bundle import Bundle

_KEYS = ("requested_method", "method", "percentile", "evaluation", "auto", "budget")


@dataclass(frozen=True)
class Int8Choice:
    """The manifest's record: the method asked for and used, the evaluation set with the written
    model's score on it (`evaluation["int8"]`), auto's choice, the budget search's summary."""

    requested_method: str | None
    method: str | None
    percentile: float | None
    evaluation: Mapping[str, Any]
    auto: Mapping[str, Any] | None = None
    budget: Mapping[str, Any] | None = None

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> "Int8Choice | None":
        """None when INT8 was calibrated without evaluation images (or not at all)."""
        info = bundle.int8
        if info is None or info.evaluation is None:
            return None
        return cls(**{k: getattr(info, k) for k in _KEYS})

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _KEYS}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any, spec: str) -> str:
    return "—" if not isinstance(x, (int, float)) else format(x, spec)


def int8_choice_html(choice: Int8Choice | None) -> str:
    """The report's section; empty without a recorded choice."""
    if choice is None:
        return ""
    ev = choice.evaluation
    where = f'{ev.get("count")} images {"held out of" if ev.get("held_out") else "of"} {ev.get("source")}'
    method = f'{choice.method}{"" if choice.percentile is None else f" {choice.percentile:g}"}'
    final = ev.get("int8") or {}
    what = "top-1" if final.get("metric") == "accuracy" else "top-1 agreement"
    parts = [f"<p>Calibrated with <b>{_e(method)}</b> (asked: {_e(choice.requested_method)}), judged against FP32 "
             f"with ONNX Runtime on {_e(where)}: INT8 {what} {_fmt(final.get('int8'), '.2%')}, drop "
             f"{_fmt(final.get('drop_points'), '.2f')} points, fidelity (relative RMSE of the logits) "
             f"{_fmt(final.get('fidelity'), '.4f')}.</p>"]
    budget = choice.budget
    if budget:
        what = "top-1" if budget.get("metric") == "accuracy" else "top-1 agreement"
        kept = budget.get("kept_nodes") or []
        verdict = "met" if budget.get("met") else "<b>not met</b> (the best set found is written)"
        parts.append(f'<p>Budget: at most {_fmt(budget.get("max_drop_points"), "g")} points of {what} below FP32: '
                     f'{verdict}, after {_e(budget.get("trials"))} trial(s).</p>'
                     f"<p>Kept in high precision ({len(kept)} node(s)): "
                     + (", ".join(f"<code>{_e(n)}</code>" for n in kept) or "none") + "</p>")
    return '<h2>INT8 calibration choice</h2><div id="int8-selection">' + "".join(parts) + "</div>"
