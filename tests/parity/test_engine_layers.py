"""deploy.parity.engine_layers: what each TensorRT engine of a parity run runs, read from the
layers files `trtdeploy build` writes (recorded inspector JSON from tests/trt/inspector_fixtures.py),
in the typed result, parity.json and the report."""
from __future__ import annotations

import json

from deploy.cli import main
from deploy.parity.engine_layers import NO_LAYERS_FILE, EngineLayers, engine_layers, engine_layers_html
from deploy.trt.inspection import layers_document, layers_path
from tests.trt import inspector_fixtures as fx
from tests.trt.test_inspection import write_engine

from . import fakes


def _doc(fixture, precision, tensorrt):
    return layers_document(fixture, plan=f"m.{precision}.plan", tensorrt=tensorrt, precision=precision,
                           mode="explicit", convolutions=fx.CONVS)


def test_each_engine_is_summarised_and_flagged(tmp_path):
    good = write_engine(tmp_path / "a", "int8", _doc(fx.INT8_TRT10, "int8", "10.16.1.11"))
    bad = write_engine(tmp_path / "b", "fp16", _doc(fx.FP16_TRT11, "fp16", "11.4.0.106"))
    old = write_engine(tmp_path / "c", "fp32")
    broken = write_engine(tmp_path / "d", "int8", _doc(fx.INT8_TRT10, "int8", "10.16.1.11"))
    layers_path(broken).write_text("{broken")
    entries = {e.backend: e for e in engine_layers([("trt-int8", str(good)), ("trt-fp16", str(bad)),
                                                    ("trt-fp32", str(old)), ("trt-int8b", str(broken))])}
    assert list(entries) == ["trt-int8", "trt-fp16", "trt-fp32", "trt-int8b"]
    assert entries["trt-int8"].ok is True and entries["trt-fp16"].ok is False
    assert entries["trt-fp32"] == EngineLayers("trt-fp32", str(old), None, (NO_LAYERS_FILE,))
    assert entries["trt-int8b"].ok is None and "unreadable layers file" in entries["trt-int8b"].lines[0]
    html = engine_layers_html(entries.values())
    section = html[html.index('<table id="engine-layers">'):]
    assert 'data-backend="trt-fp16"' in section and "FLAGGED" in section
    assert f"{fx.C6} (FP32)" in section and "4 of 6 convolutions run in INT8" in section
    assert engine_layers_html(()) == "<p>No TensorRT engine ran.</p>"


def test_parity_reports_what_its_engines_run(tmp_path, monkeypatch, capsys):
    """An fp16 engine with an FP32 convolution, run by `trtdeploy parity`: flagged in parity.json and the page."""
    bundle = fakes.make_bundle(tmp_path / "b")
    plan = write_engine(bundle.root, "fp16", _doc(fx.FP16_TRT11, "fp16", "11.4.0.106"))
    fakes.install_runners(monkeypatch, bundle, {"ort-fp32": None, "trt-fp16": None})
    out = tmp_path / "r"
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,trt-fp16", "--engine", str(plan),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    (entry,) = json.loads((out / "parity.json").read_text())["engine_layers"]
    assert entry["backend"] == "trt-fp16" and entry["engine"] == str(plan) and entry["ok"] is False
    assert any(f"{fx.C6} (FP32)" in line for line in entry["lines"])
    page = (out / "parity.html").read_text()
    assert page.index("<h2>What the engines run</h2>") < page.index('<table id="engine-layers">') \
        < page.index("<h2>Data</h2>")
    assert 'data-backend="trt-fp16"' in page and "FLAGGED" in page
