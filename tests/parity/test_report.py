"""deploy.parity.report: parity.json + one self-contained parity.html, rendered in headless Chromium.

CI needs Debian's `chromium` package for the rendering tests (they skip with the reason
without it) and `fonts-dejavu-core` for readable screenshots.
"""
from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from deploy.parity import (ParityRequest, ParityResult, Skip, backends, compare_intermediates, parse_threshold_args,
                           run_parity)
from deploy.parity.report import render_html, write_report
from deploy.runners.base import Runner, TensorSpec

from .fakes import record

C = 12
NASTY = '<script>alert("x")</script> & "quotes"'


class LinearRunner(Runner):
    def __init__(self, w, name, corrupt=None):
        self.w, self.name, self.corrupt = w, name, corrupt

    def input_specs(self):
        return [TensorSpec("input", (None, 5), np.dtype(np.float32))]

    def _infer(self, feed):
        z = feed["input"] @ self.w
        return {"logits": self.corrupt(z) if self.corrupt else z}


def synthetic_result(tmp_path: Path, monkeypatch) -> ParityResult:
    """A real run_parity result over a tiny bundle: passing, failing and skipped backends, per-layer data."""
    rng = np.random.default_rng(0)
    root = tmp_path / "bundle"
    root.mkdir()
    w = rng.standard_normal((5, C)).astype(np.float32)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    z = x @ w
    (root / "manifest.json").write_text(json.dumps({
        "format": 1, "model": {"name": "tiny_v2", "num_classes": C},
        "inputs": [{"name": "input", "shape": [-1, 5], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [-1, C], "dtype": "float32"}],
        "preprocessing": {"preset": "digits"}, "label_offset": 0}))
    labels = z.argmax(axis=1)
    labels[::7] = (labels[::7] + 1) % C
    np.savez(root / "reference.npz", input=x, **{"output:logits": z}, labels=labels)
    record(root, "reference.npz")
    noise = np.random.default_rng(1)

    def int8(v):
        out = v + noise.normal(0, 0.3, v.shape).astype(np.float32)
        return out

    runners = {"ort-fp32": LinearRunner(w, "ort-fp32", lambda v: v + 1e-7),
               "ort-fp16": LinearRunner(w, "ort-fp16", lambda v: v + noise.normal(0, 1e-3, v.shape)),
               "ort-int8": LinearRunner(w, "ort-int8", int8),
               "tf": Skip("TensorFlow is not installed here"),
               "trt-int8": Skip(NASTY)}
    monkeypatch.setattr(backends, "make_runner", lambda b, bundle, engines=None: runners.get(b, Skip("not here")))
    order = [f"tiny_v2/block{i}/unit_{j}/bottleneck_v2" for i in (1, 2) for j in (1, 2, 3)]
    fp32 = {n: rng.standard_normal((4, 8)) for n in order}
    per_layer = {}
    for key, scale in (("ort-fp16", 1e-3), ("ort-int8", 3e-2)):
        other = {n: v + rng.normal(0, scale * (1 + 3 * (i == 3)), v.shape) for i, (n, v) in enumerate(fp32.items())}
        per_layer[key] = compare_intermediates(fp32, other, order)
    from deploy.bundle import Bundle
    nodes = [(f"{n}/conv{k}/Conv2D", "Conv") for n in order for k in (1, 2)]
    request = ParityRequest.of("tf,ort-fp32,ort-fp16,ort-int8,trt-int8", batch_size=16,
                               thresholds=tuple(parse_threshold_args(["fp16:cosine_min=0.99"])))
    return run_parity(Bundle(root), request, per_layer=per_layer, onnx_nodes=nodes)


