"""The parity run: every backend's outputs against the FP32 reference, judged per precision.

The reference is TensorFlow run on the same inputs when it can run here; otherwise the TF
outputs stored in `reference.npz` at export time (so a device with neither TensorFlow nor
ONNX Runtime can still check its engines), or, for an input set without TensorFlow, the
first FP32 backend that runs (`ort-fp32`, then `trt-fp32`).

All backends see the same batches, one batch at a time (split for an engine whose profile
takes fewer), and every statistic is streamed (see `metrics`). Accuracy is judged on the main
output (the first `[N, num_classes]` output) where labels exist; a bundle whose outputs are all
feature maps (a backbone) has no accuracy, only the per-output metrics. `delta_top1_vs_fp32` is
in percentage points against the reference's own accuracy on the same images (negative: worse).

Needs only numpy at import; a backend that cannot run here is listed as skipped with the reason.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..bundle import REFERENCE_NPZ, Bundle
from ..bundle.reference import load_reference_npz
from ..env import machine_info
from ..errors import DataError, DeployError, UsageError
from ..progress import progress
from ..runners import backend_precision
from ..runners.base import Runner
from . import backends as _backends
from .engine_layers import engine_layers
from .int8_choice import Int8Choice
from .inputs import Batch, folder_batches, npz_batches
from .layer_timing import load_profiles
from .per_layer import LayerError, calibration_source, onnx_nodes as read_onnx_nodes, per_layer_section
from .metrics import Accuracy, AccuracyCounter, OutputComparison, logits_pair
from .request import ParityRequest
from .result import ERROR, RAN, SKIPPED, BackendEntry, BundleInfo, DataInfo, ParityResult, Reference
from .thresholds import ThresholdOverride, resolve_thresholds

log = logging.getLogger("trtdeploy.parity")

TF_NOTE = "TensorFlow SavedModel, run on the same inputs"


def main_output(bundle: Bundle) -> str:
    """The output accuracy and histograms are judged on: the first [N, num_classes] output, else
    (a backbone's feature maps) the first output, judged by its errors and cosines only."""
    classes = bundle.class_outputs
    return classes[0] if classes else bundle.outputs[0].name


def _start(backend: str, runner: Runner | _backends.Skip, stack: contextlib.ExitStack) -> Runner | BackendEntry:
    """Activate a runner; an environment gap becomes a skip, anything else an error."""
    precision = backend_precision(backend)
    if isinstance(runner, _backends.Skip):
        return BackendEntry.skipped(precision, runner.reason)
    try:
        stack.enter_context(runner)
    except (DeployError, ImportError, OSError) as e:
        return BackendEntry.skipped(precision, str(e))
    except Exception as e:  # a bug or a broken artifact: shown as a failure, not hidden as a skip
        return BackendEntry.error(precision, f"could not start: {type(e).__name__}: {e}")
    return runner


def _start_all(names: Sequence[str], bundle: Bundle, request: ParityRequest,
               stack: contextlib.ExitStack) -> tuple[dict[str, Runner], dict[str, BackendEntry]]:
    """The runners that started, and an entry for each backend that did not."""
    runners: dict[str, Runner] = {}
    entries: dict[str, BackendEntry] = {}
    for b in names:
        started = _start(b, request.make_runner(b, bundle), stack)
        if isinstance(started, Runner):
            runners[b] = started
        else:
            entries[b] = started
            log.debug("parity: %s %s: %s", b, started.status, started.reason)
    return runners, entries


@dataclass(frozen=True)
class _Chosen:
    name: str
    runner: Runner | None  # None: the outputs stored in reference.npz
    note: str


def _choose_reference(bundle: Bundle, names: list[str], runners: dict[str, Runner],
                      entries: dict[str, BackendEntry], request: ParityRequest,
                      stack: contextlib.ExitStack, have_stored: bool) -> _Chosen:
    """TF if it runs here; else the stored TF outputs; else (input set) an FP32 backend."""
    if "tf" in runners:
        return _Chosen("tf", runners["tf"], TF_NOTE)
    if "tf" in entries:
        tf_why = entries["tf"].reason
    else:
        started = _start("tf", request.make_runner("tf", bundle), stack)
        if isinstance(started, Runner):
            return _Chosen("tf", started, TF_NOTE)
        tf_why = started.reason
    if have_stored:
        return _Chosen(REFERENCE_NPZ, None, f"TF outputs stored at export (TensorFlow not used here: {tf_why})")
    for b in ("ort-fp32", "trt-fp32"):
        if b in runners:
            return _Chosen(b, runners[b], f"{b} (TensorFlow not usable here: {tf_why})")
        if b not in names:
            started = _start(b, request.make_runner(b, bundle), stack)
            if isinstance(started, Runner):
                return _Chosen(b, started, f"{b} (TensorFlow not usable here: {tf_why})")
    raise UsageError(
        f"no FP32 reference for --data images: TensorFlow not usable ({tf_why}) and neither ort-fp32 nor "
        "trt-fp32 runs here; drop --data to compare on reference.npz"
    )


class _Tally:
    """The streamed comparisons of every running backend against the reference, batch by batch."""

    def __init__(self, bundle: Bundle, runners: Mapping[str, Runner], main: str):
        self.outputs = [o.name for o in bundle.outputs]
        self.main = main
        self.comps = {b: {o: OutputComparison(o) for o in self.outputs} for b in runners}
        self.accs = {b: AccuracyCounter(bundle.label_offset) for b in runners}
        self.ref_acc = AccuracyCounter(bundle.label_offset)
        self.missing: dict[str, set[str]] = {b: set() for b in runners}
        self.seen = 0
        # Accuracy needs class scores: a backbone's feature maps are judged by errors and cosines.
        self.have_labels = main in bundle.class_outputs

    def add(self, batch: Batch, reference: Runner | None, runners: dict[str, Runner],
            entries: dict[str, BackendEntry]) -> None:
        """Run `batch` through every runner; one that fails leaves `runners` for an error entry."""
        done = self.seen
        self.seen += len(next(iter(batch.feed.values())))
        ref_out = batch.reference if reference is None else reference.infer_any_batch(batch.feed)
        self.have_labels = self.have_labels and batch.labels is not None
        if self.have_labels:
            self.ref_acc.update(ref_out[self.main], batch.labels)
        for b, runner in list(runners.items()):
            try:
                out = ref_out if runner is reference else runner.infer_any_batch(batch.feed)
                for o in self.outputs:
                    if o in out:
                        self.comps[b][o].update(ref_out[o], out[o], logits_pair(o, ref_out, out))
                    else:
                        self.missing[b].add(o)
                if self.have_labels and self.main in out:
                    self.accs[b].update(out[self.main], batch.labels)
            except Exception as e:  # one backend failing must not stop the others' report
                entries[b] = BackendEntry.error(backend_precision(b),
                                                f"failed after {done} images: {type(e).__name__}: {e}")
                del runners[b]

    def reference_accuracy(self) -> Accuracy | None:
        return self.ref_acc.summary() if self.have_labels else None

    def judge(self, backend: str, overrides: Sequence[ThresholdOverride], is_reference: bool,
              engine: str | None) -> BackendEntry:
        """The backend's entry: metrics per output, accuracy, and every threshold it missed."""
        ref_accuracy = self.reference_accuracy()
        acc = self.accs[backend].summary() if self.have_labels else None
        if acc is not None and ref_accuracy is not None:
            acc = acc.against(ref_accuracy)
        delta = acc.delta_top1_vs_fp32 if acc is not None else None
        missing = self.missing[backend]
        failures = [f"output {o!r} missing from the backend's outputs" for o in sorted(missing)]
        thresholds, metrics = {}, {}
        for o, comp in self.comps[backend].items():
            t = thresholds[o] = resolve_thresholds(backend, o, overrides)
            if o in missing:
                continue
            m = metrics[o] = comp.summary()
            failures += [f"{o}: {f}" for f in t.check(m, delta if o == self.main else None)]
        return BackendEntry(precision=backend_precision(backend), status=RAN, passed=not failures,
                            thresholds=thresholds, outputs=metrics, accuracy=acc, failures=tuple(failures),
                            is_reference=is_reference, histogram=self.comps[backend][self.main].histogram(),
                            engine=engine)


def _verdict(entries: Mapping[str, BackendEntry]) -> tuple[bool, str]:
    ran = [e for e in entries.values() if e.status != SKIPPED]
    failed = [b for b, e in entries.items() if e.status != SKIPPED and not e.passed]
    errored = [b for b in failed if entries[b].status == ERROR]
    missed = [b for b in failed if b not in errored]
    if not ran:
        return False, "FAIL: no backend ran here, so nothing was compared (see why each was skipped)"
    if failed:
        why = ([f"{', '.join(missed)} missed {'its' if len(missed) == 1 else 'their'} thresholds"] if missed else []) \
            + ([f"{', '.join(errored)} stopped with an error"] if errored else [])
        return False, "FAIL: " + "; ".join(why)
    return True, f"PASS: all {len(ran)} backend(s) that ran met their thresholds"


def _checked_overrides(bundle: Bundle, thresholds: Sequence[ThresholdOverride]) -> list[ThresholdOverride]:
    overrides = list(thresholds)
    outputs = [o.name for o in bundle.outputs]
    unknown = sorted({o.output for o in overrides if o.output is not None and o.output not in outputs})
    if unknown:
        raise UsageError(f"threshold for unknown output(s) {unknown}; the bundle's outputs are {outputs}")
    return overrides


@dataclass(frozen=True)
class _Source:
    """Where the batches come from, as the result's data section names it."""

    name: str
    seed: int | None = None
    skipped: tuple[str, ...] | None = None


def _batches(bundle: Bundle, npz: Mapping[str, np.ndarray] | None,
             request: ParityRequest) -> tuple[_Source, Iterable[Batch]]:
    """reference.npz's batches when `npz` is given, else those of the request's input set."""
    r = request
    if npz is not None:
        total, batches = npz_batches(bundle, npz, r.batch_size, r.num_images)
        return _Source(REFERENCE_NPZ), progress(batches, desc="parity", total=-(-total // r.batch_size), unit="batch")
    skipped, batches = folder_batches(bundle, r.data, r.batch_size, r.num_images, r.seed, r.skip_bad)
    return _Source(str(r.data), r.seed, tuple(skipped)), batches


def _bundle_info(bundle: Bundle) -> BundleInfo:
    model = bundle.model
    return BundleInfo(path=str(bundle.root), model=model.name, weights=model.weights, image_size=model.image_size,
                      trained_image_size=model.trained_image_size, warnings=tuple(bundle.warnings))


def run_parity(bundle: Bundle, request: ParityRequest = ParityRequest(),
               per_layer: Mapping[str, Mapping[str, LayerError]] | None = None,
               onnx_nodes: Sequence[tuple[str, str]] | None = None) -> ParityResult:
    """Run every backend of `request` on the same inputs and judge it against the FP32 reference
    (no report written: `deploy.parity.pipeline.parity_report` does the whole command).

    `per_layer`: {backend or precision: compare_intermediates(...)} to rank layers by;
    `onnx_nodes`: (name, op_type) of the FP32 ONNX's nodes for the calibrate command (read
    from model.onnx when onnx is installed and they are not given).
    The result also carries what each TensorRT engine that ran runs (its layers file) and the
    bundle's `trtdeploy profile` results (BUNDLE/reports/profile.*.json), for the report.
    """
    names = request.names
    overrides = _checked_overrides(bundle, request.thresholds)
    engine_map = dict(request.engines)
    data, batch_size = request.data, request.batch_size
    main = main_output(bundle)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with contextlib.ExitStack() as stack:
        runners, entries = _start_all(names, bundle, request, stack)
        npz = load_reference_npz(bundle) if data is None else None
        ref = _choose_reference(bundle, names, runners, entries, request, stack, have_stored=npz is not None)
        source, batches = _batches(bundle, npz, request)
        tally = _Tally(bundle, runners, main)
        for batch in batches:
            tally.add(batch, ref.runner, runners, entries)
        if tally.seen == 0:
            raise DataError(f"{data if data is not None else bundle.path(REFERENCE_NPZ)}: no images to compare")
    for b in runners:
        engine = str(_backends.engine_path(bundle, backend_precision(b), engine_map)) \
            if b.startswith("trt-") else None
        entries[b] = tally.judge(b, overrides, is_reference=(b == ref.name), engine=engine)
    ordered = {b: entries[b] for b in names}
    passed, verdict = _verdict(ordered)
    info = DataInfo(source=source.name, num_images=tally.seen, batch_size=batch_size, labels=tally.have_labels,
                    label_offset=bundle.label_offset, main_output=main, outputs=tuple(tally.outputs),
                    seed=source.seed, skipped=source.skipped)
    layers = None
    if per_layer:
        nodes = onnx_nodes if onnx_nodes is not None else read_onnx_nodes(bundle)
        layers = per_layer_section(per_layer, bundle.root, onnx_nodes=nodes,
                                   calibration_data=calibration_source(bundle))
    return ParityResult(
        reference=Reference(ref.name, ref.note, tally.reference_accuracy()), passed=passed, verdict=verdict,
        backends=ordered, environment=machine_info(), data=info, bundle=_bundle_info(bundle), created=created,
        per_layer=layers, engine_layers=engine_layers((b, e.engine) for b, e in ordered.items() if e.engine),
        layer_timing=load_profiles(bundle.reports_dir),  # `trtdeploy profile` writes there
        int8_choice=Int8Choice.from_bundle(bundle))
