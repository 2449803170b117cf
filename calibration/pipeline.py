"""`trtdeploy calibrate`: input set -> statistics -> ranges -> Q/DQ model + TensorRT cache.

Stages (each a small function of the previous artifact)::

    InputSet ──► collect_statistics (ORT, FP32 model, every float activation, one pass)
             ──► compute_amax (entropy | percentile | max | mse; auto: each, scored)
             ──► [--max-drop: keep_within_budget, the ranked layers kept in float]
             ──► insert_qdq (the planned tensors) ─► model.int8.onnx
             ──► calibration/scales.json, calibration/trt.cache (every activation),
                 calibration/dataset.json

`--method auto`, `--max-drop` and `--eval-data` judge INT8 against FP32 on evaluation images
(calibration/selection.py: `--eval-data`, or a held-out part of the data); see
calibration/auto.py and calibration/budget.py.

`calibration/scales.json` remembers what the ranges were computed from (model hash,
input-set hash, method). Running again with the same inputs reuses the ranges (no
statistics pass); different inputs are refused unless `recalibrate=True`: a stale range
silently applied to another model or data set is the failure this guards against.

Every input is checked before anything is written (the data, its labels, the recorded
ranges), and nothing is written until every artifact is built and checked (the Q/DQ model
loads in ONNX Runtime). The four files and the manifest are then committed as one update
under the bundle's lock (deploy.bundle): a second command waits, an interrupted one leaves
the old set.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from deploy.bundle import DATASET_JSON, ONNX_FILES, SCALES_JSON, TRT_CACHE, Bundle, BundleUpdate
from deploy.data import DEFAULT_BATCH_SIZE
from deploy.errors import BundleError, CalibrationError, UsageError
from deploy.int8 import AUTO_METHOD
from deploy.fsutil import sha256_file
from deploy.trt.calibration_cache import DEFAULT_VERSION, calibration_algorithm_for, format_cache, trt_version_code

from .histograms import TRT_NUM_BINS
from .ranges import CalibrationConfig

log = logging.getLogger("trtdeploy.calibration")

SCALES_FORMAT = 1
INT8_ONNX = ONNX_FILES["int8"]


@dataclass(frozen=True)
class CalibrationResult:
    """What one `calibrate` call did."""

    method: str
    algorithm: str
    num_images: int
    num_observed: int  # float activations observed, each with a range in trt.cache
    num_qdq_activations: int  # the observed tensors that carry Q/DQ in model.int8.onnx
    num_qdq_tensors: int  # activations + Conv weights
    reused: bool  # ranges taken from an earlier scales.json: no statistics pass
    seconds: float
    statistics_seconds: float
    files: dict[str, str] = field(default_factory=dict)  # bundle-relative path -> sha256
    int8_path: Path | None = None
    # The images calibrated on, for `evaluate_accuracy` without reading and checking them again.
    dataset: Any = field(default=None, repr=False, compare=False)
    # --method auto (calibration.auto.AutoResult; its scales.json record when reused) and
    # --max-drop (calibration.budget.BudgetResult); the evaluation set's record, with the
    # written model's score under "int8" (None without evaluation images).
    auto: Any = field(default=None, repr=False, compare=False)
    budget: Any = field(default=None, repr=False, compare=False)
    evaluation: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Ranges:
    """Per-tensor ranges: the clipping thresholds (amax) and the true maxima (FP16
    conversion checks overflow with those)."""

    amax: dict[str, float]
    maxima: dict[str, float]
    reused: bool
    seconds: float = 0.0
    auto: Any = None  # --method auto's choice: an AutoResult, or its record in a reused scales.json


def _load_set(bundle: Bundle, data_path: Any, num_images: int | None, seed: int, skip_bad: bool):
    from deploy.data.inputs import InputSet
    from deploy.data.preprocess import Preprocess

    if isinstance(data_path, InputSet):
        return data_path

    preprocess = Preprocess.from_json(bundle.preprocessing)
    # Choosing the subset inside from_path decodes only the chosen images, not the whole folder.
    dataset = InputSet.from_path(data_path, input=bundle.inputs[0], preprocess=preprocess,
                                 skip_bad=skip_bad, skip_option="--skip-bad", num=num_images, seed=seed)
    if bundle.class_outputs:  # labels are scored against the classes: check them before any work
        dataset.check_labels(bundle.num_classes - bundle.label_offset)
    return dataset


def _read_previous(bundle: Bundle) -> dict[str, Any] | None:
    """The recorded ranges of an earlier run, checked against the manifest and field by field."""
    path = bundle.path(SCALES_JSON)
    if not path.exists():
        return None
    fix = "pass --recalibrate to measure them again"
    try:
        bundle.file(SCALES_JSON)
        prev = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CalibrationError(f"{path}: unreadable ({e}); {fix}") from None
    except BundleError as e:
        raise CalibrationError(f"{str(e).split('; ')[0]}; {fix}") from None
    if not isinstance(prev, dict) or prev.get("format") != SCALES_FORMAT or not isinstance(prev.get("amax"), dict):
        raise CalibrationError(f"{path}: not a scales file this version writes; {fix}")
    for key in ("amax", "max"):
        for name, v in (prev.get(key) or {}).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < 3.4e38):
                raise CalibrationError(f"{path}: {key} of tensor {name!r} is {v!r}, not a positive finite "
                                       f"float32; {fix}")
    return prev


def _changes(prev: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between the recorded calibration inputs and this run's."""
    out = []
    if prev.get("model_sha256") != want["model_sha256"]:
        out.append(f"model.onnx changed (sha256 {str(prev.get('model_sha256'))[:12]} -> {want['model_sha256'][:12]})")
    if prev.get("dataset_sha256") != want["dataset_sha256"]:
        out.append(f"calibration data changed ({prev.get('num_images')} images, sha256 "
                   f"{str(prev.get('dataset_sha256'))[:12]} -> {want['num_images']} images, "
                   f"{want['dataset_sha256'][:12]})")
    for key in ("method", "percentile", "num_bins"):
        if prev.get(key) != want[key]:
            out.append(f"{key} changed ({prev.get(key)} -> {want[key]})")
    return out


