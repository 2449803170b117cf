"""Which backends run here: the runner factory (a runner, or why it cannot run on this
machine) and the TensorRT engine each `trt-*` backend uses.

Needs only numpy at import; TensorFlow, ONNX Runtime and TensorRT are imported by
`make_runner` for the backend asked for.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..bundle import PRECISIONS, Bundle
from ..bundle.engines import precision_in_name, sidecar_path
from ..errors import BundleError, DeployError, UsageError
from ..runners import BACKENDS, backend_precision
from ..runners.base import Runner

__all__ = ["BACKENDS", "Skip", "backend_precision", "engine_path", "engine_precision", "engines_by_precision",
           "installed", "make_runner", "parse_backends"]


def parse_backends(spec: str | Sequence[str] | None, extra: Sequence[str] = ()) -> list[str]:
    """`"tf,ort-int8"` or a list -> validated names in the given order; None -> all. `extra`: the
    backends a run adds beside BACKENDS (`parity --triton`, `--deepstream`; deploy.serving.live),
    named NAME-PRECISION and judged by that precision."""
    known = [*BACKENDS, *extra]
    if spec is None:
        return known
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (s.strip() for s in items):
        if not item:
            continue
        if item not in known:
            raise UsageError(f"unknown backend {item!r}; choose from {', '.join(known)}")
        if item not in names:
            names.append(item)
    if not names:
        raise UsageError(f"no backends given; choose from {', '.join(BACKENDS)}")
    return names


@dataclass(frozen=True)
class Skip:
    """Why a backend cannot run here (listed in the report, never dropped)."""

    reason: str


def engine_precision(path: str | Path) -> str:
    """Precision of a plan: from `NAME.PRECISION.plan`, else from its sidecar's `precision`."""
    p = Path(path)
    named = precision_in_name(p)
    if named is not None:
        return named
    side = sidecar_path(p)
    if side.is_file():
        try:
            prec = json.loads(side.read_text()).get("precision")
        except (OSError, ValueError):
            prec = None
        if prec in PRECISIONS:
            return prec
    raise UsageError(f"{p}: cannot tell the engine's precision; name it NAME.PRECISION.plan (fp32, fp16 or int8)")


def engines_by_precision(engines: Sequence[str | Path] | Mapping[str, str | Path] | None) -> dict[str, Path]:
    """`--engine` plans by precision; a missing file or two plans of one precision is a usage error."""
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
    """The plan given for `precision`, else the bundle's `engines/NAME.PRECISION.plan`."""
    if engines and precision in engines:
        return Path(engines[precision])
    return bundle.engine_path(precision)


def installed(module: str) -> bool:
    """Whether `module` can be found, without importing it (a failing finder counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def make_runner(backend: str, bundle: Bundle, engines: Mapping[str, Path] | None = None) -> Runner | Skip:
    """A runner for `backend`, or a Skip saying why it cannot run on this machine."""
    if backend == "tf":
        return _tf_runner(bundle)
    if backend.startswith("ort-"):
        return _ort_runner(backend, bundle)
    return _trt_runner(backend, bundle, engines)


def _tf_runner(bundle: Bundle) -> Runner | Skip:
    if not installed("tensorflow"):
        return Skip("TensorFlow is not installed here (`pip install 'trtdeploy[export]'`)")
    if not bundle.path("saved_model").is_dir():
        return Skip(f"{bundle.path('saved_model')}: missing (device bundles may omit it)")
    try:
        from ..runners.tf import TFRunner
        return TFRunner(bundle)
    except (ImportError, OSError, DeployError) as e:
        return Skip(f"TensorFlow runner unavailable: {e}")


def _ort_runner(backend: str, bundle: Bundle) -> Runner | Skip:
    if not installed("onnxruntime"):
        return Skip("ONNX Runtime is not installed here (`pip install onnxruntime`)")
    try:
        path = bundle.onnx_path(backend_precision(backend))
    except BundleError as e:
        return Skip(str(e))
    from ..runners.ort import OrtRunner
    return OrtRunner(path, name=backend)


def _trt_runner(backend: str, bundle: Bundle, engines: Mapping[str, Path] | None) -> Runner | Skip:
    precision = backend_precision(backend)
    plan = engine_path(bundle, precision, engines)
    if not plan.is_file():
        return Skip(f"{plan}: no engine; build it with `trtdeploy build {bundle.root} --precision {precision}` "
                    "or pass --engine PLAN")
    try:
        from ..trt.runtime import TrtRunner
    except (ImportError, OSError) as e:
        return Skip(f"TensorRT runtime unavailable: {e}")
    try:
        return TrtRunner(plan, name=backend, timing=False)
    except (ImportError, OSError, DeployError) as e:  # no sidecar, no TensorRT, no driver
        return Skip(str(e))
