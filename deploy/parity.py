"""Accuracy parity: every backend's outputs against the FP32 reference, judged per precision.

The reference is TensorFlow run on the same inputs when it can run here; otherwise the TF
outputs stored in `reference.npz` at export time (so a device with neither TensorFlow nor
ONNX Runtime can still check its engines), or, for an image folder without TensorFlow, the
first FP32 backend that runs (`ort-fp32`, then `trt-fp32`).

All backends see the same batches, one batch at a time (split for an engine whose profile
takes fewer), and every statistic is streamed: memory does not grow with the number of
images (only one float per image for cosines).

Definitions (per output; arrays are batch-first and flattened per sample):

- `max_abs`, `mean_abs`: of |reference - candidate| over all elements.
- `max_abs_scaled`: `max_abs / ref_max_abs`, where `ref_max_abs` is the largest |reference|
  value seen; a scale-free error that one FP32 tolerance can judge for logits of any size.
- `max_rel`: max over elements of |a - b| / max(|a|, eps), with eps = 1e-3 x the largest
  |reference| value of that sample (and at least 1e-12). Without the floor a logit that
  happens to be 1e-7 turns a harmless 1e-6 difference into a relative error of 10.
- `cosine_min`, `cosine_mean`: cosine similarity per sample (two all-zero samples: 1.0).
- `top1_agreement`: fraction of samples whose candidate argmax equals the reference argmax.
- `top5_agreement`: fraction of samples whose *reference* top-1 index is among the
  candidate's five largest values (min(5, C) for C < 5 classes). Both are for 2-D
  `[N, classes]` outputs only (null otherwise).
- `nonfinite`: count of NaN/inf candidate values; any is a failure. Statistics above are
  taken over finite values, and a sample with any non-finite value never agrees.

Accuracy (percent) is judged on the main output (the first `[N, num_classes]` output) with
labels: dataset label L is logit index L + `label_offset` (1001-class slim models keep
background at index 0). `delta_top1_vs_fp32` is in percentage points against the reference's
own accuracy on the same images (negative: worse).

Needs only numpy at import; TensorFlow, ONNX Runtime and TensorRT are imported by the
runner factory, and a backend that cannot run here is listed as skipped with the reason.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import json
import logging
import math
import shlex
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .bench import machine_info
from .bundle import Bundle
from .errors import BundleError, DataError, DeployError, UsageError
from .progress import progress
from .runners.base import Runner

log = logging.getLogger(__name__)

BACKENDS = ("tf", "ort-fp32", "ort-fp16", "ort-int8", "trt-fp32", "trt-fp16", "trt-int8")
PRECISIONS = ("fp32", "fp16", "int8")
REFERENCE_NPZ = "reference.npz"

# max_rel denominator floor: a fraction of the sample's largest |reference| value (see module doc).
REL_EPS_FRACTION = 1e-3
REL_EPS_MIN = 1e-12
TOPK = 5
# |diff| histogram: log-spaced, 4 bins per decade from 1e-8 to 1e2; values outside are counted
# as underflow/overflow, exact zeros apart. Fixed edges let the counts stream batch by batch.
HIST_EDGES = tuple(float(10.0 ** (e / 4)) for e in range(-32, 9))


def backend_precision(backend: str) -> str:
    return "fp32" if backend == "tf" else backend.split("-", 1)[1]


def parse_backends(spec: str | Sequence[str] | None) -> list[str]:
    """`"tf,ort-int8"` or a list -> validated names in the given order; None -> all."""
    if spec is None:
        return list(BACKENDS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        if item not in BACKENDS:
            raise UsageError(f"unknown backend {item!r}; choose from {', '.join(BACKENDS)}")
        if item not in names:
            names.append(item)
    if not names:
        raise UsageError(f"no backends given; choose from {', '.join(BACKENDS)}")
    return names


# --- metrics ---------------------------------------------------------------------------


def _finite_or_none(x: float | None) -> float | None:
    # Reports are strict JSON: NaN/inf never leave this module.
    return None if x is None or not math.isfinite(x) else float(x)


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    k = min(k, x.shape[1])
    return np.argpartition(-x, k - 1, axis=1)[:, :k]


class OutputComparison:
    """Streaming comparison of one output: `update(ref, cand)` per batch, then `summary()`."""

    def __init__(self, name: str = "output"):
        self.name = name
        self.samples = 0
        self.elements = 0
        self.sum_abs = 0.0
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.ref_max_abs = 0.0
        self.nonfinite = 0
        self.cosines: list[np.ndarray] = []
        self.classes: bool | None = None
        self.top1 = 0
        self.top5 = 0
        self.hist = np.zeros(len(HIST_EDGES) - 1, dtype=np.int64)
        self.zeros = 0
        self.underflow = 0
        self.overflow = 0

    def update(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        ref = np.asarray(reference)
        cand = np.asarray(candidate)
        if ref.shape != cand.shape:
            raise DataError(
                f"output {self.name!r}: candidate shape {cand.shape} != reference shape {ref.shape}; "
                "the backends were built from different models or batch sizes"
            )
        if ref.ndim == 0 or ref.shape[0] == 0:
            return
        is_2d = ref.ndim == 2
        if self.classes is None:
            self.classes = is_2d
        n = ref.shape[0]
        r = ref.astype(np.float64).reshape(n, -1)
        c = cand.astype(np.float64).reshape(n, -1)
        finite = np.isfinite(c)
        bad_sample = ~finite.all(axis=1)
        self.nonfinite += int((~finite).sum())
        c_safe = np.where(finite, c, 0.0)
        diff = np.abs(r - c_safe)
        diff_f = diff[finite]
        self.samples += n
        self.elements += int(diff_f.size)
        self.sum_abs += float(diff_f.sum())
        if diff_f.size:
            self.max_abs = max(self.max_abs, float(diff_f.max()))
        abs_r = np.abs(r)
        self.ref_max_abs = max(self.ref_max_abs, float(abs_r.max()))
        eps = np.maximum(REL_EPS_FRACTION * abs_r.max(axis=1, keepdims=True), REL_EPS_MIN)
        rel = (diff / np.maximum(abs_r, eps))[finite]
        if rel.size:
            self.max_rel = max(self.max_rel, float(rel.max()))
        self.cosines.append(np.where(bad_sample, np.nan, _cosine_rows(r, c_safe)))
        if is_2d:
            ref_top1 = r.argmax(axis=1)
            agree1 = (c_safe.argmax(axis=1) == ref_top1) & ~bad_sample
            agree5 = (_topk(c_safe, TOPK) == ref_top1[:, None]).any(axis=1) & ~bad_sample
            self.top1 += int(agree1.sum())
            self.top5 += int(agree5.sum())
        self.zeros += int((diff_f == 0).sum())
        nz = diff_f[diff_f > 0]
        self.underflow += int((nz < HIST_EDGES[0]).sum())
        self.overflow += int((nz > HIST_EDGES[-1]).sum())
        self.hist += np.histogram(nz, bins=np.asarray(HIST_EDGES))[0]

    def summary(self) -> dict[str, Any]:
        cos = np.concatenate(self.cosines) if self.cosines else np.zeros(0)
        cos = cos[np.isfinite(cos)]
        agree = self.classes and self.samples
        return {
            "max_abs": _finite_or_none(self.max_abs),
            "mean_abs": _finite_or_none(self.sum_abs / self.elements) if self.elements else None,
            "max_rel": _finite_or_none(self.max_rel),
            "cosine_min": _finite_or_none(float(cos.min())) if cos.size else None,
            "cosine_mean": _finite_or_none(float(cos.mean())) if cos.size else None,
            "top1_agreement": self.top1 / self.samples if agree else None,
            "top5_agreement": self.top5 / self.samples if agree else None,
            "max_abs_scaled": _finite_or_none(self.max_abs / self.ref_max_abs) if self.ref_max_abs > 0 else None,
            "ref_max_abs": _finite_or_none(self.ref_max_abs),
            "nonfinite": self.nonfinite,
            "samples": self.samples,
        }

    def histogram(self) -> dict[str, Any]:
        """|diff| counts for the report (bins are `edges[i] <= x < edges[i+1]`)."""
        return {"edges": list(HIST_EDGES), "counts": self.hist.tolist(), "zeros": self.zeros,
                "underflow": self.underflow, "overflow": self.overflow, "nonfinite": self.nonfinite}


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    cos = np.where(both_zero, 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    return np.clip(cos, -1.0, 1.0)


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, name: str = "output") -> dict[str, Any]:
    """All metrics of one output for whole arrays (see the module doc for definitions)."""
    comp = OutputComparison(name)
    comp.update(reference, candidate)
    return comp.summary()


class AccuracyCounter:
    """Top-1/top-5 accuracy and per-class top-1 from logits and dataset labels.

    Dataset label L is logit index L + `label_offset`.
    """

    def __init__(self, label_offset: int = 0):
        self.label_offset = int(label_offset)
        self.count = 0
        self.top1 = 0
        self.top5 = 0
        self.class_count: dict[int, int] = {}
        self.class_top1: dict[int, int] = {}

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        x = np.asarray(logits, dtype=np.float64)
        y = np.asarray(labels).astype(np.int64).reshape(-1)
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise DataError(f"accuracy needs [N, classes] outputs and N labels; got {x.shape} and {y.shape[0]} labels")
        idx = y + self.label_offset
        if idx.size and (idx.min() < 0 or idx.max() >= x.shape[1]):
            raise DataError(
                f"label {int(y[(idx < 0) | (idx >= x.shape[1])][0])} + label_offset {self.label_offset} is outside "
                f"the {x.shape[1]} outputs; check the dataset's class folders and the manifest's label_offset"
            )
        hit1 = x.argmax(axis=1) == idx
        hit5 = (_topk(x, TOPK) == idx[:, None]).any(axis=1)
        self.count += int(y.size)
        self.top1 += int(hit1.sum())
        self.top5 += int(hit5.sum())
        for label, hit in zip(y.tolist(), hit1.tolist()):
            self.class_count[label] = self.class_count.get(label, 0) + 1
            self.class_top1[label] = self.class_top1.get(label, 0) + int(hit)

    def summary(self) -> dict[str, Any] | None:
        if not self.count:
            return None
        return {"top1": 100.0 * self.top1 / self.count, "top5": 100.0 * self.top5 / self.count,
                "count": self.count, "per_class": self.per_class()}

    def per_class(self) -> dict[str, list]:
        """Dataset labels, image count and top-1 accuracy (percent) per class, sorted by label."""
        labels = sorted(self.class_count)
        return {"labels": labels, "count": [self.class_count[c] for c in labels],
                "top1": [100.0 * self.class_top1[c] / self.class_count[c] for c in labels]}


def accuracy(logits: np.ndarray, labels: np.ndarray, label_offset: int = 0) -> dict[str, Any]:
    """Top-1/top-5 accuracy (percent) and per-class top-1 for whole arrays."""
    acc = AccuracyCounter(label_offset)
    acc.update(logits, labels)
    summary = acc.summary()
    if summary is None:
        raise DataError("accuracy of zero images; pass at least one labelled image")
    return summary


# --- thresholds ------------------------------------------------------------------------

UPPER_KEYS = ("max_abs", "max_abs_scaled", "mean_abs", "max_rel", "accuracy_drop")
LOWER_KEYS = ("cosine_min", "cosine_mean", "top1_agreement", "top5_agreement")


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
      layout, a missing BatchNorm or a bad weight is orders of magnitude above it. A TensorRT
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

    def check(self, metrics: Mapping[str, Any], accuracy_delta: float | None = None) -> list[str]:
        """Human-readable failures of `metrics` (an `OutputComparison.summary()`)."""
        failures = []
        if metrics.get("nonfinite"):
            failures.append(f"{metrics['nonfinite']} non-finite values (NaN/inf)")
        for key in UPPER_KEYS:
            limit = getattr(self, key)
            if key == "accuracy_drop":
                value = None if accuracy_delta is None else -accuracy_delta
            else:
                value = metrics.get(key)
            if limit is not None and value is not None and value > limit:
                failures.append(f"{key} {_fmt(value)} > {_fmt(limit)}")
        for key in LOWER_KEYS:
            limit = getattr(self, key)
            value = metrics.get(key)
            if limit is not None and value is not None and value < limit:
                failures.append(f"{key} {_fmt(value)} < {_fmt(limit)}")
        return failures


DEFAULT_THRESHOLDS = {
    "fp32": Thresholds(max_abs_scaled=1e-4, top1_agreement=1.0),
    "fp16": Thresholds(top1_agreement=0.995, accuracy_drop=0.2, cosine_min=0.99),
    "int8": Thresholds(top1_agreement=0.98, accuracy_drop=1.0, cosine_mean=0.97),
}
THRESHOLD_KEYS = tuple(f.name for f in fields(Thresholds))


def _fmt(x: float) -> str:
    return f"{x:.6g}"


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


def _parse_scope(parts: list[str], text: str) -> tuple[str | None, str | None]:
    scopes = set(BACKENDS) | set(PRECISIONS) | {"*"}
    if len(parts) == 1:
        scope, output = None, None
    elif len(parts) == 2:
        scope, output = (parts[0], None) if parts[0] in scopes else (None, parts[0])
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


# --- backends --------------------------------------------------------------------------


@dataclass(frozen=True)
class Skip:
    """Why a backend cannot run here (listed in the report, never dropped)."""

    reason: str


def engine_precision(path: str | Path) -> str:
    """Precision of a plan: from `NAME.PRECISION.plan`, else from its sidecar's `precision`."""
    p = Path(path)
    suffix = p.stem.rsplit(".", 1)[-1]
    if suffix in PRECISIONS:
        return suffix
    side = p.with_suffix(".json")
    if side.is_file():
        try:
            prec = json.loads(side.read_text()).get("precision")
        except (OSError, ValueError):
            prec = None
        if prec in PRECISIONS:
            return prec
    raise UsageError(f"{p}: cannot tell the engine's precision; name it NAME.PRECISION.plan (fp32, fp16 or int8)")


