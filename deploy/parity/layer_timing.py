"""Which layers cost time, for the parity report, beside which layers cost accuracy.

`trtdeploy profile` writes BUNDLE/reports/profile.NAME.json (NAME: the plan's file name
without `.plan`; deploy/trt/profiler.py makes its content); `load_profiles` reads every such
file of a bundle into `EngineProfile`s and marks a profile stale when its engine has been
rebuilt since (the plan's sha256 in its sidecar differs). `layer_timing_html` is the report's
section: per profiled engine its slowest layers, and, where the run has per-layer error data
of the same precision, each slim unit's share of the engine's time next to its error.
TensorRT names a fused layer after the ONNX nodes it fused ("a/Conv2D + a/Relu"), and the
ONNX nodes keep the slim scopes, so a layer belongs to the first unit its name mentions.
"""
from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..bundle.engines import plan_stem, sidecar_path
from .per_layer import LayerSection

log = logging.getLogger("trtdeploy.parity")

PREFIX = "profile."
TOP_LAYERS = 15


@dataclass(frozen=True)
class LayerTime:
    """One engine layer: its median time per call and its share of the engine's time."""

    name: str
    median_ms: float
    share: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "median_ms": self.median_ms, "share": self.share}


@dataclass(frozen=True)
class EngineProfile:
    """A `trtdeploy profile` result as the report shows it (`layers`: slowest first). An
    unreadable file has only its `path` and the `error`."""

    path: str
    engine: str = "?"
    precision: str | None = None
    batch: int | None = None
    calls: int | None = None
    total_median_ms: float | None = None  # the per-call sum of layer times, median over the calls
    gpu: str | None = None
    layers: tuple[LayerTime, ...] = ()
    stale: bool = False  # the engine was rebuilt after the profile
    error: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], path: str, stale: bool) -> "EngineProfile":
        total = (doc.get("total_ms") or {}).get("median")
        gpu = ((doc.get("machine") or {}).get("gpu") or {}).get("name")
        layers = tuple(LayerTime(str(r["name"]), float(r["median_ms"]), float(r.get("share", 0.0)))
                       for r in doc["layers"])
        return cls(path, str(doc.get("engine", "?")), doc.get("precision"), doc.get("batch"), doc.get("calls"),
                   None if total is None else float(total), gpu, layers, stale)

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "engine": self.engine, "precision": self.precision, "batch": self.batch,
                "calls": self.calls, "total_median_ms": self.total_median_ms, "gpu": self.gpu,
                "stale": self.stale, "layers": [r.to_json() for r in self.layers]}


def profile_path(reports_dir: str | Path, plan: str | Path) -> Path:
    """Where `trtdeploy profile` writes the profile of `plan` by default."""
    return Path(reports_dir) / f"{PREFIX}{plan_stem(plan)}.json"


def _current_sha(engine: str) -> str | None:
    side = sidecar_path(engine)
    try:
        return json.loads(side.read_text()).get("plan_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def _load_profile(path: Path) -> EngineProfile:
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
            raise ValueError("not a `trtdeploy profile` result (no layer list)")
        current = _current_sha(str(doc.get("engine", "")))
        return EngineProfile.from_json(doc, str(path), current is not None and current != doc.get("plan_sha256"))
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: skipped in the report (%s)", path, e)
        return EngineProfile(str(path), error=str(e))


def load_profiles(reports_dir: str | Path) -> tuple[EngineProfile, ...]:
    """Every profile in `reports_dir`, sorted by file name; unreadable ones carry their error."""
    return tuple(_load_profile(p) for p in sorted(Path(reports_dir).glob(f"{PREFIX}*.json")))


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _unit_scope(layer: str) -> str:
    # "model/block1/unit_1/bottleneck_v2" -> "model/block1/unit_1/": the unit's ONNX nodes live under it
    return (layer[: -len("/bottleneck_v2")] if layer.endswith("/bottleneck_v2") else layer) + "/"


def unit_shares(profile: EngineProfile, units: Sequence[str]) -> dict[str, float]:
    """Share of the engine's time per slim unit: each engine layer counts for the unit its
    name mentions first (a fused layer can span the end of one unit and the start of the next)."""
    scopes = [(u, _unit_scope(u)) for u in units]
    shares = {u: 0.0 for u in units}
    for layer in profile.layers:
        hits = [(layer.name.find(scope), u) for u, scope in scopes if scope in layer.name]
        if hits:
            shares[min(hits)[1]] += layer.share
    return shares


def _top_table(profile: EngineProfile) -> str:
    rows = "".join(
        f'<tr><td>{i}</td><td class="l">{_e(r.name)}</td><td>{r.median_ms:.4f}</td><td>{r.share * 100:.1f}%</td></tr>'
        for i, r in enumerate(profile.layers[:TOP_LAYERS], 1))
    rest = len(profile.layers) - TOP_LAYERS
    more = f"<caption>slowest {TOP_LAYERS} of {len(profile.layers)} layers</caption>" if rest > 0 else ""
    return ('<div class="scroll"><table class="layer-time">' + more + '<thead><tr><th>#</th><th class="l">engine layer'
            f"</th><th>median ms</th><th>share</th></tr></thead><tbody>{rows}</tbody></table></div>")


def _side_by_side(profile: EngineProfile, per_layer: Mapping[str, LayerSection]) -> str:
    entries = [(k, s) for k, s in per_layer.items() if s.precision == profile.precision]
    if not entries:
        return ""
    key, section = entries[0]
    shares = unit_shares(profile, list(section.layers))
    if not any(shares.values()):
        return ("<p>No engine layer is named after a slim unit (the ONNX node names were changed), so time and "
                "error cannot be put side by side.</p>")
    rows = "".join(f'<tr><td class="l">{_e(name)}</td><td>{err.rel_error:.3g}</td><td>{shares[name] * 100:.1f}%</td>'
                   "</tr>" for name, err in section.layers.items())
    return (f'<table class="time-vs-error"><caption>per unit: error of {_e(key)} vs FP32 and share of the '
            f"{_e(profile.precision)} engine's time</caption><thead><tr><th class=\"l\">unit</th>"
            f"<th>rel error</th><th>time share</th></tr></thead><tbody>{rows}</tbody></table>")


def layer_timing_html(profiles: Sequence[EngineProfile], per_layer: Mapping[str, LayerSection] | None = None) -> str:
    """The report section "Per-layer time": one block per profiled engine."""
    parts = ['<h2 id="layer-time">Per-layer time</h2>']
    if not profiles:
        parts.append("<p>No engine was profiled: <code>trtdeploy profile BUNDLE --engine PLAN</code> on the device "
                     "writes <code>reports/profile.NAME.json</code>, which this report then shows.</p>")
        return "".join(parts)
    for p in profiles:
        if p.error is not None:
            parts.append(f"<p><code>{_e(p.path)}</code>: not shown ({_e(p.error)}).</p>")
            continue
        total = "?" if p.total_median_ms is None else f"{p.total_median_ms:.3f}"
        parts.append(f"<h3>{_e(Path(p.engine).name)}</h3><p>{_e(p.precision)}, batch {_e(p.batch)}, "
                     f"{_e(p.gpu or '?')}: {total} ms per call (sum of layer times, median of {_e(p.calls)} calls)</p>")
        if p.stale:
            parts.append('<p class="note">The engine was rebuilt after this profile: run '
                         "<code>trtdeploy profile</code> again.</p>")
        parts.append(_top_table(p))
        parts.append(_side_by_side(p, per_layer or {}))
    return "".join(parts)
