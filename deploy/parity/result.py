"""The parity result, typed: what `run_parity` returns, the report renders and the CLI prints.

`ParityResult.to_json()` is parity.json. Every part is a frozen dataclass; mappings inside
(backends, outputs, layers) keep the order they were run and reported in.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..env import MachineInfo
from .engine_layers import EngineLayers
from .int8_choice import Int8Choice
from .layer_timing import EngineProfile
from .per_layer import LayerSection
from .metrics import Accuracy, Histogram, OutputMetrics
from .thresholds import Thresholds

RAN, SKIPPED, ERROR = "ran", "skipped", "error"


@dataclass(frozen=True)
class Reference:
    """What every backend was compared with: TF run on the same inputs, the TF outputs stored
    in reference.npz, or an FP32 backend; its own accuracy where labels exist."""

    name: str
    note: str
    accuracy: Accuracy | None
    precision: str = "fp32"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "precision": self.precision, "note": self.note,
                "accuracy": None if self.accuracy is None else self.accuracy.to_json()}


@dataclass(frozen=True)
class BackendEntry:
    """One backend: `status` ran, skipped (`reason`: why it cannot run here) or error (it
    stopped; `reason` says where). `passed` is None for a skipped backend."""

    precision: str
    status: str
    reason: str | None = None
    passed: bool | None = None
    thresholds: dict[str, Thresholds] = field(default_factory=dict)
    outputs: dict[str, OutputMetrics] = field(default_factory=dict)
    accuracy: Accuracy | None = None
    failures: tuple[str, ...] = ()
    is_reference: bool = False
    histogram: Histogram | None = None  # of the main output, for a backend that ran
    engine: str | None = None  # the plan a trt-* backend ran

    @classmethod
    def skipped(cls, precision: str, reason: str) -> "BackendEntry":
        return cls(precision, SKIPPED, reason)

    @classmethod
    def error(cls, precision: str, reason: str) -> "BackendEntry":
        return cls(precision, ERROR, reason, passed=False, failures=(reason,))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "precision": self.precision, "status": self.status, "reason": self.reason, "pass": self.passed,
            "thresholds": {o: t.to_json() for o, t in self.thresholds.items()},
            "outputs": {o: m.to_json() for o, m in self.outputs.items()},
            "accuracy": None if self.accuracy is None else self.accuracy.to_json(),
            "failures": list(self.failures),
        }
        if self.is_reference:
            out["is_reference"] = True
        if self.histogram is not None:
            out["histogram"] = self.histogram.to_json()
        if self.engine is not None:
            out["engine"] = self.engine
        return out


@dataclass(frozen=True)
class DataInfo:
    """The inputs compared on: reference.npz, or an input set (`seed` of its subset, the
    unreadable images `skipped`)."""

    source: str
    num_images: int
    batch_size: int
    labels: bool
    label_offset: int
    main_output: str
    outputs: tuple[str, ...]
    seed: int | None = None
    skipped: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        folder = {} if self.skipped is None else {"seed": self.seed, "skipped": list(self.skipped)}
        return {"source": self.source, **folder, "num_images": self.num_images, "batch_size": self.batch_size,
                "labels": self.labels, "label_offset": self.label_offset, "main_output": self.main_output,
                "outputs": list(self.outputs)}


@dataclass(frozen=True)
class BundleInfo:
    """The bundle compared: where it is, its model and weights, and the manifest's warnings."""

    path: str
    model: str
    weights: str | None
    image_size: list[int] | None
    trained_image_size: list[int] | None
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "model": self.model, "weights": self.weights, "image_size": self.image_size,
                "trained_image_size": self.trained_image_size, "warnings": list(self.warnings)}


@dataclass(frozen=True)
class ParityResult:
    """Every backend judged against the FP32 reference; `passed` when at least one ran and
    every one that ran met its thresholds."""

    reference: Reference
    passed: bool
    verdict: str
    backends: dict[str, BackendEntry]  # in the order asked for
    environment: MachineInfo
    data: DataInfo
    bundle: BundleInfo
    created: str
    per_layer: dict[str, LayerSection] | None = None
    engine_layers: tuple[EngineLayers, ...] = ()  # what each TensorRT engine that ran runs
    layer_timing: tuple[EngineProfile, ...] = ()  # the bundle's `trtdeploy profile` results
    int8_choice: Int8Choice | None = None  # how model.int8.onnx was chosen (calibrate --max-drop/auto)

    def ran(self) -> dict[str, BackendEntry]:
        return {b: e for b, e in self.backends.items() if e.status == RAN}

    def to_json(self) -> dict[str, Any]:
        out = {"reference": self.reference.to_json(), "pass": self.passed, "verdict": self.verdict,
               "backends": {b: e.to_json() for b, e in self.backends.items()},
               "environment": self.environment.to_json(), "data": self.data.to_json(),
               "bundle": self.bundle.to_json(), "created": self.created}
        if self.per_layer:
            out["per_layer"] = {k: s.to_json() for k, s in self.per_layer.items()}
        out["engine_layers"] = [e.to_json() for e in self.engine_layers]
        out["layer_timing"] = [p.to_json() for p in self.layer_timing]
        if self.int8_choice is not None:
            out["int8_selection"] = self.int8_choice.to_json()
        return out