def engines_by_precision(engines: Sequence[str | Path] | Mapping[str, str | Path] | None) -> dict[str, Path]:
    if not engines:
        return {}
    if isinstance(engines, Mapping):
        return {k: Path(v) for k, v in engines.items()}
    out: dict[str, Path] = {}
    for e in engines:
        if not Path(e).is_file():  # a typo is the user's to fix, not a backend to list as skipped
            raise UsageError(f"--engine {e}: no such engine file; build one with `trtdeploy build BUNDLE "
                             "--precision PRECISION` or check the path")
        prec = engine_precision(e)
        if prec in out:
            raise UsageError(f"two engines for {prec}: {out[prec]} and {e}; pass one per precision")
        out[prec] = Path(e)
    return out


def engine_path(bundle: Bundle, precision: str, engines: Mapping[str, Path] | None = None) -> Path:
    if engines and precision in engines:
        return Path(engines[precision])
    return bundle.engines_dir / f"{bundle.model_name}.{precision}.plan"


def installed(module: str) -> bool:
    """Whether `module` can be found, without importing it (a failing finder counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def make_runner(backend: str, bundle: Bundle, engines: Mapping[str, Path] | None = None) -> Runner | Skip:
    """A runner for `backend`, or a Skip saying why it cannot run on this machine."""
    precision = backend_precision(backend)
    if backend == "tf":
        if not installed("tensorflow"):
            return Skip("TensorFlow is not installed here (`pip install 'trtdeploy[export]'`)")
        if not bundle.path("saved_model").is_dir():
            return Skip(f"{bundle.path('saved_model')}: missing (device bundles may omit it)")
        try:
            from .runners.tf import TFRunner
            return TFRunner(bundle)
        except (ImportError, OSError, DeployError) as e:
            return Skip(f"TensorFlow runner unavailable: {e}")
    if backend.startswith("ort-"):
        if not installed("onnxruntime"):
            return Skip("ONNX Runtime is not installed here (`pip install onnxruntime`)")
        try:
            path = bundle.onnx_path(precision)
        except BundleError as e:
            return Skip(str(e))
        from .runners.ort import OrtRunner
        return OrtRunner(path, name=backend)
    plan = engine_path(bundle, precision, engines)
    if not plan.is_file():
        return Skip(f"{plan}: no engine; build it with `trtdeploy build {bundle.root} --precision {precision}` "
                    "or pass --engine PLAN")
    try:
        from .trt.runtime import TrtRunner
    except (ImportError, OSError) as e:
        return Skip(f"TensorRT runtime unavailable: {e}")
    try:
        return TrtRunner(plan, name=backend)
    except (ImportError, OSError, DeployError) as e:  # no sidecar, no TensorRT, no driver
        return Skip(str(e))


# --- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    feed: dict[str, np.ndarray]
    labels: np.ndarray | None
    reference: dict[str, np.ndarray] | None  # stored TF outputs (reference.npz), else None


def load_reference_npz(bundle: Bundle) -> dict[str, np.ndarray]:
    path = bundle.path(REFERENCE_NPZ)
    if not path.is_file():
        raise BundleError(f"{path}: missing; pass --data DIR, or re-run `trtdeploy export` to write it")
    bundle.verify_file(REFERENCE_NPZ)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable ({e}); re-run `trtdeploy export`") from None


def npz_batches(bundle: Bundle, arrays: Mapping[str, np.ndarray], batch_size: int,
                num_images: int | None = None) -> tuple[int, Iterator[Batch]]:
    """Batches of reference.npz: `input` (or `input:<name>` per input), `output:<name>`, `labels`."""
    feeds: dict[str, np.ndarray] = {}
    for i, info in enumerate(bundle.inputs):
        key = f"input:{info.name}" if f"input:{info.name}" in arrays else ("input" if i == 0 else None)
        if key is None or key not in arrays:
            raise BundleError(f"{bundle.path(REFERENCE_NPZ)}: no inputs for {info.name!r} (key 'input'); "
                              "re-run `trtdeploy export`")
        feeds[info.name] = np.asarray(arrays[key], dtype=np.dtype(info.dtype))
    outs = {}
    for o in bundle.outputs:
        if f"output:{o.name}" not in arrays:
            raise BundleError(f"{bundle.path(REFERENCE_NPZ)}: no 'output:{o.name}'; re-run `trtdeploy export`")
        outs[o.name] = arrays[f"output:{o.name}"]
    labels = arrays.get("labels")
    total = len(next(iter(feeds.values())))
    if num_images is not None:
        total = min(total, num_images)
    if total == 0:
        raise DataError(f"{bundle.path(REFERENCE_NPZ)}: holds no inputs; re-run `trtdeploy export`")

    def gen() -> Iterator[Batch]:
        for s in range(0, total, batch_size):
            sl = slice(s, min(s + batch_size, total))
            yield Batch({k: np.ascontiguousarray(v[sl]) for k, v in feeds.items()},
                        None if labels is None else np.asarray(labels[sl]),
                        {k: v[sl] for k, v in outs.items()})
    return total, gen()


def folder_batches(bundle: Bundle, data: str | Path, batch_size: int, num_images: int | None,
                   seed: int, skip_bad: bool = False) -> tuple[list[str], Iterator[Batch]]:
    """The unreadable images skipped (with `skip_bad`), and the batches of an image folder (class
    folders give labels), a .txt list or a .npy/.npz, through the calibration-set loader."""
    from deploy.data.inputs import CalibrationSet
    from deploy.data.preprocess import Preprocess

    # num/seed pick the subset before images are decoded (the same choice as .subset(num, seed)).
    dataset = CalibrationSet.from_path(data, input=bundle.inputs[0],
                                       preprocess=Preprocess.from_json(bundle.preprocessing),
                                       skip_bad=skip_bad, skip_option="--skip-bad", num=num_images, seed=seed)

    def gen() -> Iterator[Batch]:
        for feed, labels in dataset.batches_with_labels(batch_size, desc="parity"):
            yield Batch(dict(feed), None if labels is None else np.asarray(labels), None)
    return dataset.skipped, gen()


# --- per-layer analysis ----------------------------------------------------------------


def compare_intermediates(fp32_values: Mapping[str, np.ndarray], other_values: Mapping[str, np.ndarray],
                          order: Sequence[str]) -> dict[str, dict[str, float]]:
    """Error of each intermediate tensor (network order) of a reduced-precision run against FP32.

    `rel_error` = ||a - b|| / ||a|| (Frobenius over the whole tensor; ||a - b|| when a is all
    zeros), `cosine` of the flattened tensors, `max_abs`. Returns {name: stats} in `order`.
    Raises DataError at the first layer whose reduced-precision values are not finite.
    """
    missing = [n for n in order if n not in fp32_values or n not in other_values]
    if missing:
        raise DataError(f"per-layer comparison: no values for {missing[:3]}{' ...' if len(missing) > 3 else ''}; "
                        "both runs must expose every end_point in `order`")
    out: dict[str, dict[str, float]] = {}
    for name in order:
        a = np.asarray(fp32_values[name], dtype=np.float64).reshape(-1)
        b = np.asarray(other_values[name], dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            raise DataError(f"per-layer comparison: {name!r} has {a.size} values in FP32 and {b.size} in the other run")
        if not np.isfinite(b).all():
            raise DataError(f"per-layer comparison: {name!r} has NaN/inf in the reduced-precision run (overflow); "
                            "it is the first layer to keep in high precision")
        d = np.linalg.norm(a - b)
        na = np.linalg.norm(a)
        # An all-zero FP32 tensor has no scale to divide by: its error is then the plain norm.
        rel = d / na if na > 0 else d
        cos = float(_cosine_rows(a[None, :], b[None, :])[0])
        out[name] = {"rel_error": float(rel), "cosine": cos,
                     "max_abs": float(np.abs(a - b).max()) if a.size else 0.0}
    return out


def rank_layers(per_layer: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Rank layers (given in network order) by error growth: rel_error minus the previous
    layer's rel_error (the first layer's growth is its own error). Largest growth first; those
    layers introduce the error rather than inherit it, so they are the ones to keep in high
    precision."""
    rows = []
    previous = 0.0
    for index, (name, stats) in enumerate(per_layer.items()):
        err = float(stats["rel_error"])
        rows.append({"name": name, "index": index, "rel_error": err, "growth": err - previous,
                     "cosine": stats.get("cosine")})
        previous = err
    return sorted(rows, key=lambda r: (-r["growth"], r["index"]))