def _inputs_record(fp32_path: Path, dataset, config: CalibrationConfig, method: str) -> dict[str, Any]:
    """What the ranges are computed from, as scales.json records it (`method` as asked: auto
    is recorded as auto, its choice beside it)."""
    return {
        "model_sha256": sha256_file(fp32_path),
        "dataset_sha256": dataset.sha256,
        "num_images": len(dataset),
        "method": method,
        "percentile": config.percentile if method == "percentile" else None,
        "num_bins": config.num_bins,
    }


def _reuse(scales_path: Path, prev: Mapping[str, Any], want: Mapping[str, Any], observed: Sequence[str]) -> _Ranges:
    """The ranges of an earlier run with the same inputs; CalibrationError for other inputs."""
    changes = _changes(prev, want)
    if changes:
        raise CalibrationError(
            f"{scales_path}: calibrated for different inputs: {'; '.join(changes)}. "
            "Pass --recalibrate to replace it"
        )
    missing = [t for t in observed if t not in prev["amax"]]
    if missing:
        raise CalibrationError(
            f"{scales_path}: no range for {len(missing)} of the model's {len(observed)} activation tensors "
            f"(e.g. {missing[0]!r}; an older trtdeploy measured only the Q/DQ tensors). "
            "Pass --recalibrate to measure them"
        )
    log.info("reusing %s (same model, calibration data and method): no statistics pass", scales_path)
    return _Ranges(amax={k: float(v) for k, v in prev["amax"].items()},
                   maxima={k: float(v) for k, v in prev.get("max", {}).items()}, reused=True,
                   auto=prev.get("auto") if want["method"] == AUTO_METHOD else None)