class _Collect(HTMLParser):
    """Every tag with its attributes, plus the text of elements of interest by id."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: dict[str, str] = {}
        self._stack: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag not in ("img", "br", "meta", "link", "input"):
            self._stack.append(a.get("id"))

    def handle_endtag(self, tag):
        if tag not in ("img", "br", "meta", "link", "input") and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        for i in self._stack:
            if i:
                self.text[i] = self.text.get(i, "") + data


def parse(html_text: str) -> _Collect:
    p = _Collect()
    p.feed(html_text)
    return p


@pytest.fixture
def report(tmp_path, monkeypatch):
    result = synthetic_result(tmp_path, monkeypatch)
    json_path, html_path = write_report(result, tmp_path / "reports")
    return result, json_path, html_path


def test_files_json_and_self_contained_html(report):
    result, json_path, html_path = report
    assert json_path.name == "parity.json" and html_path.name == "parity.html"
    assert json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON")) == \
        json.loads(json.dumps(result.to_json()))
    assert not list(json_path.parent.glob(".*tmp*"))  # atomic writes leave no temporaries
    text = html_path.read_text()
    doc = parse(text)
    for tag, attrs in doc.tags:
        assert tag not in ("link", "iframe", "object", "embed"), tag
        for key in ("src", "href"):
            if key in attrs:
                assert attrs[key].startswith(("data:", "#")), f"external {key} on <{tag}>: {attrs[key][:60]}"
        assert not (tag == "script"), "the report needs no scripts"
    imgs = [a for t, a in doc.tags if t == "img"]
    assert {a["id"] for a in imgs} == {"chart-histogram", "chart-per-class", "chart-per-layer"}
    # Text from the result is escaped, never markup.
    assert NASTY not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in text


def test_page_content(report):
    result, _, html_path = report
    doc = parse(html_path.read_text())
    rows = [a for t, a in doc.tags if t == "tr" and "data-backend" in a]
    summary = {a["data-backend"]: a["class"] for a in rows[:len(result.backends)]}
    assert summary == {"tf": "skipped", "ort-fp32": "pass", "ort-fp16": "pass", "ort-int8": "fail",
                       "trt-int8": "skipped"}
    assert doc.text["verdict"] == "FAIL"
    assert result.verdict == "FAIL: ort-int8 missed its thresholds"
    assert "ort-int8 missed its thresholds; bundle" in html_path.read_text()
    cmd = result.per_layer["ort-int8"].command
    unit = "tiny_v2/block2/unit_1/bottleneck_v2"
    assert cmd.startswith("trtdeploy calibrate ") and f"--keep-fp32 {unit}/conv1/Conv2D {unit}/conv2/Conv2D" in cmd
    assert result.per_layer["ort-int8"].keep_high_precision[0] == "tiny_v2/block2/unit_1/bottleneck_v2"
    page = html_path.read_text()
    assert html.escape(cmd) in page
    assert result.backends["ort-int8"].failures
    for failure in result.backends["ort-int8"].failures:
        assert html.escape(failure) in page
    assert "top1_agreement ≥ 0.98" in page  # thresholds shown with their direction


def test_an_older_parity_json_is_read_before_it_is_replaced(tmp_path, monkeypatch, caplog):
    """The "never replace a report with one that compared less" check reads whatever parity.json
    is there as plain JSON: one from an earlier version, with keys this one does not know, counts."""
    result = synthetic_result(tmp_path, monkeypatch)  # ort-fp32, ort-fp16 and ort-int8 ran on 60 images
    out = tmp_path / "reports"
    out.mkdir()
    older = {"schema": "older", "backends": {"trt-int8": {"status": "ran", "pass": True},
                                             "ort-fp32": {"status": "ran"}}, "data": {"num_images": 60}}
    (out / "parity.json").write_text(json.dumps(older))
    json_path, _ = write_report(result, out)
    assert json_path != out / "parity.json" and json.loads((out / "parity.json").read_text()) == older
    assert "trt-int8 ran there, not in this run" in caplog.text
    assert {r.name for r in caplog.records if r.levelname == "WARNING"} == {"trtdeploy.parity"}
    # One this version cannot make sense of is replaced, as before.
    (out / "parity.json").write_text(json.dumps({"backends": ["not", "a", "mapping"], "data": None}))
    assert write_report(result, out)[0] == out / "parity.json"
    assert json.loads((out / "parity.json").read_text()) == result.to_json()


def test_without_matplotlib_tables_only(tmp_path, monkeypatch):
    result = synthetic_result(tmp_path, monkeypatch)
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)
    doc = parse(render_html(result))
    assert not [a for t, a in doc.tags if t == "img"]
    assert "matplotlib is not installed" in doc.text["no-charts"]
    assert [a for t, a in doc.tags if t == "table" and a.get("id") == "summary"]


# --- rendering in headless Chromium -------------------------------------------------------------

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome"))
                 if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")

# Appended to a copy of the page only: after load, write what the browser decoded into the DOM.
PROBE = """<script>window.addEventListener('load', () => {
  const d = document.createElement('pre'); d.id = 'probe';
  d.textContent = JSON.stringify({
    images: [...document.images].map(i => ({id: i.id, w: i.naturalWidth, h: i.naturalHeight, ok: i.complete})),
    rows: [...document.querySelectorAll('#summary tbody tr')].map(r => [r.dataset.backend, r.className,
            r.querySelector('td.result').textContent]),
    verdict: document.getElementById('verdict').textContent,
    width: document.documentElement.scrollWidth});
  document.body.appendChild(d);});</script>"""


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={tmp / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@needs_chromium
def test_rendered_dom_in_chromium(report, tmp_path):
    result, _, html_path = report
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    proc = chromium("--virtual-time-budget=10000", "--dump-dom", probe_page.as_uri(), tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    probe = json.loads(parse(proc.stdout).text["probe"])
    assert [r[0] for r in probe["rows"]] == list(result.backends)
    assert {r[0]: r[2] for r in probe["rows"]} == {"tf": "SKIPPED", "ort-fp32": "PASS", "ort-fp16": "PASS",
                                                   "ort-int8": "FAIL", "trt-int8": "SKIPPED"}
    assert probe["verdict"] == "FAIL"
    assert len(probe["images"]) == 3
    for img in probe["images"]:
        assert img["ok"] and img["w"] > 200 and img["h"] > 100, img  # the base64 PNGs decoded


@needs_chromium
def test_screenshot_is_not_blank(report, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    _, _, html_path = report
    shot = tmp_path / "shot.png"
    proc = chromium("--window-size=1280,2000", f"--screenshot={shot}", html_path.as_uri(), tmp=tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    im = Image.open(shot).convert("RGB")
    assert im.size == (1280, 2000)
    pixels = np.asarray(im)
    non_white = (pixels < 240).any(axis=2).mean()
    assert non_white > 0.02, f"only {non_white:.1%} of the page is drawn"
    # The verdict badge is red on a FAIL page: some strongly red pixels must be there.
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 100


# A page probe: how far each table and scroll box reaches, at the window size Chromium is given.
WIDTH_PROBE = """<script>window.addEventListener('load', () => {
  const d = document.createElement('pre'); d.id = 'probe';
  d.textContent = JSON.stringify({
    viewport: window.innerWidth, page: document.documentElement.scrollWidth,
    tables: [...document.querySelectorAll('table')].map(t => [t.id || t.className,
              Math.ceil(t.getBoundingClientRect().right)]),
    scrolls: [...document.querySelectorAll('.scroll')].map(s => [s.firstElementChild.id, s.scrollWidth,
              s.clientWidth])});
  document.body.appendChild(d);});</script>"""


@needs_chromium
def test_tables_fit_a_1400px_window(report, tmp_path):
    """Every table, the per-output one included, fits the page at 1400 px: nothing sticks out of
    the page and no table needs its scroll box."""
    result, _, _ = report
    result = replace(result, backends={  # a second output, as exported models have
        b: replace(e, outputs={**e.outputs, "predictions": e.outputs["logits"]}) if e.outputs else e
        for b, e in result.backends.items()})
    page = tmp_path / "wide.html"
    page.write_text(render_html(result).replace("</body>", WIDTH_PROBE + "</body>"))
    proc = chromium("--window-size=1400,1000", "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
                    tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    probe = json.loads(parse(proc.stdout).text["probe"])
    assert probe["viewport"] == 1400 and probe["page"] <= 1400, probe
    assert all(right <= 1400 for _, right in probe["tables"]), probe["tables"]
    assert "details" in [name for name, _, _ in probe["scrolls"]]
    assert all(scroll <= client for _, scroll, client in probe["scrolls"]), probe["scrolls"]
