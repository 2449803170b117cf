"""Which layers cost time, for the parity report, beside which layers cost accuracy.

`trtdeploy profile` writes BUNDLE/reports/profile.NAME.json (NAME: the plan's file name
without `.plan`); `load_profiles` reads every such file of a bundle and marks a profile
stale when its engine has been rebuilt since (the plan's sha256 in its sidecar differs).
`layer_timing_html` is the report's section: per profiled engine its slowest layers, and,
where the run has per-layer error data of the same precision, each slim unit's share of the
engine's time next to its error. TensorRT names a fused layer after the ONNX nodes it
fused ("a/Conv2D + a/Relu"), and the ONNX nodes keep the slim scopes, so a layer belongs to
the first unit its name mentions.
"""
from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)

PREFIX = "profile."
TOP_LAYERS = 15


def profile_path(reports_dir: str | Path, plan: str | Path) -> Path:
    """Where `trtdeploy profile` writes the profile of `plan` by default."""
    name = Path(plan).name
    return Path(reports_dir) / f"{PREFIX}{name[:-len('.plan')] if name.endswith('.plan') else name}.json"


def _current_sha(engine: str) -> str | None:
    side = Path(engine).with_suffix(".json")
    try:
        return json.loads(side.read_text()).get("plan_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def load_profiles(reports_dir: str | Path) -> list[dict[str, Any]]:
    """Every profile JSON in `reports_dir`, sorted by file name; unreadable ones are listed
    with their error, profiles of since-rebuilt engines carry `stale: true`."""
    out = []
    for path in sorted(Path(reports_dir).glob(f"{PREFIX}*.json")):
        try:
            profile = json.loads(path.read_text())
            if not isinstance(profile, dict) or not isinstance(profile.get("layers"), list):
                raise ValueError("not a `trtdeploy profile` result (no layer list)")
        except (OSError, ValueError) as e:
            log.warning("%s: skipped in the report (%s)", path, e)
            out.append({"path": str(path), "error": str(e)})
            continue
        current = _current_sha(str(profile.get("engine", "")))
        profile["path"] = str(path)
        profile["stale"] = current is not None and current != profile.get("plan_sha256")
        out.append(profile)
    return out


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _unit_scope(layer: str) -> str:
    # "model/block1/unit_1/bottleneck_v2" -> "model/block1/unit_1/": the unit's ONNX nodes live under it
    return (layer[: -len("/bottleneck_v2")] if layer.endswith("/bottleneck_v2") else layer) + "/"


def unit_shares(profile: Mapping[str, Any], units: Sequence[str]) -> dict[str, float]:
    """Share of the engine's time per slim unit: each engine layer counts for the unit its
    name mentions first (a fused layer can span the end of one unit and the start of the next)."""
    scopes = [(u, _unit_scope(u)) for u in units]
    shares = {u: 0.0 for u in units}
    for layer in profile.get("layers", []):
        hits = [(layer["name"].find(scope), u) for u, scope in scopes if scope in layer["name"]]
        if hits:
            shares[min(hits)[1]] += float(layer.get("share", 0.0))
    return shares


def _top_table(profile: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr><td>{i}</td><td class="l">{_e(r["name"])}</td><td>{r["median_ms"]:.4f}</td>'
        f'<td>{r["share"] * 100:.1f}%</td></tr>'
        for i, r in enumerate(profile["layers"][:TOP_LAYERS], 1))
    rest = len(profile["layers"]) - TOP_LAYERS
    more = f"<caption>slowest {TOP_LAYERS} of {len(profile['layers'])} layers</caption>" if rest > 0 else ""
    return ('<div class="scroll"><table class="layer-time">' + more + '<thead><tr><th>#</th><th class="l">engine layer'
            f"</th><th>median ms</th><th>share</th></tr></thead><tbody>{rows}</tbody></table></div>")


def _side_by_side(profile: Mapping[str, Any], per_layer: Mapping[str, Any]) -> str:
    entries = [(k, s) for k, s in per_layer.items() if s.get("precision") == profile.get("precision")]
    if not entries:
        return ""
    key, section = entries[0]
    layers = section.get("layers") or []
    shares = unit_shares(profile, [l["name"] for l in layers])
    if not any(shares.values()):
        return ("<p>No engine layer is named after a slim unit (the ONNX node names were changed), so time and "
                "error cannot be put side by side.</p>")
    rows = "".join(
        f'<tr><td class="l">{_e(l["name"])}</td><td>{l["rel_error"]:.3g}</td><td>{shares[l["name"]] * 100:.1f}%</td></tr>'
        for l in layers)
    return (f'<table class="time-vs-error"><caption>per unit: error of {_e(key)} vs FP32 and share of the '
            f'{_e(profile.get("precision"))} engine\'s time</caption><thead><tr><th class="l">unit</th>'
            f"<th>rel error</th><th>time share</th></tr></thead><tbody>{rows}</tbody></table>")


def layer_timing_html(profiles: Sequence[Mapping[str, Any]] | None,
                      per_layer: Mapping[str, Any] | None = None) -> str:
    """The report section "Per-layer time": one block per profiled engine."""
    parts = ['<h2 id="layer-time">Per-layer time</h2>']
    if not profiles:
        parts.append("<p>No engine was profiled: <code>trtdeploy profile BUNDLE --engine PLAN</code> on the device "
                     "writes <code>reports/profile.NAME.json</code>, which this report then shows.</p>")
        return "".join(parts)
    for p in profiles:
        if "error" in p:
            parts.append(f"<p><code>{_e(p['path'])}</code>: not shown ({_e(p['error'])}).</p>")
            continue
        total = (p.get("total_ms") or {}).get("median")
        gpu = ((p.get("machine") or {}).get("gpu") or {}).get("name", "?")
        parts.append(f'<h3>{_e(Path(str(p.get("engine", "?"))).name)}</h3><p>{_e(p.get("precision"))}, batch '
                     f'{_e(p.get("batch"))}, {_e(gpu)}: {"?" if total is None else f"{total:.3f}"} ms per call '
                     f'(sum of layer times, median of {_e(p.get("calls"))} calls)</p>')
        if p.get("stale"):
            parts.append('<p class="note">The engine was rebuilt after this profile: run '
                         "<code>trtdeploy profile</code> again.</p>")
        parts.append(_top_table(p))
        parts.append(_side_by_side(p, per_layer or {}))
    return "".join(parts)
