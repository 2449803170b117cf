"""The files one engine build writes, and what they may replace: the plan, its sidecar and its
layers file (named by deploy.bundle.engines), committed as one set, never over a bundle file
or a file an earlier build did not write."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..bundle import MANIFEST, Bundle
from ..bundle.engines import engine_outputs, layers_path, sidecar_path
from ..bundle.layout import JOURNAL, LOCK
from ..errors import UsageError
from ..fsutil import FileSet
from .sidecar import Sidecar


def engine_paths(bundle: Bundle, precision: str, out: Path | None = None) -> tuple[Path, Path]:
    """The plan (`out`, else engines/NAME.PRECISION.plan) and its sidecar .json. Refused before
    the build: a plan, sidecar or layers file that would land on a file of the bundle (the
    manifest, scales.json for `--out BUNDLE/calibration/scales.plan`, ...) or on a file that an
    earlier build did not write."""
    plan = Path(out) if out is not None else bundle.engine_path(precision)
    recorded = [bundle.root / rel for rel in (MANIFEST, LOCK, JOURNAL, *bundle.manifest.get("files", {}))]
    for path in engine_outputs(plan):
        hit = next((r for r in recorded if path.resolve() == r.resolve() or path.resolve().is_relative_to(r.resolve())),
                   None)
        if hit is not None:
            raise UsageError(f"--out {plan}: {path.name} would overwrite the bundle's {hit.relative_to(bundle.root)}; "
                             "choose another name")
    if not _built_by_us(plan):
        there = next(p for p in engine_outputs(plan) if p.exists())
        raise UsageError(f"{there}: exists and was not written by `trtdeploy build`; move it away or choose another "
                         "--out")
    return plan, sidecar_path(plan)


def _built_by_us(plan: Path) -> bool:
    """Whether the files a build of `plan` would replace are an earlier build's (or absent)."""
    if not any(p.exists() for p in engine_outputs(plan)):
        return True
    try:
        side = json.loads(sidecar_path(plan).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(side, dict) and "plan_sha256" in side and "tensorrt" in side


def replaced_engine_note(json_path: Path, precision: str, mode: str) -> str | None:
    """A warning when the engine about to be overwritten was built another way (e.g. explicit
    INT8 replaced by implicit): both share NAME.int8.plan unless --out separates them."""
    try:
        old = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(old, dict) or (old.get("precision"), old.get("mode")) == (precision, mode):
        return None
    return (f"replacing {json_path.with_suffix('.plan').name} (built {old.get('precision')}, {old.get('mode')}) "
            f"with an {precision}, {mode} engine; pass --out FILE.plan to keep both")


def write_engine(plan_path: Path, data: bytes, layers: Any, sidecar: Sidecar) -> None:
    """The plan, its layers file and its sidecar, committed as one set (deploy.fsutil.FileSet)."""
    with FileSet(plan_path.parent, "`trtdeploy build`") as files:
        files.write_bytes(plan_path, data)
        if layers is not None:
            files.write_json(layers_path(plan_path), layers)
        files.write_json(sidecar_path(plan_path), sidecar.to_json())
        files.commit()
