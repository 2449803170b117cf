"""How close an INT8 model is to FP32 on an evaluation set: accuracy (or agreement) and fidelity.

The INT8 model is run by ONNX Runtime from the very Q/DQ bytes written as model.int8.onnx;
FP32 is run once per evaluation set and its logits kept, so each further evaluation (a
calibration method, a set of nodes kept in high precision) costs one INT8 pass.

- With labels, the score is top-1 accuracy and the drop is FP32's accuracy minus INT8's, in
  points (1 point = 1% of the images). Without labels it is top-1 agreement with FP32 and
  the drop is 100 - agreement%.
- Fidelity is the relative RMSE of the INT8 logits against FP32's over every logit of the
  set, one number for the whole set:

      fidelity = sqrt(mean((int8 - fp32)**2)) / sqrt(mean(fp32**2))

  (0 is perfect). Pooled rather than averaged per image so that images whose logits are
  near zero (where a per-image ratio explodes) weigh no more than their error does. It
  separates calibrations that accuracy cannot: on the embedded digits model every method
  scores 100% on the held-out digits while the fidelity differs.

Where two results have the same score, the lower fidelity ranks first (`rank_key`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from deploy.errors import DataError

log = logging.getLogger("trtdeploy.calibration")

ACCURACY = "accuracy"
AGREEMENT = "agreement"
# Decoded evaluation inputs up to this size are kept in memory for the repeated INT8 passes;
# a larger set is read again from its files for each pass.
KEEP_IN_MEMORY_BYTES = 256 << 20
# Rows per ONNX Runtime call when scoring: a session's memory follows the rows of its calls
# (resnet_v2_50 at 224: 1.35 GB peak scoring FP32 and INT8 at --batch-size 16), so a larger
# batch is run in parts and the peak does not follow --batch-size.
SCORE_ROWS = 8


def run_rows(session, output: str, feed: Mapping[str, np.ndarray]) -> np.ndarray:
    """`output` of `session` on `feed`, run SCORE_ROWS rows at a time."""
    rows = len(next(iter(feed.values())))
    return np.concatenate([session.run([output], {k: v[lo:lo + SCORE_ROWS] for k, v in feed.items()})[0]
                           for lo in range(0, rows, SCORE_ROWS)])


def relative_rmse(candidate: np.ndarray, reference: np.ndarray) -> float:
    """sqrt(mean((candidate - reference)**2)) / sqrt(mean(reference**2)); the plain RMSE when
    the reference is all zeros."""
    c = np.asarray(candidate, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if c.shape != r.shape:
        raise DataError(f"fidelity: outputs of shape {c.shape} and {r.shape} cannot be compared")
    rmse = float(np.sqrt(np.mean((c - r) ** 2))) if r.size else 0.0
    scale = float(np.sqrt(np.mean(r * r))) if r.size else 0.0
    return rmse / scale if scale > 0 else rmse


@dataclass(frozen=True)
class Evaluation:
    """One INT8 model on the evaluation set, against FP32."""

    metric: str  # ACCURACY (the set has labels) or AGREEMENT
    score: float  # INT8 top-1 accuracy, or its top-1 agreement with FP32 (0..1)
    fp32_score: float  # FP32 accuracy; 1.0 for agreement (FP32 agrees with itself)
    agreement: float
    fidelity: float
    num_images: int

    @property
    def drop_points(self) -> float:
        return (self.fp32_score - self.score) * 100.0

    def rank_key(self) -> tuple[float, float]:
        """Sorts best first: higher score, then lower fidelity (relative RMSE)."""
        return (-round(self.score, 12), self.fidelity)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "int8": self.score, "fp32": self.fp32_score,
                "drop_points": round(self.drop_points, 6), "agreement": self.agreement,
                "fidelity": self.fidelity, "num_images": self.num_images}

    def describe(self) -> str:
        what = "top-1" if self.metric == ACCURACY else "agreement"
        return f"INT8 {what} {self.score:.2%} (drop {self.drop_points:.2f} points), fidelity {self.fidelity:.4f}"


class EvalSet:
    """An evaluation set with FP32's logits on it, ready to score INT8 models against.

    `dataset` is a loaded input set (deploy.data.inputs); `fp32_model` the FP32 ONNX (path,
    bytes or ModelProto bytes); `output` the logits output; `label_offset` is subtracted from
    predicted classes (1 for 1001-class slim models)."""

    def __init__(self, dataset: Any, fp32_model: Any, output: str, label_offset: int = 0,
                 batch_size: int = 16, threads: int | None = None):
        self.dataset = dataset
        self.output = output
        self.label_offset = label_offset
        self.batch_size = batch_size
        self.threads = threads
        self.labels = dataset.labels
        self.metric = ACCURACY if self.labels is not None else AGREEMENT
        per_input = int(np.prod([d if d > 0 else 1 for d in dataset.input.shape[1:]])) * 4
        self._feeds = list(self._read()) if per_input * len(dataset) <= KEEP_IN_MEMORY_BYTES else None
        self.fp32_logits = self.logits(fp32_model)
        self.fp32_top1 = np.argmax(self.fp32_logits, axis=-1) - label_offset
        self.fp32_score = float(np.mean(self.fp32_top1 == self.labels)) if self.labels is not None else 1.0

    def __len__(self) -> int:
        return len(self.dataset)

    def _read(self) -> Iterator[Mapping[str, np.ndarray]]:
        return (feed for feed, _ in self.dataset.batches_with_labels(self.batch_size, desc=None))

    def feeds(self) -> Iterator[Mapping[str, np.ndarray]]:
        return iter(self._feeds) if self._feeds is not None else self._read()

    def logits(self, model: Any) -> np.ndarray:
        """The model's `output` over the whole set (ONNX Runtime, CPU)."""
        from deploy.runners.ort import make_session

        session = make_session(model, threads=self.threads)
        out = [np.asarray(run_rows(session, self.output, feed), dtype=np.float32) for feed in self.feeds()]
        if not out:
            raise DataError("the evaluation set holds no inputs")
        return np.concatenate(out)

    def evaluate(self, model: Any) -> Evaluation:
        """Score an INT8 model (ONNX path or bytes) against FP32 on this set."""
        logits = self.logits(model)
        top1 = np.argmax(logits, axis=-1) - self.label_offset
        agreement = float(np.mean(top1 == self.fp32_top1))
        score = float(np.mean(top1 == self.labels)) if self.labels is not None else agreement
        return Evaluation(metric=self.metric, score=score, fp32_score=self.fp32_score, agreement=agreement,
                          fidelity=relative_rmse(logits, self.fp32_logits), num_images=len(logits))

    def describe(self) -> str:
        what = (f"FP32 top-1 {self.fp32_score:.2%}" if self.metric == ACCURACY
                else "no labels: top-1 agreement with FP32")
        return f"{len(self)} images ({what})"

