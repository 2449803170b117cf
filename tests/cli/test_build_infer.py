"""`trtdeploy build` / `trtdeploy infer`: argument handling and the label logic (CPU)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.cli import build_parser, main
from deploy.cli.infer import label_for, probabilities, softmax, top_k
from tests.bundle.test_manifest import VALID


def test_build_arguments_reach_the_config(tmp_path, monkeypatch):
    import deploy.trt.build as build_module

    seen = {}

    def fake_build(bundle, config):
        seen["config"] = config
        return tmp_path / "engines" / "m.int8.plan"

    (tmp_path / "manifest.json").write_text(json.dumps({**VALID, "model": {"name": "m", "num_classes": 10}}))
    monkeypatch.setattr(build_module, "build_engine", fake_build)
    assert main(["build", str(tmp_path), "--precision", "int8", "--batch", "2", "4", "8", "--int8-mode",
                 "implicit", "--version-compatible", "--hardware-compat", "ampere+", "--workspace", "512"]) == 0
    c = seen["config"]
    assert (c.precision, c.batch, c.mode, c.version_compatible, c.hardware_compat, c.workspace_mib) == (
        "int8", (2, 4, 8), "implicit", True, "ampere+", 512)


def test_build_usage_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text(json.dumps({**VALID, "model": {"name": "m", "num_classes": 10}}))
    assert main(["build", str(tmp_path), "--precision", "fp16", "--batch", "8", "1", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --batch 8 1 2: need 1 <= MIN <= OPT <= MAX"


def test_help_needs_no_tensorrt():
    import sys

    parser = build_parser()
    assert "build" in parser.format_help() and "infer" in parser.format_help()
    assert "tensorrt" not in sys.modules and "pycuda" not in sys.modules


def test_probabilities_prefer_predictions_then_softmax_of_logits():
    logits = np.array([[1.0, 3.0, 2.0]])
    np.testing.assert_allclose(probabilities({"logits": logits}), softmax(logits))
    np.testing.assert_allclose(probabilities({"logits": logits, "predictions": np.array([[0.2, 0.5, 0.3]])}),
                               [[0.2, 0.5, 0.3]])
    assert softmax(logits).sum() == pytest.approx(1.0)


def test_label_offset_and_background():
    labels = ["cat", "dog"]
    probs = np.array([0.5, 0.1, 0.4])  # index 0 is the background of a 1001-class style model
    top = top_k(probs, 3, offset=1, labels=labels)
    assert [(t.class_index, t.label) for t in top] == [(None, "background"), (1, "dog"), (0, "cat")]
    assert [t.score for t in top] == [0.5, 0.4, 0.1]
    # a labels file with one line per model output (background included) is indexed by output
    assert label_for(2, 1, ["background", "cat", "dog"], 3).label == "dog"
    assert label_for(1, 0, None, 10).label == "class 1"


def test_infer_runs_tensorrt_without_events_and_with_graphs_on_request(default_bundle_dir, tmp_path, monkeypatch,
                                                                        capsys):
    from PIL import Image

    from deploy.trt import runtime as runtime_module

    seen = {}

    class Recorder:
        name = "tensorrt-fp16"
        max_batch = 8  # TrtRunner.max_batch: the profile's largest batch, infer chunks by it

        def __init__(self, plan, **options):
            seen.update(options, plan=plan)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def infer(self, feed):
            (x,) = feed.values()
            return {"logits": np.tile(np.arange(10.0), (len(x), 1))}

    monkeypatch.setattr(runtime_module, "TrtRunner", Recorder)
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(image)
    plan = tmp_path / "m.fp16.plan"
    plan.write_bytes(b"plan")  # the runner is faked; the engine chosen must exist
    assert main(["infer", str(default_bundle_dir), str(image), "--engine", str(plan), "--cuda-graph"]) == 0
    assert seen == {"plan": plan, "timing": False, "cuda_graph": True}
    assert main(["infer", str(default_bundle_dir), str(image), "--engine", str(plan)]) == 0
    assert seen["cuda_graph"] is False
    assert "class 9" in capsys.readouterr().out
