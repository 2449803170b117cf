"""The main job end to end: `trtdeploy demo` on the embedded default model."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")

from deploy.cli import main  # noqa: E402


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    bundle = out / "bundle"
    for rel in ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "calibration/trt.cache",
                "calibration/scales.json", "reports/parity.json", "reports/parity.html"):
        assert (bundle / rel).is_file(), rel
    assert len(list((out / "data" / "heldout").rglob("*.png"))) == 360
    result = json.loads((bundle / "reports" / "parity.json").read_text())
    assert result["pass"] is True
    backends = result["backends"]
    for name in ("tf", "ort-fp32", "ort-fp16", "ort-int8"):
        assert backends[name]["status"] == "ran" and backends[name]["pass"] is True, name
        assert backends[name]["accuracy"]["top1"] >= 99.0
    for name in ("trt-fp32", "trt-fp16", "trt-int8"):
        if backends[name]["status"] == "skipped":
            assert backends[name]["reason"]
    assert set(result["per_layer"]) == {"fp16", "int8"}
    assert "parity.html" in printed
    # a second run replaces its own output; a foreign non-empty directory is refused
    assert main(["demo", "--out", str(out)]) == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("mine")
    assert main(["demo", "--out", str(other)]) == 2
    assert (other / "x").read_text() == "mine"
