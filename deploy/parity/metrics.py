"""What one backend's outputs are measured by: streamed per-output metrics against the
reference, and accuracy against dataset labels.

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
  `[N, classes]` outputs only (None otherwise).
- `nonfinite`: count of NaN/inf candidate values; any is a failure. Statistics above are
  taken over finite values, and a sample with any non-finite value never agrees.
- `softmax_excess`, for a softmax output whose logits are compared too (tf-slim's `predictions`
  and `logits`, `SOFTMAX_OF`): the largest amount, over samples (rows of the last axis), by which
  max |reference - candidate| exceeds what the two logit rows' difference allows
  (`softmax_error_bound`); <= 0 when every sample is within. Near-tied logits of the size random
  weights give (~4e5) move probabilities by 1e-2 on a logit error of 1e-6 relative, so such an
  output's element limits (`max_abs`, `max_abs_scaled`) judge only this excess
  (`OutputMetrics.judged`): the same logits can no longer pass or fail by how close two of them
  happen to be.

Accuracy (percent): dataset label L is logit index L + `label_offset` (1001-class slim models
keep background at index 0).

Every statistic is streamed: memory does not grow with the number of images (only one float
per image for cosines). Needs only numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..errors import DataError

# max_rel denominator floor: a fraction of the sample's largest |reference| value (see module doc).
REL_EPS_FRACTION = 1e-3
U32 = 2.0 ** -24  # float32 unit roundoff
# tf-slim's `predictions` end point is the softmax of its logits (resnet_utils.py, vgg.py:
# end_points["predictions"] = softmax(net)); deploy/slim keeps the names.
SOFTMAX_OF = {"predictions": "logits"}
# What judged() replaces for a softmax output judged by its logits.
SOFTMAX_JUDGED = ("max_abs", "max_abs_scaled")
REL_EPS_MIN = 1e-12
TOPK = 5
# |diff| histogram: log-spaced, 4 bins per decade from 1e-8 to 1e2; values outside are counted
# as underflow/overflow, exact zeros apart. Fixed edges let the counts stream batch by batch.
HIST_EDGES = tuple(float(10.0 ** (e / 4)) for e in range(-32, 9))


def softmax_error_bound(z_ref: np.ndarray, z_cand: np.ndarray) -> np.ndarray:
    """Per row (softmax over the last axis): the largest |softmax(z_ref) - softmax(z_cand)| that
    the logit difference d = z_ref - z_cand allows, plus the float32 rounding of both softmaxes.

    Bound: the Jacobian of p = softmax(z) is J = diag(p) - p p^T; row i of |J| sums to
    p_i(1 - p_i) + p_i(1 - p_i) = 2 p_i (1 - p_i) <= 1/2, so ||J v||_inf <= ||v||_inf / 2.
    J 1 = 0 (softmax ignores a common shift), so J v = J (v - c 1) for any c, and the best c
    gives ||J v||_inf <= (max v - min v) / 4. Integrating J along z_cand + t d, t in [0, 1]:
    ||softmax(z_ref) - softmax(z_cand)||_inf <= (max d - min d) / 4  (<= ||d||_inf / 2).
    Rounding: each side computes its softmax in float32: the C-term sum has relative error
    <= (C - 1) u, exp and the division a few u, and rounding z - max(z) moves p_i by at most
    p_i |z_i - max z| u <= u / e. Probabilities are <= 1, so 2 C u per side covers it.
    (The derivation tests/slim/test_tf_slim_parity.py uses for tf-slim's own predictions.)
    """
    d = z_ref.astype(np.float64) - z_cand.astype(np.float64)
    classes = z_ref.shape[-1]
    return (d.max(axis=-1) - d.min(axis=-1)) / 4 + 2 * (2 * classes * U32)


def _finite_or_none(x: float | None) -> float | None:
    # Reports are strict JSON: NaN/inf never leave this module.
    return None if x is None or not math.isfinite(x) else float(x)


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    k = min(k, x.shape[1])
    return np.argpartition(-x, k - 1, axis=1)[:, :k]


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `a` with the same row of `b`, in [-1, 1]; two all-zero
    rows are identical (1.0), one all-zero row is unrelated (0.0)."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    both_zero = (na == 0) & (nb == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    cos = np.where(both_zero, 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    return np.clip(cos, -1.0, 1.0)


@dataclass(frozen=True)
class OutputMetrics:
    """One output of one backend against the reference (see the module doc); None: not
    measurable (no finite values, or agreement of a non-class output)."""

    max_abs: float | None
    mean_abs: float | None
    max_rel: float | None
    cosine_min: float | None
    cosine_mean: float | None
    top1_agreement: float | None
    top5_agreement: float | None
    max_abs_scaled: float | None
    ref_max_abs: float | None
    nonfinite: int
    samples: int
    softmax_excess: float | None = None  # None: not a softmax output judged by its logits

    def judged(self, key: str) -> float | None:
        """The value a threshold on `key` judges: the metric itself, except for a softmax output
        judged by its logits, whose max_abs and max_abs_scaled count only the error beyond what
        the logit error allows (see the module doc)."""
        if self.softmax_excess is None or key not in SOFTMAX_JUDGED:
            return getattr(self, key)
        beyond = max(self.softmax_excess, 0.0)
        if key == "max_abs":
            return beyond
        return beyond / self.ref_max_abs if self.ref_max_abs else None

    def to_json(self) -> dict[str, Any]:
        d = {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "max_rel": self.max_rel,
             "cosine_min": self.cosine_min, "cosine_mean": self.cosine_mean,
             "top1_agreement": self.top1_agreement, "top5_agreement": self.top5_agreement,
             "max_abs_scaled": self.max_abs_scaled, "ref_max_abs": self.ref_max_abs,
             "nonfinite": self.nonfinite, "samples": self.samples}
        if self.softmax_excess is not None:
            d["softmax_excess"] = self.softmax_excess
        return d


@dataclass(frozen=True)
class Histogram:
    """|diff| counts of one output: `counts[i]` is `edges[i] <= x < edges[i+1]`; exact zeros,
    values below and above the edges and non-finite values counted apart."""

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    zeros: int
    underflow: int
    overflow: int
    nonfinite: int

    def to_json(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "counts": list(self.counts), "zeros": self.zeros,
                "underflow": self.underflow, "overflow": self.overflow, "nonfinite": self.nonfinite}


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
        self.softmax_excess: float | None = None

    def update(self, reference: np.ndarray, candidate: np.ndarray,
               logits: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add one batch; `logits` (reference's, candidate's) when this output is their softmax."""
        ref = np.asarray(reference)
        cand = np.asarray(candidate)
        if ref.shape != cand.shape:
            raise DataError(
                f"output {self.name!r}: candidate shape {cand.shape} != reference shape {ref.shape}; "
                "the backends were built from different models or batch sizes"
            )
        if ref.ndim == 0 or ref.shape[0] == 0:
            return
        if self.classes is None:
            self.classes = ref.ndim == 2
        n = ref.shape[0]
        r = ref.astype(np.float64).reshape(n, -1)
        c = cand.astype(np.float64).reshape(n, -1)
        finite = np.isfinite(c)
        bad_sample = ~finite.all(axis=1)
        self.nonfinite += int((~finite).sum())
        c_safe = np.where(finite, c, 0.0)
        diff = np.abs(r - c_safe)
        self.samples += n
        self._errors(r, diff, finite)
        self.cosines.append(np.where(bad_sample, np.nan, cosine_rows(r, c_safe)))
        if ref.ndim == 2:
            self._agreement(r, c_safe, bad_sample)
        self._histogram(diff[finite])
        if logits is not None:
            self._softmax(ref, cand, *(np.asarray(z) for z in logits))

    def _softmax(self, ref: np.ndarray, cand: np.ndarray, z_ref: np.ndarray, z_cand: np.ndarray) -> None:
        if z_ref.shape != ref.shape or z_cand.shape != ref.shape:
            raise DataError(f"output {self.name!r}: logits of shape {z_ref.shape} / {z_cand.shape} cannot be the "
                            f"logits of this softmax of shape {ref.shape}")
        with np.errstate(invalid="ignore"):
            excess = np.abs(ref.astype(np.float64) - cand.astype(np.float64)).max(axis=-1) \
                - softmax_error_bound(z_ref, z_cand)
        excess = excess[np.isfinite(excess)]  # a non-finite value fails through `nonfinite` (or the logits')
        if excess.size:
            worst = float(excess.max())
            self.softmax_excess = worst if self.softmax_excess is None else max(self.softmax_excess, worst)

    def _errors(self, r: np.ndarray, diff: np.ndarray, finite: np.ndarray) -> None:
        diff_f = diff[finite]
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

    def _agreement(self, r: np.ndarray, c: np.ndarray, bad_sample: np.ndarray) -> None:
        ref_top1 = r.argmax(axis=1)
        agree1 = (c.argmax(axis=1) == ref_top1) & ~bad_sample
        agree5 = (_topk(c, TOPK) == ref_top1[:, None]).any(axis=1) & ~bad_sample
        self.top1 += int(agree1.sum())
        self.top5 += int(agree5.sum())

    def _histogram(self, diff_f: np.ndarray) -> None:
        self.zeros += int((diff_f == 0).sum())
        nz = diff_f[diff_f > 0]
        self.underflow += int((nz < HIST_EDGES[0]).sum())
        self.overflow += int((nz > HIST_EDGES[-1]).sum())
        self.hist += np.histogram(nz, bins=np.asarray(HIST_EDGES))[0]

    def summary(self) -> OutputMetrics:
        cos = np.concatenate(self.cosines) if self.cosines else np.zeros(0)
        cos = cos[np.isfinite(cos)]
        agree = self.classes and self.samples
        return OutputMetrics(
            max_abs=_finite_or_none(self.max_abs),
            mean_abs=_finite_or_none(self.sum_abs / self.elements) if self.elements else None,
            max_rel=_finite_or_none(self.max_rel),
            cosine_min=_finite_or_none(float(cos.min())) if cos.size else None,
            cosine_mean=_finite_or_none(float(cos.mean())) if cos.size else None,
            top1_agreement=self.top1 / self.samples if agree else None,
            top5_agreement=self.top5 / self.samples if agree else None,
            max_abs_scaled=_finite_or_none(self.max_abs / self.ref_max_abs) if self.ref_max_abs > 0 else None,
            ref_max_abs=_finite_or_none(self.ref_max_abs),
            nonfinite=self.nonfinite,
            samples=self.samples,
            softmax_excess=_finite_or_none(self.softmax_excess),
        )

    def histogram(self) -> Histogram:
        """|diff| counts for the report."""
        return Histogram(HIST_EDGES, tuple(self.hist.tolist()), self.zeros, self.underflow, self.overflow,
                         self.nonfinite)


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, name: str = "output",
                    logits: tuple[np.ndarray, np.ndarray] | None = None) -> OutputMetrics:
    """All metrics of one output for whole arrays (see the module doc for definitions)."""
    comp = OutputComparison(name)
    comp.update(reference, candidate, logits)
    return comp.summary()


