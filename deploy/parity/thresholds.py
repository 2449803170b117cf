"""Pass limits per precision and per output, and the override grammar of `--threshold`.

An override is `[SCOPE:][OUTPUT:]KEY=VALUE` on the command line, or a JSON file of them;
SCOPE is a backend, a precision or `*`. More specific overrides win whatever their order.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..bundle import PRECISIONS
from ..errors import UsageError
from ..runners import BACKENDS, backend_precision
from .metrics import SOFTMAX_JUDGED, OutputMetrics

UPPER_KEYS = ("max_abs", "max_abs_scaled", "mean_abs", "max_rel", "accuracy_drop")
LOWER_KEYS = ("cosine_min", "cosine_mean", "top1_agreement", "top5_agreement")


def _fmt(x: float) -> str:
    return f"{x:.6g}"


@dataclass(frozen=True)
class Thresholds:
    """Pass limits for one output of one backend; None means "not checked".

    Upper bounds: `max_abs`, `max_abs_scaled`, `mean_abs`, `max_rel`, and `accuracy_drop`
    (percentage points of top-1 accuracy below the FP32 reference; judged on the main output,
    only where labels exist). Lower bounds: `cosine_min`, `cosine_mean`, `top1_agreement`,
    `top5_agreement` (2-D class outputs only). Non-finite values always fail.

    Defaults (`Thresholds.for_precision`):

    - fp32: `max_abs_scaled <= 1e-4` and `top1_agreement >= 1.0`. FP32 backends differ only by
      summation order, ~1e-6 of the logit scale; 1e-4 leaves room for deep nets while a wrong
      layout, a missing BatchNorm or a bad weight is orders of magnitude above it. A softmax
      output judged by its logits (metrics.SOFTMAX_OF) is held to it beyond what the logit error
      allows (`OutputMetrics.judged`). A TensorRT
      "fp32" engine built with TF32 allowed (`trtdeploy build --tf32`; TensorRT's own default
      on Ampere and newer, which our build clears) lands near 1e-3 and fails here by design.
    - fp16: `top1_agreement >= 0.995`, `accuracy_drop <= 0.2` points, `cosine_min >= 0.99`. The
      cosine floor catches overflow or a broken layer on single images (healthy FP16 ResNets
      stay above 0.9999); element tolerances are not used because FP16 error scales with depth.
    - int8: `top1_agreement >= 0.98`, `accuracy_drop <= 1.0` point, `cosine_mean >= 0.97`. A
      mean, not a minimum: calibrated INT8 legitimately has a few outlier images, while a bad
      scale on one layer drags most images far below 0.97.
    """

    max_abs: float | None = None
    max_abs_scaled: float | None = None
    mean_abs: float | None = None
    max_rel: float | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    accuracy_drop: float | None = None

    @classmethod
    def for_precision(cls, precision: str) -> "Thresholds":
        try:
            return DEFAULT_THRESHOLDS[precision]
        except KeyError:
            raise UsageError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}") from None

    def to_json(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def check(self, metrics: OutputMetrics, accuracy_delta: float | None = None) -> list[str]:
        """Human-readable failures of one output's metrics (`accuracy_delta`: the top-1 change
        in points against the reference, for the main output where labels exist)."""
        failures = []
        if metrics.nonfinite:
            failures.append(f"{metrics.nonfinite} non-finite values (NaN/inf)")
        for key in UPPER_KEYS:
            limit = getattr(self, key)
            if key == "accuracy_drop":
                value = None if accuracy_delta is None else -accuracy_delta
            else:
                value = metrics.judged(key)
            if limit is not None and value is not None and value > limit:
                by_logits = metrics.softmax_excess is not None and key in SOFTMAX_JUDGED
                what = f"{key} beyond what the logit error allows" if by_logits else key
                failures.append(f"{what} {_fmt(value)} > {_fmt(limit)}")
        for key in LOWER_KEYS:
            limit = getattr(self, key)
            value = getattr(metrics, key)
            if limit is not None and value is not None and value < limit:
                failures.append(f"{key} {_fmt(value)} < {_fmt(limit)}")
        return failures


DEFAULT_THRESHOLDS = {
    "fp32": Thresholds(max_abs_scaled=1e-4, top1_agreement=1.0),
    "fp16": Thresholds(top1_agreement=0.995, accuracy_drop=0.2, cosine_min=0.99),
    "int8": Thresholds(top1_agreement=0.98, accuracy_drop=1.0, cosine_mean=0.97),
}
THRESHOLD_KEYS = tuple(f.name for f in fields(Thresholds))


@dataclass(frozen=True)
class ThresholdOverride:
    """One `[SCOPE:][OUTPUT:]KEY=VALUE`: SCOPE is a backend, a precision or `*` (None: all)."""

    scope: str | None
    output: str | None
    key: str
    value: float | None

    def applies(self, backend: str, output: str) -> bool:
        return (self.scope in (None, backend, backend_precision(backend))
                and self.output in (None, output))

    @property
    def specificity(self) -> tuple[int, int]:
        # Later (more specific) overrides win: all < precision < backend; all outputs < one output.
        scope_rank = 0 if self.scope is None else (1 if self.scope in PRECISIONS else 2)
        return scope_rank, 0 if self.output is None else 1


# What each key can mean: agreements are fractions, cosines lie in [-1, 1], errors are not
# negative, an accuracy drop is in points of a percentage.
_VALID = {**{k: (0.0, math.inf) for k in ("max_abs", "max_abs_scaled", "mean_abs", "max_rel")},
          "cosine_min": (-1.0, 1.0), "cosine_mean": (-1.0, 1.0), "top1_agreement": (0.0, 1.0),
          "top5_agreement": (0.0, 1.0), "accuracy_drop": (0.0, 100.0)}
# Words that name a backend or a precision, known or not (an output is named otherwise).
_BACKEND_LIKE = re.compile(r"(tf|ort|trt|onnxruntime|tensorrt)(-\w+)?|(fp|int|bf|tf)\d+", re.IGNORECASE)


def _parse_scope(parts: list[str], text: str) -> tuple[str | None, str | None]:
    scopes = set(BACKENDS) | set(PRECISIONS) | {"*"}
    if len(parts) == 1:
        scope, output = None, None
    elif len(parts) == 2:
        scope, output = (parts[0], None) if parts[0] in scopes else (None, parts[0])
        if output is not None and _BACKEND_LIKE.fullmatch(output):  # trt-fp64:..., int4:... name no output
            raise UsageError(f"threshold {text!r}: unknown backend or precision {output!r}; "
                             f"use one of {', '.join(BACKENDS + PRECISIONS)} or *")
    else:
        scope, output = parts[0], ":".join(parts[1:-1])
        if scope not in scopes:
            raise UsageError(
                f"threshold {text!r}: unknown backend or precision {scope!r}; "
                f"use one of {', '.join(BACKENDS + PRECISIONS)} or *"
            )
    if scope == "*":
        scope = None
    if output in ("", "*"):
        output = None
    return scope, output


def _threshold_value(key: str, raw: Any, text: str) -> float | None:
    if key not in THRESHOLD_KEYS:
        raise UsageError(f"threshold {text!r}: unknown key {key!r}; known keys: {', '.join(THRESHOLD_KEYS)}")
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "off")):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise UsageError(f"threshold {text!r}: value {raw!r} is not a number (or `none` to disable)") from None
    if not math.isfinite(value):
        raise UsageError(f"threshold {text!r}: value must be finite")
    low, high = _VALID[key]
    if not low <= value <= high:
        raise UsageError(f"threshold {text!r}: {key} must be between {_fmt(low)} and {_fmt(high)}, got {_fmt(value)}")
    return value


def parse_threshold_override(text: str) -> ThresholdOverride:
    """Parse `[BACKEND|PRECISION|*:][OUTPUT:]KEY=VALUE`, e.g. `ort-int8:logits:top1_agreement=0.97`,
    `fp16:accuracy_drop=0.5`, `max_abs_scaled=none` (disable)."""
    lhs, sep, rhs = text.partition("=")
    if not sep or not lhs.strip():
        raise UsageError(f"threshold {text!r}: expected [BACKEND:][OUTPUT:]KEY=VALUE or a .json file")
    parts = [p.strip() for p in lhs.split(":")]
    scope, output = _parse_scope(parts, text)
    key = parts[-1]
    return ThresholdOverride(scope, output, key, _threshold_value(key, rhs.strip(), text))


def load_threshold_file(path: str | Path) -> list[ThresholdOverride]:
    """A JSON object `{"[SCOPE][:OUTPUT]": {"KEY": VALUE, ...}, ...}`, same scopes as the CLI,
    e.g. `{"int8": {"accuracy_drop": 1.5}, "ort-int8:logits": {"top1_agreement": 0.97}}`."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{p}: unreadable threshold file ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f'{p}: expected {{"SCOPE[:OUTPUT]": {{"KEY": VALUE}}}}, '
                         'e.g. {"int8": {"accuracy_drop": 1.5}}')
    out = []
    for where, items in data.items():
        parts = [s.strip() for s in where.split(":")] if where else ["*"]
        scope, output = _parse_scope(parts + ["_"], f"{p}: {where}")
        for key, raw in items.items():
            out.append(ThresholdOverride(scope, output, key, _threshold_value(key, raw, f"{p}: {where}.{key}")))
    return out


def parse_threshold_args(items: Iterable[str]) -> list[ThresholdOverride]:
    """CLI `--threshold` values: each is an override, or the path of a JSON file of them."""
    out: list[ThresholdOverride] = []
    for item in items:
        if "=" not in item and (item.endswith(".json") or Path(item).is_file()):
            out.extend(load_threshold_file(item))
        else:
            out.append(parse_threshold_override(item))
    return out


def resolve_thresholds(backend: str, output: str, overrides: Sequence[ThresholdOverride] = ()) -> Thresholds:
    """Defaults for the backend's precision, then matching overrides, most specific last."""
    t = Thresholds.for_precision(backend_precision(backend))
    for o in sorted((o for o in overrides if o.applies(backend, output)), key=lambda o: o.specificity):
        t = replace(t, **{o.key: o.value})
    return t
