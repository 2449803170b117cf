"""The TensorRT plans a `tensorrt_plan` model serves, checked against the bundle and the flags.

Triton's rules (docs/user_guide/model_configuration.md, and the TensorRT backend's
`model_state.cc`): with `max_batch_size` > 0 every input and output has the batch as its first
dimension and `dims` leave it out; the backend refuses a `max_batch_size` above what the
engine's optimization profile takes ("configuration specified max-batch N but TensorRT engine
only supports max-batch M"); the dynamic batcher sends any batch from 1 up, so the profile must
start at 1. Several engines for several GPUs are `cc_model_filenames`, keyed by compute
capability ("8.7" for sm_87), each plan built for its own GPU (see `deploy.trt.sidecar`).

CUDA graphs (`optimization { cuda { graphs: true } }`) are offered only for an engine that can
be captured: TensorRT's developer guide ("CUDA Graphs") excludes engines with data-dependent
shapes, loops or conditionals, and Triton's TensorRT backend (`instance_state.cc`,
`BuildCudaGraph`) skips engines with shape-tensor inputs or outputs (a bundle's are float
images and class scores, never shape tensors). Whether an engine has loops, conditionals or
data-dependent layers is read from its layers file (`deploy.trt.inspection`); without one
nobody can tell, so graphs are refused.

Pure logic: no TensorRT, no pycuda.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..bundle import Bundle
from ..errors import EngineError, UsageError
from ..trt.cuda import parse_sm
from ..trt.sidecar import Sidecar, bundle_of, load_plan, read_sidecar, rebuild_command

# TensorRT layer kinds (trt.LayerType, as the inspector writes them) that make an engine
# uncapturable: loops, conditionals and layers whose output shape depends on the data.
_UNCAPTURABLE = {"triplimit", "recurrence", "iterator", "loopoutput", "condition", "conditionalinput",
                 "conditionaloutput", "nonzero", "nms"}


@dataclass(frozen=True)
class ServedEngine:
    plan: Path
    sidecar: Sidecar
    data: bytes  # the plan's bytes, checked against the sidecar's sha256

    @property
    def cc_key(self) -> str:
        """sm_87 -> "8.7": how Triton names a compute capability in `cc_model_filenames`."""
        sm = parse_sm(self.sidecar.compute_capability)
        return f"{sm // 10}.{sm % 10}"

    @property
    def profile_batch(self) -> tuple[int, int, int]:
        """(min, opt, max) of the batch axis over every input's profile (the narrowest range)."""
        profiles = [t.profile for t in self.sidecar.inputs if t.profile]
        if not profiles:
            return tuple(self.sidecar.batch)  # type: ignore[return-value]
        return (max(p[0][0] for p in profiles), max(p[1][0] for p in profiles), min(p[2][0] for p in profiles))


def _fix(engine: ServedEngine, what: str) -> str:
    return (f"{engine.plan}: {what}; rebuild it, e.g. `{rebuild_command(engine.sidecar, bundle_of(engine.plan))}` "
            "with --batch 1 OPT MAX")


def load_engines(bundle: Bundle, plans: Sequence[Path], precision: str | None) -> list[ServedEngine]:
    """The plans (default: the bundle's engine of `precision`), each checked against its sidecar."""
    if not plans:
        prec = precision or "fp32"
        plans = [bundle.engine_path(prec)]
        if not plans[0].is_file():
            raise UsageError(f"{plans[0]}: no engine for {prec}; build one with `trtdeploy build {bundle.root} "
                             f"--precision {prec}`, pass --engine PLAN, or choose --platform onnxruntime_onnx|python")
    engines = []
    for plan in plans:
        sidecar = read_sidecar(plan)
        engines.append(ServedEngine(Path(plan), sidecar, load_plan(plan, sidecar)))
    for e in engines:
        if e.sidecar.model != bundle.model_name:
            raise UsageError(f"{e.plan}: an engine of {e.sidecar.model!r}, not of {bundle.model_name!r} "
                             f"({bundle.root}); pass this bundle's engines")
        if precision is not None and e.sidecar.precision != precision:
            raise UsageError(f"{e.plan}: a {e.sidecar.precision} engine, but --precision {precision}; drop "
                             f"--precision or pass a {precision} engine")
    precisions = sorted({e.sidecar.precision for e in engines})
    if len(precisions) > 1:
        raise UsageError(f"engines of several precisions ({', '.join(precisions)}); one model serves one precision, "
                         "so pass the engines of one")
    _check_same_io(engines)
    _check_io_matches_bundle(engines[0], bundle)
    _check_gpus(engines)
    return engines