def _measure(model, observed: Sequence[str], dataset, batch_size: int, config: CalibrationConfig,
             score: Callable[[Mapping[str, float]], Any] | None = None) -> _Ranges:
    """One statistics pass over the set, then the method's thresholds; with `score` (--method
    auto: amax -> the evaluation of the Q/DQ model those ranges make), every candidate
    method's thresholds from the same histograms, the best kept."""
    from .auto import choose_method
    from .ranges import compute_amax
    from .stats import collect_statistics

    start = time.perf_counter()
    collector = collect_statistics(model, observed, dataset.batches(batch_size, desc=None),  # it shows progress
                                   total=-(-len(dataset) // batch_size))
    auto, amax = (choose_method(collector, config.num_bins, score) if score is not None
                  else (None, compute_amax(collector, config)))
    # The true maxima (not the clipped thresholds): FP16 conversion checks overflow with them.
    return _Ranges(amax=amax, maxima={t: collector.amax(t) for t in observed},
                   reused=False, seconds=time.perf_counter() - start, auto=auto)


def _evaluation_sets(bundle: Bundle, r: CalibrationRequest):
    """(calibration set, EvalSet, its record) when INT8 is judged (on `r.eval_data`, or on a part of
    `r.data` held out), else (calibration set, None, None)."""
    from .fidelity import EvalSet
    from .selection import evaluation_data

    def load(path: Any, num: int | None):
        return _load_set(bundle, path, num, r.seed, r.skip_bad)

    if not r.judged:
        return load(r.data, r.num_images), None, None
    if not bundle.class_outputs:
        raise UsageError(f"{bundle.root}: --max-drop, --method auto and --eval-data judge INT8 by top-1 of a "
                         f"[N, classes] output, and this bundle outputs feature maps only "
                         f"({', '.join(o.name for o in bundle.outputs)}); calibrate it without them")
    data_set, held_out, record = evaluation_data(load, r.data, r.eval_data, r.num_images, r.seed)
    evalset = EvalSet(held_out, bundle.onnx_path("fp32"), output=bundle.class_outputs[0],
                      label_offset=bundle.label_offset, batch_size=r.batch_size)
    return data_set, evalset, record


def _ranges(bundle: Bundle, model, plan, observed: Sequence[str], dataset, want: Mapping[str, Any],
            config: CalibrationConfig, evalset, batch_size: int, recalibrate: bool) -> tuple[_Ranges, CalibrationConfig]:
    """The ranges, measured or reused from scales.json, and the configuration they are chosen
    with (for --method auto the candidate that scored best on `evalset`)."""
    from .auto import chosen_config
    from .qdq import insert_qdq

    scales_path = bundle.path(SCALES_JSON)
    prev = None if recalibrate else _read_previous(bundle)  # --recalibrate replaces it unread
    auto = want["method"] == AUTO_METHOD
    score = (lambda amax: evalset.evaluate(insert_qdq(model, plan, amax).SerializeToString())) if auto else None
    ranges = (_reuse(scales_path, prev, want, observed) if prev is not None and not recalibrate
              else _measure(model, observed, dataset, batch_size, config, score))
    return ranges, (chosen_config(ranges.auto, config, scales_path) if auto else config)


def _commit(up: BundleUpdate, int8_bytes: bytes, scales: dict[str, Any], cache_amax: dict[str, float],
            trt_version: str, algorithm: str, dataset_manifest: dict[str, Any],
            entry: dict[str, Any]) -> dict[str, str]:
    """The four files and the manifest's precision.int8, committed as one update; their hashes."""
    up.write_bytes(INT8_ONNX, int8_bytes)
    up.write_json(SCALES_JSON, scales)
    up.write_bytes(TRT_CACHE, format_cache(cache_amax, version=trt_version, algorithm=algorithm))
    up.write_json(DATASET_JSON, dataset_manifest)
    up.bundle.manifest.setdefault("precision", {})["int8"] = entry
    return up.commit()


def _manifest_entry(config: CalibrationConfig, algorithm: str, want: Mapping[str, Any], seed: int, plan,
                    trt_version: str, num_observed: int) -> dict[str, Any]:
    """The manifest's precision.int8: how model.int8.onnx and trt.cache were made (`config`: the
    method used, auto's choice for --method auto)."""
    return {
        "method": config.method,
        "algorithm": algorithm,
        "percentile": config.percentile if config.method == "percentile" else None,
        "num_bins": config.num_bins,
        "num_images": want["num_images"],
        "seed": seed,
        "keep_fp32": list(plan.keep_fp32),
        "num_qdq_tensors": plan.num_qdq_tensors,
        "num_qdq_activations": len(plan.activations),
        "num_qdq_weights": len(plan.weights),
        "dataset_sha256": want["dataset_sha256"],
        "trt_cache_version": trt_version,
        "num_cache_tensors": num_observed,
        "onnx": INT8_ONNX,
    }


@dataclass(frozen=True)
class CalibrationRequest:
    """What one `calibrate` call does.

    `data`: the calibration inputs (a path deploy.data reads, or a loaded InputSet), `num_images`
    of them chosen by `seed`, unreadable images skipped with `skip_bad`. `method`: a range
    method of deploy.int8, or "auto"; `percentile` is used by the percentile method only.
    `keep_fp32`: ONNX node names kept in high precision. `recalibrate`: replace ranges made for
    other inputs (else refused). `trt_version` goes into trt.cache's header for tools that read
    the file themselves (trtexec --calib); `trtdeploy build` serves the cache under the header
    of the TensorRT it runs. `max_drop` (points of top-1, or of top-1 agreement with FP32
    without labels) and method "auto" judge INT8 against FP32 on `eval_data`, else on a
    held-out part of `data`; `eval_data` alone scores the model written.
    """

    data: Any
    method: str = "entropy"
    num_images: int | None = None
    seed: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    keep_fp32: tuple[str, ...] = ()
    recalibrate: bool = False
    skip_bad: bool = False
    trt_version: str = DEFAULT_VERSION
    percentile: float = 99.99
    num_bins: int | None = None
    max_drop: float | None = None
    eval_data: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_fp32", tuple(self.keep_fp32))
        if self.batch_size < 1:
            raise UsageError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.num_images is not None and self.num_images < 1:
            raise UsageError(f"the number of images must be at least 1, got {self.num_images}")
        if self.max_drop is not None and not (0 <= self.max_drop < float("inf")):  # NaN too
            raise UsageError(f"the accuracy budget must be a finite number of points >= 0, got {self.max_drop}")
        trt_version_code(self.trt_version)  # a bad version fails before the statistics pass

    @property
    def judged(self) -> bool:
        """Whether INT8 is scored against FP32 on evaluation images."""
        return self.method == AUTO_METHOD or self.max_drop is not None or self.eval_data is not None


def calibrate(bundle: Bundle, request: CalibrationRequest) -> CalibrationResult:
    """Calibrate `bundle` as `request` says and write the INT8 artifacts, as one update under the
    bundle's lock. Raises DataError for an empty or unreadable set, CalibrationError for a stale
    scales.json (unless `recalibrate`), UsageError for unknown node names; the bundle is
    unchanged then."""
    start = time.perf_counter()
    with bundle.update("calibrate") as up:
        return _calibrate(up, request, start)


def _calibrate(up: BundleUpdate, r: CalibrationRequest, start: float) -> CalibrationResult:
    """calibrate(), with the bundle held for the update."""
    from deploy.onnx_graph import load_model
    from deploy.runners.ort import make_session

    from .budget import keep_within_budget
    from .qdq import insert_qdq, observed_tensors, plan_qdq, qdq_activations
    from .selection import final_evaluation, record

    bundle = up.bundle
    # auto's candidates are configured in calibration.auto; this config checks percentile and bins.
    config = CalibrationConfig(method="entropy" if r.method == AUTO_METHOD else r.method, percentile=r.percentile,
                               num_bins=r.num_bins or TRT_NUM_BINS)
    fp32_path = bundle.onnx_path("fp32")
    model = load_model(fp32_path, ONNX_FILES["fp32"], bundle.root)
    plan = plan_qdq(model, keep_fp32=r.keep_fp32)  # unknown node names fail before data is read
    # One statistics pass serves both files: model.int8.onnx needs the Q/DQ tensors' ranges,
    # trt.cache every activation's (the Q/DQ tensors are among them).
    observed = list(dict.fromkeys([*observed_tensors(model), *qdq_activations(plan)]))

    dataset, evalset, evaluation = _evaluation_sets(bundle, r)
    want = _inputs_record(fp32_path, dataset, config, r.method)
    ranges, config = _ranges(bundle, model, plan, observed, dataset, want, config, evalset, r.batch_size,
                             r.recalibrate)
    algorithm = calibration_algorithm_for(config.method)
    budget = None if r.max_drop is None else keep_within_budget(bundle, model, ranges.amax, evalset, r.max_drop,
                                                                r.keep_fp32)
    if budget is not None:
        plan = plan_qdq(model, keep_fp32=[*r.keep_fp32, *budget.chosen.nodes])

    int8_bytes = insert_qdq(model, plan, ranges.amax).SerializeToString()
    make_session(int8_bytes)  # refuse a model ONNX Runtime cannot load before writing anything
    if evalset is not None:
        evaluation["int8"] = final_evaluation(evalset, int8_bytes, ranges.auto, budget).to_json()
    scales = {"format": SCALES_FORMAT, **want, "algorithm": algorithm, "seed": r.seed,
              "keep_fp32": list(plan.keep_fp32), "amax": ranges.amax, "max": ranges.maxima}
    entry = _manifest_entry(config, algorithm, want, r.seed, plan, r.trt_version, len(observed))
    record(scales, entry, r.method, evaluation, ranges.auto, budget)
    files = _commit(up, int8_bytes, scales, {t: ranges.amax[t] for t in observed}, r.trt_version, algorithm,
                    dataset.manifest(), entry)
    result = CalibrationResult(
        method=config.method, algorithm=algorithm, num_images=want["num_images"], num_observed=len(observed),
        num_qdq_activations=len(plan.activations), num_qdq_tensors=plan.num_qdq_tensors, reused=ranges.reused,
        seconds=time.perf_counter() - start, statistics_seconds=ranges.seconds, files=files,
        int8_path=bundle.path(INT8_ONNX), dataset=dataset, auto=ranges.auto, budget=budget, evaluation=evaluation,
    )
    log.info("calibrated %d tensors (%s, %d images) in %.1f s", result.num_observed, r.method,
             result.num_images, result.seconds)
    return result


# --- accuracy ------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    """Top-1 of each model against labels, and top-1 agreement of each with the first."""

    num_images: int
    top1: dict[str, float]
    agreement: dict[str, float]


def evaluate_top1(models: Mapping[str, str | Path], samples: Iterable[tuple[Mapping[str, np.ndarray], np.ndarray]],
                  output: str, label_offset: int = 0) -> Accuracy:
    """Top-1 accuracy of several ONNX files over (feed, labels) batches; agreement with the first model.

    `label_offset` is subtracted from the predicted class (1 for 1001-class slim models).
    Agreement is accuracy against the first model's predictions taken as labels.
    """
    from deploy.parity import AccuracyCounter
    from deploy.runners.ort import make_session

    from .fidelity import run_rows

    sessions = {name: make_session(path) for name, path in models.items()}
    first = next(iter(models))
    accuracy = {name: AccuracyCounter(label_offset) for name in models}
    agreement = {name: AccuracyCounter() for name in models}
    for feed, labels in samples:
        outputs = {n: run_rows(s, output, feed) for n, s in sessions.items()}
        predicted = np.argmax(outputs[first], axis=-1)
        for n, logits in outputs.items():
            accuracy[n].update(logits, labels)
            agreement[n].update(logits, predicted)
    total = accuracy[first].count
    if total == 0:
        raise CalibrationError("no labelled images to evaluate")
    return Accuracy(total, {n: c.top1 / total for n, c in accuracy.items()},
                    {n: c.top1 / total for n, c in agreement.items()})


def evaluate_accuracy(bundle: Bundle, data_path: str | Path, precisions: Sequence[str] = ("fp32", "int8"),
                      batch_size: int = DEFAULT_BATCH_SIZE, num_images: int | None = None, seed: int = 0,
                      skip_bad: bool = False) -> Accuracy | None:
    """Top-1 of the bundle's ONNX files (ONNX Runtime) on a labelled set; None when the set has no
    labels or the bundle no [N, num_classes] output.

    `data_path` may be a loaded set (`CalibrationResult.dataset`: used as it is, so its
    messages are not logged twice); `num_images`/`seed` pick the same subset calibration picks.
    Agreement is with the first precision.
    """
    if not bundle.class_outputs:  # a backbone's feature maps: no classes to be accurate about
        return None
    dataset = _load_set(bundle, data_path, num_images, seed, skip_bad)
    if dataset.labels is None:
        return None
    models = {p: bundle.onnx_path(p) for p in precisions}
    return evaluate_top1(models, dataset.batches_with_labels(batch_size, desc="accuracy"),
                         output=bundle.class_outputs[0], label_offset=bundle.label_offset)