def keep_in_high_precision(ranked: Sequence[Mapping[str, Any]], count: int = 3) -> list[str]:
    """The first `count` layers of a ranking whose error growth is positive."""
    return [r["name"] for r in ranked if r["growth"] > 0][:count]


# ONNX ops that carry Q/DQ on their inputs (see DESIGN.md): excluding them keeps a layer in float.
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "Add", "BatchNormalization", "MaxPool")


def layer_nodes(layer: str, onnx_nodes: Sequence[tuple[str, str]]) -> list[str]:
    """ONNX nodes (name, op_type) of a slim layer that `calibrate --exclude` can keep in float.

    tf2onnx keeps TF op names, so a layer's nodes are named under its scope
    (`resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/Conv2D`). Nodes tf2onnx renamed
    (`Conv__187`) cannot be found this way and leave the layer unmapped.
    """
    prefix = layer.rstrip("/") + "/"
    return [name for name, op in onnx_nodes if name.startswith(prefix) and op in QUANTIZED_OPS]


def exclude_command(bundle_root: str | Path, nodes: Sequence[str], data: str | Path | None = None) -> str:
    """`trtdeploy calibrate BUNDLE --data DATA --exclude NODE ...` (one --exclude, its nargs="+")."""
    parts = ["trtdeploy", "calibrate", str(bundle_root), "--data", str(data) if data else "DATA",
             "--exclude", *nodes]
    return " ".join(shlex.quote(p) for p in parts)


