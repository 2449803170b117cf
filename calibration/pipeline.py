"""`trtdeploy calibrate`: calibration set -> statistics -> ranges -> Q/DQ model + TensorRT cache.

Stages (each a small function of the previous artifact)::

    CalibrationSet ──► collect_statistics (ORT, FP32 model, every float activation, one pass)
                   ──► compute_amax (entropy | percentile | max | mse)
                   ──► insert_qdq (the planned tensors) ─► model.int8.onnx
                   ──► calibration/scales.json, calibration/trt.cache (every activation),
                       calibration/dataset.json

`calibration/scales.json` remembers what the ranges were computed from (model hash,
calibration-set hash, method). Running again with the same inputs reuses the ranges (no
statistics pass); different inputs are refused unless `recalibrate=True`: a stale range
silently applied to another model or data set is the failure this guards against.

Nothing is written until every artifact is built and checked (the Q/DQ model passes
onnx.checker and loads in ONNX Runtime); each file is then replaced atomically.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from deploy.bundle import Bundle
from deploy.errors import CalibrationError
from deploy.fsutil import atomic_path, atomic_write_bytes, atomic_write_json, sha256_file

log = logging.getLogger(__name__)

SCALES_FORMAT = 1
SCALES = "calibration/scales.json"
TRT_CACHE = "calibration/trt.cache"
DATASET = "calibration/dataset.json"
INT8_ONNX = "model.int8.onnx"
DEFAULT_BATCH_SIZE = 16
# The header version written into trt.cache (JetPack 6's TensorRT). `trtdeploy build` does not
# depend on it: it serves the cache under the running TensorRT's version.
DEFAULT_CACHE_TRT_VERSION = "10.3.0"


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
    # --method auto (calibration.auto.AutoResult; its record when reused) and --max-drop
    # (calibration.budget.BudgetResult), with the evaluation set's record.
    auto: Any = field(default=None, repr=False, compare=False)
    budget: Any = field(default=None, repr=False, compare=False)
    evaluation: dict[str, Any] | None = None


def _load_set(bundle: Bundle, data_path: Any, num_images: int | None, seed: int, skip_bad: bool):
    from deploy.data.inputs import CalibrationSet
    from deploy.data.preprocess import Preprocess

    if isinstance(data_path, CalibrationSet):
        return data_path

    preprocess = Preprocess.from_json(bundle.preprocessing)
    # Choosing the subset inside from_path decodes only the chosen images, not the whole folder.
    return CalibrationSet.from_path(data_path, input=bundle.inputs[0], preprocess=preprocess,
                                    skip_bad=skip_bad, skip_option="--skip-bad", num=num_images, seed=seed)


def _main_output(bundle: Bundle) -> str:
    from deploy.parity import main_output

    return main_output(bundle)


def _read_previous(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        prev = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CalibrationError(f"{path}: unreadable ({e}); delete it or pass --recalibrate") from None
    if not isinstance(prev, dict) or prev.get("format") != SCALES_FORMAT or not isinstance(prev.get("amax"), dict):
        raise CalibrationError(f"{path}: not a scales file this version writes; pass --recalibrate to replace it")
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


def calibrate(
    bundle: Bundle,
    data_path: str | Path,
    method: str = "entropy",
    num_images: int | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    exclude: Sequence[str] = (),
    recalibrate: bool = False,
    skip_bad: bool = False,
    trt_version: str = DEFAULT_CACHE_TRT_VERSION,
    percentile: float = 99.99,
    num_bins: int | None = None,
    max_drop: float | None = None,
    eval_data: str | Path | None = None,
) -> CalibrationResult:
    """Calibrate `bundle` on the images at `data_path` and write the INT8 artifacts.

    `percentile` is recorded and used for method "percentile" only. `trt_version` goes into
    trt.cache's header for tools that read the file themselves (trtexec --calib); `trtdeploy
    build` serves the cache under the header of the TensorRT it runs. Raises DataError for an
    empty or unreadable set, CalibrationError for a stale scales.json (unless
    `recalibrate`), UsageError for unknown --exclude names; the bundle is unchanged then.

    `method="auto"` and `max_drop` (points of accuracy, or of top-1 agreement without labels)
    evaluate INT8 against FP32 on `eval_data`, by default a held-out part of `data_path`
    (calibration.selection); see calibration.auto and calibration.budget. `eval_data` alone
    scores the model written on it.
    """
    import onnx

    from deploy.runners.ort import make_session

    from .auto import AUTO, choose_method, chosen_config
    from .budget import keep_within_budget
    from .cache import calibration_algorithm_for, write_cache
    from .calibrators import TRT_NUM_BINS, CalibrationConfig, compute_amax
    from .fidelity import EvalSet
    from .qdq import insert_qdq, observed_tensors, plan_qdq, qdq_activations
    from .selection import evaluation_data, final_evaluation, record
    from .stats import collect_statistics

    start = time.perf_counter()
    auto = method == AUTO
    # auto's candidates are configured in calibration.auto; this config checks percentile and bins.
    config = CalibrationConfig(method="entropy" if auto else method, percentile=percentile,
                               num_bins=num_bins or TRT_NUM_BINS)
    fp32_path = bundle.onnx_path("fp32")
    bundle.verify_file("model.onnx")
    model = onnx.load(str(fp32_path))
    plan = plan_qdq(model, exclude=exclude)  # unknown --exclude names fail before data is read
    # One statistics pass serves both files: model.int8.onnx needs the Q/DQ tensors' ranges,
    # trt.cache every activation's (the Q/DQ tensors are among them).
    observed = list(dict.fromkeys([*observed_tensors(model), *qdq_activations(plan)]))

    evalset = evaluation = None
    if auto or max_drop is not None or eval_data is not None:
        dataset, held_out, evaluation = evaluation_data(
            lambda path, num: _load_set(bundle, path, num, seed, skip_bad), data_path, eval_data, num_images, seed)
        evalset = EvalSet(held_out, fp32_path, output=_main_output(bundle), label_offset=bundle.label_offset,
                          batch_size=batch_size)
    else:
        dataset = _load_set(bundle, data_path, num_images, seed, skip_bad)
    want = {
        "model_sha256": sha256_file(fp32_path),
        "dataset_sha256": dataset.sha256,
        "num_images": len(dataset),
        "method": method,
        "percentile": config.percentile if method == "percentile" else None,
        "num_bins": config.num_bins,
    }

    scales_path = bundle.path(SCALES)
    prev = _read_previous(scales_path)
    amax: dict[str, float] | None = None
    if prev is not None and not recalibrate:
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
        amax = {k: float(v) for k, v in prev["amax"].items()}
        maxima = {k: float(v) for k, v in prev.get("max", {}).items()}
        chosen = prev.get("auto") if auto else None
        log.info("reusing %s (same model, calibration data and method): no statistics pass", scales_path)

    reused = amax is not None
    stats_seconds = 0.0
    if amax is None:
        t0 = time.perf_counter()
        collector = collect_statistics(model, observed, dataset.batches(batch_size, desc="calibration statistics"),
                                       total=-(-len(dataset) // batch_size))
        if auto:
            chosen, amax = choose_method(collector, config.num_bins,
                                         lambda a: evalset.evaluate(insert_qdq(model, plan, a).SerializeToString()))
        else:
            chosen, amax = None, compute_amax(collector, config)
        # The true maxima (not the clipped thresholds): FP16 conversion checks overflow with them.
        maxima = {t: collector.amax(t) for t in observed}
        stats_seconds = time.perf_counter() - t0

    if auto:
        config = chosen_config(chosen, config, scales_path)
    algorithm = calibration_algorithm_for(config.method)
    budget = None
    if max_drop is not None:
        budget = keep_within_budget(bundle, model, amax, evalset, max_drop, exclude)
        plan = plan_qdq(model, exclude=[*exclude, *budget.chosen.nodes])

    int8_model = insert_qdq(model, plan, amax)
    int8_bytes = int8_model.SerializeToString()
    make_session(int8_bytes)  # refuse a model ONNX Runtime cannot load before writing anything
    if evalset is not None:
        evaluation["int8"] = final_evaluation(evalset, int8_bytes, chosen, budget).to_json()
    observed_amax = {t: amax[t] for t in observed}
    scales = {"format": SCALES_FORMAT, **want, "algorithm": algorithm, "seed": seed,
              "exclude": list(plan.exclude), "amax": amax, "max": maxima}
    dataset_manifest = dataset.manifest()
    precision_int8: dict[str, Any] = {}
    record(scales, precision_int8, method, evaluation, chosen, budget)

    # Everything is built: write all files to temporaries beside their final names, and
    # rename them only once every one is written (a failure removes them all). The manifest
    # goes last.
    with contextlib.ExitStack() as stack:
        tmp = {rel: stack.enter_context(atomic_path(bundle.path(rel))) for rel in (INT8_ONNX, SCALES, TRT_CACHE, DATASET)}
        atomic_write_bytes(tmp[INT8_ONNX], int8_bytes)
        atomic_write_json(tmp[SCALES], scales)
        write_cache(tmp[TRT_CACHE], observed_amax, version=trt_version, algorithm=algorithm)
        atomic_write_json(tmp[DATASET], dataset_manifest)
    files = {rel: bundle.record_file(rel) for rel in (INT8_ONNX, SCALES, TRT_CACHE, DATASET)}
    precision = bundle.manifest.setdefault("precision", {})
    precision["int8"] = {
        "method": config.method,
        "algorithm": algorithm,
        "percentile": config.percentile if config.method == "percentile" else None,
        "num_bins": config.num_bins,
        "num_images": want["num_images"],
        "seed": seed,
        "exclude": list(plan.exclude),
        "num_qdq_tensors": plan.num_qdq_tensors,
        "num_qdq_activations": len(plan.activations),
        "num_qdq_weights": len(plan.weights),
        "dataset_sha256": want["dataset_sha256"],
        "trt_cache_version": trt_version,
        "num_cache_tensors": len(observed),
        "onnx": INT8_ONNX,
        **precision_int8,
    }
    bundle.save()
    result = CalibrationResult(
        method=config.method, algorithm=algorithm, num_images=want["num_images"], num_observed=len(observed),
        num_qdq_activations=len(plan.activations),
        num_qdq_tensors=plan.num_qdq_tensors, reused=reused,
        seconds=time.perf_counter() - start, statistics_seconds=stats_seconds, files=files,
        int8_path=bundle.path(INT8_ONNX), dataset=dataset, auto=chosen, budget=budget, evaluation=evaluation,
    )
    log.info("calibrated %d tensors (%s, %d images) in %.1f s", result.num_observed, method,
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
    """
    from deploy.runners.ort import make_session

    sessions = {name: make_session(path) for name, path in models.items()}
    names = list(models)
    correct = dict.fromkeys(names, 0)
    agree = dict.fromkeys(names, 0)
    total = 0
    for feed, labels in samples:
        preds = {n: np.argmax(s.run([output], dict(feed))[0], axis=-1) - label_offset for n, s in sessions.items()}
        labels = np.asarray(labels)
        for n in names:
            correct[n] += int(np.sum(preds[n] == labels))
            agree[n] += int(np.sum(preds[n] == preds[names[0]]))
        total += len(labels)
    if total == 0:
        raise CalibrationError("no labelled images to evaluate")
    return Accuracy(total, {n: correct[n] / total for n in names}, {n: agree[n] / total for n in names})



def evaluate_accuracy(bundle: Bundle, data_path: str | Path, precisions: Sequence[str] = ("fp32", "int8"),
                      batch_size: int = DEFAULT_BATCH_SIZE, num_images: int | None = None, seed: int = 0,
                      skip_bad: bool = False) -> Accuracy | None:
    """Top-1 of the bundle's ONNX files (ONNX Runtime) on a labelled set; None when it has no labels.

    `data_path` may be a loaded set (`CalibrationResult.dataset`: used as it is, so its
    messages are not logged twice); `num_images`/`seed` pick the same subset calibration picks. Agreement is with the first
    precision.
    """
    dataset = _load_set(bundle, data_path, num_images, seed, skip_bad)
    if dataset.labels is None:
        return None
    models = {p: bundle.onnx_path(p) for p in precisions}
    return evaluate_top1(models, dataset.batches_with_labels(batch_size, desc="accuracy"),
                         output=bundle.outputs[0].name, label_offset=bundle.label_offset)
