"""What each TensorRT engine of a parity run really runs, for the report.

`trtdeploy build` writes NAME.PRECISION.layers.json from TensorRT's engine inspector
(deploy/trt/inspection.py); here each engine that ran gets its summary lines ("48 of 53
convolutions run in INT8; ...") and whether it is flagged: an engine labelled int8 whose
convolutions mostly do not run in INT8, an fp16 engine with FP32 convolutions.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import EngineError
from ..trt.inspection import load_summary

NO_LAYERS_FILE = ("no layers file: engine built before trtdeploy recorded layer information; rebuild it with "
                  "`trtdeploy build` to see what it runs")


@dataclass(frozen=True)
class EngineLayers:
    """One TensorRT backend's engine: `ok` False when flagged, None when it cannot be told."""

    backend: str
    engine: str
    ok: bool | None
    lines: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "engine": self.engine, "ok": self.ok, "lines": list(self.lines)}


def engine_layers(engines: Iterable[tuple[str, str]]) -> tuple[EngineLayers, ...]:
    """Per (backend, plan path), the summary read from the engine's layers file."""
    out = []
    for backend, engine in engines:
        try:
            summary = load_summary(engine)
        except EngineError as e:
            out.append(EngineLayers(backend, engine, None, (str(e),)))
            continue
        if summary is None:
            out.append(EngineLayers(backend, engine, None, (NO_LAYERS_FILE,)))
        else:
            out.append(EngineLayers(backend, engine, summary.ok, tuple(summary.lines())))
    return tuple(out)


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def engine_layers_html(entries: Iterable[EngineLayers]) -> str:
    """The report section's table, one row per engine."""
    rows = []
    for item in entries:
        flag = {True: "ok", False: "FLAGGED", None: "—"}[item.ok]
        lines = "<br>".join(_e(line) for line in item.lines)
        rows.append(f'<tr class="{"fail" if item.ok is False else "pass"}" data-backend="{_e(item.backend)}">'
                    f'<td class="l">{_e(item.backend)}</td><td class="l"><code>{_e(Path(item.engine).name)}'
                    f'</code></td><td class="l result">{flag}</td>'
                    f'<td class="l" style="white-space:normal">{lines}</td></tr>')
    if not rows:
        return "<p>No TensorRT engine ran.</p>"
    return ('<div class="scroll"><table id="engine-layers"><thead><tr><th class="l">Backend</th><th class="l">Engine'
            '</th><th class="l">Precision check</th><th class="l">Layers (from the engine inspector)</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")