def per_layer_section(per_layer: Mapping[str, Mapping[str, Mapping[str, float]]], bundle_root: str | Path,
                      keep: int = 3, onnx_nodes: Sequence[tuple[str, str]] | None = None,
                      calibration_data: str | Path | None = None) -> dict[str, Any]:
    """The result's `per_layer` part from {backend or precision: compare_intermediates(...)}.

    With `onnx_nodes` ((name, op_type) of the FP32 ONNX) the kept INT8 layers are mapped to the
    node names `trtdeploy calibrate --exclude` takes, and the command line is given.
    """
    section: dict[str, Any] = {}
    for key, layers in per_layer.items():
        precision = key if key in PRECISIONS else backend_precision(key) if key in BACKENDS else None
        if precision is None:
            raise UsageError(f"per-layer data for {key!r}: name a backend or precision")
        ranked = rank_layers(layers)
        kept = keep_in_high_precision(ranked, keep)
        entry: dict[str, Any] = {
            "precision": precision,
            "layers": [{"name": n, **stats} for n, stats in layers.items()],
            "ranking": ranked,
            "keep_high_precision": kept,
            "exclude_nodes": None,
            "unmapped": [],
            "command": None,
        }
        # INT8 layers are chosen at calibration; FP16 has no exclusion step to point at.
        if precision == "int8" and kept and onnx_nodes is not None:
            mapped = {layer: layer_nodes(layer, onnx_nodes) for layer in kept}
            nodes = [n for layer in kept for n in mapped[layer]]
            entry["exclude_nodes"] = mapped
            entry["unmapped"] = [layer for layer in kept if not mapped[layer]]
            if nodes:
                entry["command"] = exclude_command(bundle_root, nodes, calibration_data)
        section[key] = entry
    return section