def logits_pair(output: str, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """(reference's, candidate's) logits of a softmax output when both sides have them, else None."""
    logits = SOFTMAX_OF.get(output)
    if logits is None or logits not in reference or logits not in candidate:
        return None
    return reference[logits], candidate[logits]


@dataclass(frozen=True)
class PerClass:
    """Dataset labels (sorted), image count and top-1 accuracy (percent) per class."""

    labels: tuple[int, ...]
    count: tuple[int, ...]
    top1: tuple[float, ...]

    def to_json(self) -> dict[str, list]:
        return {"labels": list(self.labels), "count": list(self.count), "top1": list(self.top1)}


@dataclass(frozen=True)
class Accuracy:
    """Top-1/top-5 accuracy (percent) on `count` labelled images, and for a backend its top-1
    change against the reference in percentage points (`delta_top1_vs_fp32`, negative: worse)."""

    top1: float
    top5: float
    count: int
    per_class: PerClass
    delta_top1_vs_fp32: float | None = None

    def against(self, reference: "Accuracy") -> "Accuracy":
        return replace(self, delta_top1_vs_fp32=self.top1 - reference.top1)

    def to_json(self) -> dict[str, Any]:
        delta = {} if self.delta_top1_vs_fp32 is None else {"delta_top1_vs_fp32": self.delta_top1_vs_fp32}
        return {"top1": self.top1, "top5": self.top5, **delta, "count": self.count,
                "per_class": self.per_class.to_json()}


class AccuracyCounter:
    """Top-1/top-5 accuracy and per-class top-1 from logits and dataset labels, streamed.

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

    def summary(self) -> Accuracy | None:
        """None before any labelled image."""
        if not self.count:
            return None
        return Accuracy(top1=100.0 * self.top1 / self.count, top5=100.0 * self.top5 / self.count,
                        count=self.count, per_class=self.per_class())

    def per_class(self) -> PerClass:
        labels = sorted(self.class_count)
        return PerClass(tuple(labels), tuple(self.class_count[c] for c in labels),
                        tuple(100.0 * self.class_top1[c] / self.class_count[c] for c in labels))


def accuracy(logits: np.ndarray, labels: np.ndarray, label_offset: int = 0) -> Accuracy:
    """Top-1/top-5 accuracy (percent) and per-class top-1 for whole arrays."""
    acc = AccuracyCounter(label_offset)
    acc.update(logits, labels)
    summary = acc.summary()
    if summary is None:
        raise DataError("accuracy of zero images; pass at least one labelled image")
    return summary