def _io(e: ServedEngine) -> list[tuple[str, str, str, tuple[int, ...]]]:
    return [(t.name, t.mode, t.dtype, tuple(t.shape)) for t in e.sidecar.io]


def _check_same_io(engines: list[ServedEngine]) -> None:
    first = engines[0]
    for e in engines[1:]:
        if _io(e) != _io(first):
            raise UsageError(f"{e.plan} and {first.plan} have different inputs/outputs ({_io(e)} vs {_io(first)}); "
                             "build every engine of one model from the same ONNX")


def _check_io_matches_bundle(e: ServedEngine, bundle: Bundle) -> None:
    want = sorted(t.name for t in bundle.inputs), sorted(t.name for t in bundle.outputs)
    got = sorted(t.name for t in e.sidecar.inputs), sorted(t.name for t in e.sidecar.outputs)
    if want != got:
        raise UsageError(f"{e.plan}: inputs {got[0]} and outputs {got[1]}, but {bundle.root} has {want[0]} and "
                         f"{want[1]}; rebuild the engine from this bundle")


def _check_gpus(engines: list[ServedEngine]) -> None:
    seen: dict[str, Path] = {}
    portable = [e for e in engines if e.sidecar.hardware_compat]
    if len(portable) > 1:
        raise UsageError(f"two hardware-compatible engines ({portable[0].plan}, {portable[1].plan}); either runs on "
                         "every GPU it names, so pass one")
    for e in engines:
        if e.sidecar.hardware_compat:
            continue
        if e.cc_key in seen:
            raise UsageError(f"{seen[e.cc_key]} and {e.plan} are both built for {e.sidecar.compute_capability}; "
                             "Triton picks one plan per compute capability (cc_model_filenames), so pass one")
        seen[e.cc_key] = e.plan


def served_max_batch(engines: list[ServedEngine], requested: int | None) -> int:
    """`max_batch_size`: the request, else the largest batch every engine's profile takes."""
    for e in engines:
        fixed = [t.name for t in e.sidecar.io if not t.shape or t.shape[0] != -1]
        if fixed:
            raise UsageError(_fix(e, f"the batch axis of {', '.join(fixed)} is fixed, but Triton's batcher "
                                     "needs a dynamic first dimension (max_batch_size > 0)"))
        low, _, high = e.profile_batch
        if low != 1:
            raise UsageError(_fix(e, f"its optimization profile starts at batch {low}, and Triton's dynamic batcher "
                                     "sends any batch from 1"))
    limit = min(e.profile_batch[2] for e in engines)
    if requested is None:
        return limit
    if requested > limit:
        worst = min(engines, key=lambda e: e.profile_batch[2])
        raise UsageError(_fix(worst, f"--max-batch {requested} is above the profile's max batch {limit} (Triton's "
                                     "TensorRT backend refuses that); lower --max-batch or rebuild"))
    return requested


def cuda_graph_obstacle(e: ServedEngine) -> str | None:
    """Why the engine cannot be replayed as a CUDA graph (None: nothing known prevents it)."""
    dynamic_outputs = [t.name for t in e.sidecar.outputs if any(d < 0 for d in t.shape[1:])]
    if dynamic_outputs:
        return f"outputs {dynamic_outputs} have data-dependent shapes"
    if not e.sidecar.layers:
        return "it has no layers file to tell whether it holds loops, conditionals or shape tensors"
    path = e.plan.parent / e.sidecar.layers
    try:
        layers = json.loads(path.read_text())["layers"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EngineError(f"{path}: unreadable layers file ({err}); rebuild the engine with `trtdeploy build`") from None
    blocking = [d.get("name", "?") for d in layers
                if {_word(d.get("type")), _word(d.get("parameter_type"))} & _UNCAPTURABLE]
    if blocking:
        return f"layers {blocking[:5]} are loops, conditionals or data-dependent shapes"
    return None


def _word(text: str | None) -> str:
    return re.sub(r"[^a-z]", "", (text or "").lower())