def _onnx_nodes(bundle: Bundle) -> list[tuple[str, str]] | None:
    """(name, op_type) of the FP32 ONNX's nodes, or None without onnx or model.onnx here."""
    try:
        import onnx

        model = onnx.load(str(bundle.onnx_path("fp32")), load_external_data=False)
    except (ImportError, DeployError, OSError) as e:
        log.info("per-layer: no ONNX node names (%s); the calibrate command is left out", e)
        return None
    return [(n.name, n.op_type) for n in model.graph.node]


def _calibration_source(bundle: Bundle) -> str | None:
    try:
        return json.loads((bundle.calibration_dir / "dataset.json").read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None


def int8_selection_section(bundle: Bundle) -> dict[str, Any] | None:
    """What `calibrate --method auto` / `--max-drop` chose for model.int8.onnx (from the
    manifest), for the report; None when INT8 was calibrated without an evaluation."""
    info = (bundle.manifest.get("precision") or {}).get("int8") or {}
    if not isinstance(info, dict) or "evaluation" not in info:
        return None
    return {k: info.get(k) for k in ("requested_method", "method", "percentile", "evaluation", "auto", "budget")}


# --- the run ---------------------------------------------------------------------------


def main_output(bundle: Bundle) -> str:
    """The output accuracy and histograms are judged on: the first [N, num_classes] output."""
    for o in bundle.outputs:
        if len(o.shape) == 2 and o.shape[1] == bundle.num_classes:
            return o.name
    return bundle.outputs[0].name


def _entry(backend: str, status: str, reason: str | None = None) -> dict[str, Any]:
    return {"precision": backend_precision(backend), "status": status, "reason": reason,
            "pass": False if status == "error" else None, "thresholds": {}, "outputs": {},
            "accuracy": None, "failures": [reason] if status == "error" and reason else []}


def _start(backend: str, runner: Runner | Skip, stack: contextlib.ExitStack) -> Runner | dict[str, Any]:
    """Activate a runner; an environment gap becomes a skip, anything else an error."""
    if isinstance(runner, Skip):
        return _entry(backend, "skipped", runner.reason)
    try:
        stack.enter_context(runner)
    except (DeployError, ImportError, OSError) as e:
        return _entry(backend, "skipped", str(e))
    except Exception as e:  # a bug or a broken artifact: shown as a failure, not hidden as a skip
        return _entry(backend, "error", f"could not start: {type(e).__name__}: {e}")
    return runner


def run_parity(bundle: Bundle, backends: str | Sequence[str] | None = None, data: str | Path | None = None,
               num_images: int | None = None, engines: Sequence[str | Path] | Mapping[str, Path] | None = None,
               thresholds: Sequence[ThresholdOverride] | None = None, batch_size: int = 16, seed: int = 0,
               per_layer: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
               onnx_nodes: Sequence[tuple[str, str]] | None = None, skip_bad: bool = False) -> dict[str, Any]:
    """Run every backend on the same inputs and judge it against the FP32 reference.

    `skip_bad`: leave unreadable images of `data` out (listed in the result's data section).

    `per_layer`: {backend or precision: compare_intermediates(...)} to rank layers by;
    `onnx_nodes`: (name, op_type) of the FP32 ONNX's nodes for the calibrate command (read
    from model.onnx when onnx is installed and they are not given).
    Returns the parity result (the schema `deploy.report` renders; written as parity.json).
    """
    names = parse_backends(backends)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if num_images is not None and num_images < 1:
        raise UsageError(f"--num-images must be >= 1, got {num_images}")
    overrides = list(thresholds or [])
    outputs = [o.name for o in bundle.outputs]
    unknown = sorted({o.output for o in overrides if o.output is not None and o.output not in outputs})
    if unknown:
        raise UsageError(f"threshold for unknown output(s) {unknown}; the bundle's outputs are {outputs}")
    engine_map = engines_by_precision(engines)
    main = main_output(bundle)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    entries: dict[str, dict[str, Any]] = {}
    runners: dict[str, Runner] = {}
    with contextlib.ExitStack() as stack:
        for b in names:
            started = _start(b, make_runner(b, bundle, engine_map), stack)
            if isinstance(started, Runner):
                runners[b] = started
            else:
                entries[b] = started
                log.debug("parity: %s %s: %s", b, started["status"], started["reason"])

        npz = load_reference_npz(bundle) if data is None else None
        ref_name, ref_runner, ref_note = _choose_reference(bundle, names, runners, entries, engine_map,
                                                           stack, have_stored=npz is not None)
        if npz is not None:
            total, batches = npz_batches(bundle, npz, batch_size, num_images)
            batch_iter: Iterable[Batch] = progress(batches, desc="parity", total=-(-total // batch_size),
                                                   unit="batch")
            data_info: dict[str, Any] = {"source": REFERENCE_NPZ}
        else:
            skipped, batch_iter = folder_batches(bundle, data, batch_size, num_images, seed, skip_bad)
            data_info = {"source": str(data), "seed": seed, "skipped": skipped}

        comps = {b: {o: OutputComparison(o) for o in outputs} for b in runners}
        accs = {b: AccuracyCounter(bundle.label_offset) for b in runners}
        ref_acc = AccuracyCounter(bundle.label_offset)
        missing_out: dict[str, set[str]] = {b: set() for b in runners}
        seen = 0
        have_labels = True
        for batch in batch_iter:
            done = seen
            seen += len(next(iter(batch.feed.values())))
            ref_out = batch.reference if ref_runner is None else ref_runner.infer_any_batch(batch.feed)
            have_labels = have_labels and batch.labels is not None
            if have_labels:
                ref_acc.update(ref_out[main], batch.labels)
            for b, runner in list(runners.items()):
                try:
                    out = ref_out if runner is ref_runner else runner.infer_any_batch(batch.feed)
                    for o in outputs:
                        if o in out:
                            comps[b][o].update(ref_out[o], out[o])
                        else:
                            missing_out[b].add(o)
                    if have_labels and main in out:
                        accs[b].update(out[main], batch.labels)
                except Exception as e:  # one backend failing must not stop the others' report
                    entries[b] = _entry(b, "error", f"failed after {done} images: {type(e).__name__}: {e}")
                    del runners[b]
        if seen == 0:
            raise DataError(f"{data if data is not None else bundle.path(REFERENCE_NPZ)}: no images to compare")

    ref_accuracy = ref_acc.summary() if have_labels else None
    for b in runners:
        entries[b] = _judge(b, comps[b], accs[b] if have_labels else None, ref_accuracy, overrides,
                            main, missing_out[b], is_reference=(b == ref_name))
        entries[b]["histogram"] = comps[b][main].histogram()
        if b.startswith("trt-"):
            entries[b]["engine"] = str(engine_path(bundle, backend_precision(b), engine_map))

    ordered = {b: entries[b] for b in names}
    ran = [e for e in ordered.values() if e["status"] != "skipped"]
    failed = [b for b, e in ordered.items() if e["status"] != "skipped" and not e["pass"]]
    errored = [b for b in failed if ordered[b]["status"] == "error"]
    missed = [b for b in failed if b not in errored]
    if not ran:
        verdict = "FAIL: no backend ran here, so nothing was compared (see why each was skipped)"
    elif failed:
        why = ([f"{', '.join(missed)} missed {'its' if len(missed) == 1 else 'their'} thresholds"] if missed else []) \
            + ([f"{', '.join(errored)} stopped with an error"] if errored else [])
        verdict = "FAIL: " + "; ".join(why)
    else:
        verdict = f"PASS: all {len(ran)} backend(s) that ran met their thresholds"

    data_info.update({"num_images": seen, "batch_size": batch_size, "labels": have_labels,
                      "label_offset": bundle.label_offset, "main_output": main, "outputs": outputs})
    result = {
        "reference": {"name": ref_name, "precision": "fp32", "note": ref_note, "accuracy": ref_accuracy},
        "pass": bool(ran) and not failed,
        "verdict": verdict,
        "backends": ordered,
        "environment": machine_info(),
        "data": data_info,
        "bundle": {"path": str(bundle.root), "model": bundle.model_name,
                   "weights": bundle.manifest["model"].get("weights"),
                   "image_size": bundle.manifest["model"].get("image_size"),
                   "trained_image_size": bundle.manifest["model"].get("trained_image_size"),
                   "warnings": bundle.warnings},
        "created": created,
    }
    selection = int8_selection_section(bundle)
    if selection is not None:
        result["int8_selection"] = selection
    if per_layer:
        nodes = onnx_nodes if onnx_nodes is not None else _onnx_nodes(bundle)
        result["per_layer"] = per_layer_section(per_layer, bundle.root, onnx_nodes=nodes,
                                                calibration_data=_calibration_source(bundle))
    return result


def _choose_reference(bundle: Bundle, names: list[str], runners: dict[str, Runner],
                      entries: dict[str, dict[str, Any]], engine_map: Mapping[str, Path],
                      stack: contextlib.ExitStack, have_stored: bool) -> tuple[str, Runner | None, str]:
    """TF if it runs here; else the stored TF outputs; else (image folder) an FP32 backend."""
    if "tf" in runners:
        return "tf", runners["tf"], "TensorFlow SavedModel, run on the same inputs"
    if "tf" in entries:
        tf_why = entries["tf"]["reason"]
    else:
        started = _start("tf", make_runner("tf", bundle, engine_map), stack)
        if isinstance(started, Runner):
            return "tf", started, "TensorFlow SavedModel, run on the same inputs"
        tf_why = started["reason"]
    if have_stored:
        return REFERENCE_NPZ, None, f"TF outputs stored at export (TensorFlow not used here: {tf_why})"
    for b in ("ort-fp32", "trt-fp32"):
        if b in runners:
            return b, runners[b], f"{b} (TensorFlow not usable here: {tf_why})"
        if b not in names:
            started = _start(b, make_runner(b, bundle, engine_map), stack)
            if isinstance(started, Runner):
                return b, started, f"{b} (TensorFlow not usable here: {tf_why})"
    raise UsageError(
        f"no FP32 reference for --data images: TensorFlow not usable ({tf_why}) and neither ort-fp32 nor "
        "trt-fp32 runs here; drop --data to compare on reference.npz"
    )


def _judge(backend: str, comps: Mapping[str, OutputComparison], acc: AccuracyCounter | None,
           ref_accuracy: Mapping[str, Any] | None, overrides: Sequence[ThresholdOverride], main: str,
           missing: set[str], is_reference: bool) -> dict[str, Any]:
    entry = _entry(backend, "ran")
    accuracy_info = acc.summary() if acc is not None else None
    delta = None
    if accuracy_info is not None and ref_accuracy is not None:
        delta = accuracy_info["top1"] - ref_accuracy["top1"]
        accuracy_info = {"top1": accuracy_info["top1"], "top5": accuracy_info["top5"],
                         "delta_top1_vs_fp32": delta, "count": accuracy_info["count"],
                         "per_class": accuracy_info["per_class"]}
    failures = [f"output {o!r} missing from the backend's outputs" for o in sorted(missing)]
    for o, comp in comps.items():
        t = resolve_thresholds(backend, o, overrides)
        entry["thresholds"][o] = t.to_json()
        if o in missing:
            continue
        metrics = comp.summary()
        entry["outputs"][o] = metrics
        failures += [f"{o}: {f}" for f in t.check(metrics, delta if o == main else None)]
    entry.update({"accuracy": accuracy_info, "failures": failures, "pass": not failures})
    if is_reference:
        entry["is_reference"] = True
    return entry
