"""Parity reports: `parity.json` (the result as is) and one self-contained `parity.html`.

The page has no external resources: styles inline, charts as base64 PNG drawn with
matplotlib's Agg canvas (imported lazily; without matplotlib the page carries the tables and
says the charts are missing). Every piece of text from the result is HTML-escaped.
"""
from __future__ import annotations

import html
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any, Mapping

from ..errors import UsageError
from ..fsutil import FileSet, check_writable_dir
from .engine_layers import engine_layers_html
from .int8_choice import int8_choice_html
from .layer_timing import layer_timing_html
from .per_layer import LayerSection
from .charts import histogram_chart, img, matplotlib_or_none, per_class_series, per_class_chart, per_layer_chart
from .metrics import SOFTMAX_JUDGED
from .result import ERROR, RAN, SKIPPED, BackendEntry, BundleInfo, ParityResult
from .thresholds import UPPER_KEYS

log = logging.getLogger("trtdeploy.parity")

JSON_NAME = "parity.json"
HTML_NAME = "parity.html"
WORST_CLASSES = 15
# Cosines near 1 need more digits than the default 4 to show anything but "1".
DIGITS = {"cosine_min": 7, "cosine_mean": 7}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;
 color:#1b1b1b;line-height:1.4;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em} th,td{border:1px solid #ccc;padding:.3em .6em;
 text-align:right} th{background:#f0f0f0} td.l,th.l{text-align:left}
.verdict{display:inline-block;padding:.3em .9em;border-radius:4px;font-weight:bold;color:#fff}
.v-pass{background:#1e7b34} .v-fail{background:#b3261e}
tr.pass td.result{color:#1e7b34;font-weight:bold} tr.fail td.result,tr.error td.result{color:#b3261e;font-weight:bold}
tr.skipped td{color:#777} .note{background:#fff6d6;border:1px solid #e0c96b;padding:.5em .8em;border-radius:4px}
pre{white-space:pre-wrap;word-break:break-all}
code{background:#f4f4f4;padding:.1em .3em;border-radius:3px;word-break:break-all}
img.chart{max-width:100%;border:1px solid #ddd;margin:.5em 0}
td{white-space:nowrap} .scroll{overflow-x:auto}
"""


_GENERATOR = '<meta name="generator" content="trtdeploy parity">'


def _ours(path: Path) -> bool:
    """Whether a parity.json/parity.html already there is a report of ours (else not ours to replace)."""
    if path.suffix == ".json":  # every version's parity.json has its backends
        previous = _previous_result(path)
        return previous is not None and "backends" in previous
    try:
        with open(path, "rb") as f:
            head = f.read(2048)
    except OSError:
        return False
    return _GENERATOR.encode() in head or b"<title>Parity: " in head  # the second: reports before the marker


def check_report_dir(out_dir: str | Path) -> None:
    """Before the run: the report directory can be written, and what it holds under the report's
    names is a report of ours."""
    out = Path(out_dir)
    check_writable_dir(out)
    for name in (JSON_NAME, HTML_NAME):
        if (out / name).exists() and not _ours(out / name):
            raise UsageError(f"{out / name}: exists and is not a trtdeploy parity report; move it away or choose "
                             "another --out")


def write_report(result: ParityResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write `parity.json` and `parity.html` into `out_dir` (atomically); return both paths.

    A report that compared less than the one already there (a backend that ran before did not,
    or fewer images) does not replace it: a run on a device where only TensorRT runs, or where
    nothing ran, would otherwise silently erase the workstation's full report. Refusing would
    lose this run's result instead, so it is written beside the old one, with a warning that
    names both.
    """
    out = Path(out_dir)
    check_report_dir(out)
    json_path, html_path = out / JSON_NAME, out / HTML_NAME
    why = _compared_less(result, _previous_result(json_path))
    if why:
        json_path, html_path = _beside(out, result.created)
        log.warning("%s: kept the previous report, which compared more (%s); this run's report is %s",
                    out / HTML_NAME, why, html_path)
    html_text = render_html(result)
    with FileSet(out, "`trtdeploy parity`") as files:  # the pair replaces the old pair, or nothing does
        files.write_json(json_path, result.to_json())
        files.write_text(html_path, html_text)
        files.commit()
    return json_path, html_path


def _previous_result(path: Path) -> Mapping[str, Any] | None:
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none, or not ours to judge: replaced as before
    return previous if isinstance(previous, Mapping) else None


def _compared_before(previous: Mapping[str, Any]) -> tuple[set[str], int]:
    """The backends that ran and the images compared in a parity.json of any earlier version,
    read leniently: what it lacks counts as nothing compared."""
    backends = previous.get("backends")
    ran = {b for b, e in backends.items() if isinstance(e, Mapping) and e.get("status") == RAN} \
        if isinstance(backends, Mapping) else set()
    images = (previous.get("data") or {}).get("num_images") if isinstance(previous.get("data"), Mapping) else None
    return ran, images if isinstance(images, int) else 0


def _compared_less(new: ParityResult, old: Mapping[str, Any] | None) -> str | None:
    """Why `new` compared less than the `old` parity.json, or None when it did not."""
    if old is None:
        return None
    new_ran, new_images = set(new.ran()), new.data.num_images
    old_ran, old_images = _compared_before(old)
    why = []
    if old_ran - new_ran:
        why.append(f"{', '.join(sorted(old_ran - new_ran))} ran there, not in this run"
                   + ("" if new_ran else ", where no backend ran"))
    if new_images < old_images:
        why.append(f"{old_images} images there, {new_images} in this run")
    return "; ".join(why) or None


def _beside(out: Path, created: str) -> tuple[Path, Path]:
    stamp = re.sub(r"[^0-9T]", "", created.split("+")[0]) or "new"
    stems = (f"parity-{stamp}" + (f"-{n}" if n > 1 else "") for n in itertools.count(1))
    stem = next(s for s in stems if not (out / f"{s}.json").exists() and not (out / f"{s}.html").exists())
    return out / f"{stem}.json", out / f"{stem}.html"


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return _e(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _pct(x: Any, signed: bool = False) -> str:
    if x is None:
        return "—"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


# --- page ----------------------------------------------------------------------------


def _summary_table(result: ParityResult) -> str:
    main = result.data.main_output
    head = ["Backend", "Precision", "Status", "Result", "max |diff|", "max |diff| / max |ref|", "cosine min",
            "cosine mean", "top-1 agree", "top-5 agree", "top-1 acc %", "top-5 acc %", "Δ top-1 vs FP32 (pts)"]
    rows = []
    for b, e in result.backends.items():
        verdict = {True: "pass", False: "fail"}.get(e.passed, e.status)
        cls = e.status if e.status in (SKIPPED, ERROR) else verdict
        m = e.outputs.get(main)
        a = e.accuracy
        label = b + (" (reference)" if e.is_reference else "")
        cells = [f'<td class="l">{_e(label)}</td>', f'<td class="l">{_e(e.precision)}</td>',
                 f'<td class="l">{_e(e.status)}</td>', f'<td class="l result">{_e(verdict.upper())}</td>']
        cells += [f"<td>{_num(getattr(m, k, None), DIGITS.get(k, 4))}</td>"
                  for k in ("max_abs", "max_abs_scaled", "cosine_min", "cosine_mean", "top1_agreement",
                            "top5_agreement")]
        cells += [f"<td>{_pct(getattr(a, 'top1', None))}</td>", f"<td>{_pct(getattr(a, 'top5', None))}</td>",
                  f"<td>{_pct(getattr(a, 'delta_top1_vs_fp32', None), signed=True)}</td>"]
        rows.append(f'<tr class="{_e(cls)}" data-backend="{_e(b)}">{"".join(cells)}</tr>')
    ths = "".join(f'<th class="{"l" if i < 4 else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    return (f'<div class="scroll"><table id="summary">'
            f'<caption>Metrics of the main output <code>{_e(main)}</code></caption>'
            f"<thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _limits(e: BackendEntry) -> str:
    """The thresholds a backend was judged by, with their direction, per output (a softmax judged
    by its logits says so at the element limits it is held to beyond the logit error)."""
    parts = []
    for o, t in e.thresholds.items():
        by_logits = getattr(e.outputs.get(o), "softmax_excess", None) is not None
        items = ", ".join(f"{k}{' beyond what the logit error allows' if by_logits and k in SOFTMAX_JUDGED else ''} "
                          f"{'≤' if k in UPPER_KEYS else '≥'} {_num(v)}" for k, v in t.to_json().items()) or "none"
        parts.append(f"<code>{_e(o)}</code>: {_e(items)}")
    return "; ".join(parts)


def _failures(result: ParityResult) -> str:
    parts = []
    for b, e in result.backends.items():
        if e.status == SKIPPED:
            continue
        limits = f'<br><small>thresholds: {_limits(e)}</small>' if e.thresholds else ""
        if e.failures:
            items = "".join(f"<li>{_e(f)}</li>" for f in e.failures)
            parts.append(f'<div class="failures" data-backend="{_e(b)}"><p><b>{_e(b)}</b>: FAIL{limits}</p>'
                         f"<ul>{items}</ul></div>")
        else:
            parts.append(f'<p data-backend="{_e(b)}"><b>{_e(b)}</b>: pass (every threshold met){limits}</p>')
    return "".join(parts) or "<p>No backend ran.</p>"


def _skipped(result: ParityResult) -> str:
    rows = [f'<tr data-backend="{_e(b)}"><td class="l">{_e(b)}</td><td class="l">{_e(e.reason)}</td></tr>'
            for b, e in result.backends.items() if e.status == SKIPPED]
    if not rows:
        return "<p>None: every requested backend ran.</p>"
    return ('<table id="skipped"><thead><tr><th class="l">Backend</th><th class="l">Reason</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


_DETAIL_KEYS = ("max_abs", "mean_abs", "max_rel", "max_abs_scaled", "cosine_min", "cosine_mean",
                "top1_agreement", "top5_agreement", "nonfinite")


def _details(result: ParityResult) -> str:
    # Nine metric columns fit the page only if their snake_case names may wrap after "_".
    head = "".join(f"<th>{_e(k).replace('_', '_<wbr>')}</th>" for k in _DETAIL_KEYS)
    rows = []
    for b, e in result.ran().items():
        for o, m in e.outputs.items():
            cells = "".join(f"<td>{_num(getattr(m, k), DIGITS.get(k, 4))}</td>" for k in _DETAIL_KEYS)
            rows.append(f'<tr><td class="l">{_e(b)}</td><td class="l">{_e(o)}</td>{cells}</tr>')
    if not rows:
        return ""
    return (f'<div class="scroll"><table id="details"><thead><tr><th class="l">Backend</th>'
            f'<th class="l">Output</th>{head}'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table></div>') + _softmax_note(result)


def _softmax_note(result: ParityResult) -> str:
    """How each softmax output judged by its logits stands against what the logit error allows."""
    items = [f"<li><b>{_e(b)}</b> <code>{_e(o)}</code>: max |diff| {_num(m.max_abs)}, "
             f"{_num(m.judged('max_abs'))} of it beyond what the logit error allows</li>"
             for b, e in result.ran().items() for o, m in e.outputs.items() if m.softmax_excess is not None]
    if not items:
        return ""
    return ("<p>A softmax output (<code>predictions</code>) is judged by what its logits allow: a logit "
            "difference d moves no probability by more than (max d - min d) / 4, plus float32 rounding, so "
            "near-tied logits may differ in probability by far more than the logits' own scaled error; "
            f"its element limits count only the excess.</p><ul id=\"softmax\">{''.join(items)}</ul>")


def _worst_classes(result: ParityResult) -> str:
    series = per_class_series(result)
    if len(series) < 2:
        return ""
    ref_name, ref = series[0]
    ref_acc = dict(zip(ref.labels, ref.top1))
    counts = dict(zip(ref.labels, ref.count))
    others = [(n, dict(zip(pc.labels, pc.top1))) for n, pc in series[1:]]
    drop = {c: max(ref_acc[c] - acc.get(c, ref_acc[c]) for _, acc in others) for c in ref_acc}
    worst = sorted((c for c in drop if drop[c] > 0), key=lambda c: -drop[c])[:WORST_CLASSES]
    if not worst:
        return "<p>No class loses accuracy against the reference.</p>"
    head = "".join(f"<th>{_e(n)}</th>" for n, _ in others)
    rows = "".join(
        f'<tr><td class="l">{_e(c)}</td><td>{counts[c]}</td><td>{_pct(ref_acc[c])}</td>'
        + "".join(f"<td>{_pct(acc.get(c))}</td>" for _, acc in others) + "</tr>" for c in worst)
    return (f'<table id="worst-classes"><caption>Classes losing the most top-1 accuracy (%)</caption><thead><tr>'
            f'<th class="l">class</th><th>images</th><th>{_e(ref_name)}</th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _per_layer_text(section: Mapping[str, LayerSection]) -> str:
    parts = []
    for key, s in section.items():
        kept = s.keep_high_precision
        kept_html = ", ".join(f"<code>{_e(n)}</code>" for n in kept) or "none (no layer adds error)"
        parts.append(f'<h3>{_e(key)} ({_e(s.precision)})</h3><p>Keep in high precision first: {kept_html}</p>')
        if s.command:
            parts.append(f'<p>Re-calibrate with their ONNX nodes in float:</p>'
                         f'<pre><code class="command">{_e(s.command)}</code></pre>')
        if s.unmapped:
            parts.append("<p>No ONNX node is named under " + ", ".join(f"<code>{_e(n)}</code>" for n in s.unmapped)
                         + " (tf2onnx renamed it): add its node to <code>--keep-fp32</code> by hand.</p>")
        elif s.precision == "int8" and kept and s.exclude_nodes is None:
            parts.append("<p>ONNX node names were not available here (no onnx or model.onnx), so no "
                         "<code>trtdeploy calibrate --keep-fp32</code> line: keep these layers' Conv/Add nodes in "
                         "FP32.</p>")
        rows = "".join(
            f'<tr><td>{r.index}</td><td class="l">{_e(r.name)}</td><td>{_num(r.rel_error)}</td>'
            f'<td>{_num(r.growth)}</td><td>{_num(r.cosine, 6)}</td></tr>'
            for r in s.ranking[:10])
        parts.append('<table class="layer-ranking"><thead><tr><th>#</th><th class="l">layer</th><th>rel error</th>'
                     f"<th>growth</th><th>cosine</th></tr></thead><tbody>{rows}</tbody></table>")
    return "".join(parts)


def _kv_table(d: Mapping[str, Any], table_id: str) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, Mapping):
            v = ", ".join(f"{a} {b}" for a, b in v.items()) or "—"
        elif isinstance(v, (list, tuple)):
            v = ", ".join(str(x) for x in v)
        rows.append(f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>')
    return f'<table id="{_e(table_id)}"><tbody>{"".join(rows)}</tbody></table>'


def _size(x: Any) -> str:
    return "x".join(str(v) for v in x) if isinstance(x, (list, tuple)) and x else "unknown"


def _model_info(bundle: BundleInfo) -> str:
    """Where the weights come from and the input size against the training size."""
    weights = bundle.weights or "unknown"
    trained = "not trained" if weights == "random" else f"trained at {_size(bundle.trained_image_size)}"
    return (f'<p id="model">Model weights: <b>{_e(weights)}</b>; input {_e(_size(bundle.image_size))}, '
            f"{_e(trained)}</p>")


def _header(result: ParityResult) -> list[str]:
    """Title, verdict, reference and model lines."""
    bundle, ref, ok = result.bundle, result.reference, result.passed
    verdict = f"{_e(result.verdict.partition(': ')[2])}; " if result.verdict else ""
    ra = ref.accuracy
    accuracy = (f"; top-1 {_pct(ra.top1)}%, top-5 {_pct(ra.top5)}% on {ra.count} labelled images</p>" if ra
                else "; no labels, so no accuracy (agreement with the reference only)</p>")
    return [
        f"<h1>Parity report: {_e(bundle.model)}</h1>",
        f'<p><span class="verdict {"v-pass" if ok else "v-fail"}" id="verdict">{"PASS" if ok else "FAIL"}</span> '
        f"{verdict}bundle <code>{_e(bundle.path)}</code>, {_e(result.created)}</p>",
        f"<p>Reference: <b>{_e(ref.name)}</b> — {_e(ref.note)}{accuracy}",
        _model_info(bundle),
    ] + [f'<p class="note model-warning">WARNING: {_e(w)}</p>' for w in bundle.warnings]


def _charts_and_layers(result: ParityResult, mpl) -> list[str]:
    body = ["<h2>Error histograms</h2>"]
    hist = histogram_chart(result, mpl) if mpl else None
    body.append(img(hist, "error histograms", "chart-histogram") if hist else "<p>No histogram data.</p>")
    body.append("<h2>Per-class accuracy</h2>")
    pc = per_class_chart(result, mpl) if mpl else None
    if pc:
        body.append(img(pc, "per-class top-1 accuracy", "chart-per-class"))
    body.append(_worst_classes(result) if per_class_series(result) else
                "<p>No labels: per-class accuracy needs a labelled "
                "dataset (--data with class folders, or labels in reference.npz).</p>")
    section = result.per_layer or {}
    body.append("<h2>Per-layer error</h2>")
    if section:
        chart = per_layer_chart(section, mpl) if mpl else None
        if chart:
            body.append(img(chart, "per-layer error", "chart-per-layer"))
        body.append(_per_layer_text(section))
    else:
        body.append("<p>No per-layer data in this run.</p>")
    body.append(layer_timing_html(result.layer_timing, section))
    body += ["<h2>What the engines run</h2>", engine_layers_html(result.engine_layers),
             int8_choice_html(result.int8_choice)]
    return body


def render_html(result: ParityResult) -> str:
    """The report page as one string (no external resources)."""
    mpl = matplotlib_or_none()
    body = _header(result)
    if mpl is None:
        body.append('<p class="note" id="no-charts">matplotlib is not installed here, so this page has tables '
                    "only; <code>pip install matplotlib</code> and re-run for the charts.</p>")
    body += ["<h2>Summary</h2>", _summary_table(result),
             "<h2>Pass / fail</h2>", _failures(result),
             "<h2>Skipped backends</h2>", _skipped(result),
             "<h2>Per-output metrics</h2>", _details(result) or "<p>No backend ran.</p>"]
    body += _charts_and_layers(result, mpl)
    body += ["<h2>Data</h2>", _kv_table(result.data.to_json(), "data"),
             "<h2>Environment</h2>", _kv_table(result.environment.to_json(), "environment")]
    title = f"Parity: {result.bundle.model} — {'PASS' if result.passed else 'FAIL'}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + _GENERATOR +
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
