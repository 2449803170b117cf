"""Where a bundle's engines live, named once: `engines/NAME.PRECISION.plan`, with its sidecar
`NAME.PRECISION.json` and its layers file `NAME.PRECISION.layers.json` beside it (for
`build --out FILE.plan`: `FILE.json`, `FILE.layers.json`). Every command finds an engine, its
sidecar and its layers file through these, and chooses "the bundle's engine" with
`choose_engine`. Standard library only."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import UsageError
from .layout import ENGINES_DIR, PRECISIONS

if TYPE_CHECKING:
    from . import Bundle

PLAN_SUFFIX = ".plan"
SIDECAR_SUFFIX = ".json"
LAYERS_SUFFIX = ".layers.json"


def engine_file(model: str, precision: str) -> str:
    """The bundle-relative path of the engine of `precision`."""
    return f"{ENGINES_DIR}/{model}.{precision}{PLAN_SUFFIX}"


def sidecar_path(plan: str | Path) -> Path:
    """The JSON that says what `plan` needs (TensorRT version, GPU, hashes), beside it."""
    return Path(plan).with_suffix(SIDECAR_SUFFIX)


def layers_path(plan: str | Path) -> Path:
    """The engine inspector's layer information of `plan`, beside it."""
    return Path(plan).with_suffix(LAYERS_SUFFIX)


def plan_stem(plan: str | Path) -> str:
    """`engines/m.int8.plan` -> `m.int8` (reports name their engine by it)."""
    name = Path(plan).name
    return name[: -len(PLAN_SUFFIX)] if name.endswith(PLAN_SUFFIX) else name


def precision_in_name(plan: str | Path) -> str | None:
    """The precision a plan's name carries (NAME.PRECISION.plan), or None."""
    suffix = plan_stem(plan).rsplit(".", 1)[-1]
    return suffix if suffix in PRECISIONS else None


def bundle_engines(bundle: Bundle) -> list[Path]:
    """The plans in the bundle's engines/, sorted."""
    d = bundle.engines_dir
    return sorted(p for p in d.glob(f"*{PLAN_SUFFIX}") if p.is_file()) if d.is_dir() else []


def choose_engine(bundle: Bundle, engine: str | Path | None) -> Path:
    """The engine a command runs: `engine` (--engine PLAN), else the bundle's only engine. A
    missing file, no engine or several are usage errors that say what to do."""
    if engine is not None:
        plan = Path(engine)
        if not plan.is_file():
            raise UsageError(f"--engine {plan}: no such engine file; build one with `trtdeploy build {bundle.root} "
                             "--precision PRECISION` or check the path")
        return plan
    plans = bundle_engines(bundle)
    if not plans:
        raise UsageError(f"{bundle.engines_dir}: no engine; build one with `trtdeploy build {bundle.root} "
                         "--precision fp16` or give --engine PLAN")
    if len(plans) > 1:
        raise UsageError(f"{bundle.engines_dir}: several engines ({', '.join(p.name for p in plans)}); "
                         "choose one with --engine PLAN")
    return plans[0]


def engine_outputs(plan: Path) -> Sequence[Path]:
    """Every file a build of `plan` writes: the plan, its sidecar, its layers file."""
    return (plan, sidecar_path(plan), layers_path(plan))
