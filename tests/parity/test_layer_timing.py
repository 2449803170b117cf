"""deploy.parity.layer_timing: the profiles `trtdeploy profile` writes, read for the parity report,
and its "Per-layer time" section (time per slim unit beside the unit's error)."""
from __future__ import annotations

import json

from deploy.cli import main
from deploy.parity.layer_timing import EngineProfile, LayerTime, layer_timing_html, load_profiles, unit_shares
from deploy.parity.per_layer import LayerError, LayerSection

from . import fakes

UNITS = ["m/block1/unit_1/bottleneck_v2", "m/block1/unit_2/bottleneck_v2", "m/logits"]


def _profile(**changes) -> EngineProfile:
    fields = dict(path="reports/profile.m.int8.json", engine="e/m.int8.plan", precision="int8", batch=1, calls=3,
                  total_median_ms=1.0, gpu="Fake GPU", layers=(
                      LayerTime("m/block1/unit_1/bottleneck_v2/conv1/Conv2D + m/block1/unit_1/bottleneck_v2/Relu",
                                0.5, 0.5),
                      LayerTime("m/block1/unit_1/bottleneck_v2/add + m/block1/unit_2/bottleneck_v2/preact/Relu",
                                0.3, 0.3),
                      LayerTime("m/logits/Conv2D <script>", 0.2, 0.2)))
    fields.update(changes)
    return EngineProfile(**fields)


def test_unreadable_profile_is_listed_not_fatal(tmp_path):
    (tmp_path / "profile.a.json").write_text("{not json")
    (tmp_path / "profile.b.json").write_text('{"engine": "x"}')
    (tmp_path / "profile.c.json").write_text('{"engine": "x", "layers": [{"name": "conv"}]}')
    a, b, c = load_profiles(tmp_path)
    assert a.error and "no layer list" in b.error and "median_ms" in c.error
    assert a.to_json() == {"path": str(tmp_path / "profile.a.json"), "error": a.error}
    html = layer_timing_html([a, b, c])
    assert html.count("not shown") == 3
    assert "No engine was profiled" in layer_timing_html(())


def test_section_puts_time_next_to_error_per_unit():
    profile = _profile()
    # the fused layer spanning two units counts for the first one its name mentions
    assert unit_shares(profile, UNITS) == {UNITS[0]: 0.8, UNITS[1]: 0.0, UNITS[2]: 0.2}
    section = LayerSection("int8", {u: LayerError(e) for u, e in zip(UNITS, (0.01, 0.02, 0.05))}, (), ())
    html = layer_timing_html([profile], {"int8": section})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<td class="l">m/block1/unit_1/bottleneck_v2</td><td>0.01</td><td>80.0%</td>' in html
    assert "time-vs-error" not in layer_timing_html([profile], {"fp16": LayerSection("fp16", section.layers, (), ())})
    renamed = _profile(layers=(LayerTime("conv_17", 1.0, 1.0),))
    assert "cannot be put side by side" in layer_timing_html([renamed], {"int8": section})


def test_parity_run_shows_the_bundles_profiles(tmp_path, monkeypatch, capsys):
    """`trtdeploy parity` reads BUNDLE/reports/profile.*.json into the result, parity.json and the page."""
    bundle = fakes.make_bundle(tmp_path / "b")
    bundle.reports_dir.mkdir(parents=True)
    (bundle.reports_dir / "profile.tiny.fp16.json").write_text(json.dumps({
        "engine": "engines/tiny.fp16.plan", "precision": "fp16", "batch": 1, "calls": 2, "total_ms": {"median": 0.5},
        "machine": {"gpu": {"name": "Fake GPU"}}, "layers": [{"name": "conv", "median_ms": 0.5, "share": 1.0}]}))
    fakes.install_runners(monkeypatch, bundle, {"ort-fp32": None})
    out = tmp_path / "r"
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32", "--out", str(out)]) == 0
    capsys.readouterr()
    (profile,) = json.loads((out / "parity.json").read_text())["layer_timing"]
    assert profile["engine"] == "engines/tiny.fp16.plan" and profile["gpu"] == "Fake GPU"
    assert profile["stale"] is False and profile["layers"] == [{"name": "conv", "median_ms": 0.5, "share": 1.0}]
    page = (out / "parity.html").read_text()
    assert page.index("Per-layer error") < page.index('id="layer-time"') < page.index("<h2>Data</h2>")
    assert "<h3>tiny.fp16.plan</h3>" in page and "Fake GPU: 0.500 ms per call" in page
