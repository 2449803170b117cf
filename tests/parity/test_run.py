"""deploy.parity.run: run_parity over fake runners: the result, pass/fail, skips, errors, references."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from deploy.errors import UsageError
from deploy.parity import ParityRequest, Skip, Thresholds, parse_threshold_args, run_parity

from .fakes import C, FEATURES, FakeRunner, install_runners, make_bundle, swap_top2


def test_run_parity_schema_pass_fail_and_skips(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    rng = np.random.default_rng(5)
    install_runners(monkeypatch, bundle, {
        "ort-fp32": lambda z: z + 1e-7,
        "ort-fp16": swap_top2(every=4),  # 10 of 40 rows change top-1: fails 0.995
        "ort-int8": lambda z: z + rng.normal(0, 1e-3, z.shape).astype(np.float32),
        "trt-int8": Skip("no GPU here"),
    })
    result = run_parity(bundle, ParityRequest.of("tf,ort-fp32,ort-fp16,ort-int8,trt-int8", batch_size=16))
    json.dumps(result.to_json(), allow_nan=False)
    assert set(result.to_json()) >= {"reference", "pass", "backends", "environment", "data"}
    assert result.reference.name == "reference.npz"
    assert result.data.num_images == 40 and result.data.labels is True
    b = result.backends
    assert list(b) == ["tf", "ort-fp32", "ort-fp16", "ort-int8", "trt-int8"]
    assert b["tf"].status == "skipped" and b["tf"].reason
    assert (b["trt-int8"].status, b["trt-int8"].reason, b["trt-int8"].precision) == ("skipped", "no GPU here", "int8")
    for name in ("ort-fp32", "ort-fp16", "ort-int8"):
        e = b[name]
        assert e.status == "ran"
        assert set(e.outputs) == {"logits", "predictions"}
        assert set(e.outputs["logits"].to_json()) >= {"max_abs", "mean_abs", "max_rel", "cosine_min", "cosine_mean",
                                                      "top1_agreement", "top5_agreement"}
        assert set(e.accuracy.to_json()) >= {"top1", "top5", "delta_top1_vs_fp32"}
        h = e.histogram
        assert sum(h.counts) + h.zeros + h.underflow + h.overflow == 40 * C
    assert b["ort-fp32"].passed is True and b["ort-int8"].passed is True
    assert b["ort-fp16"].passed is False
    assert b["ort-fp16"].outputs["logits"].top1_agreement == pytest.approx(30 / 40)
    assert any("top1_agreement 0.75 < 0.995" in f for f in b["ort-fp16"].failures)
    assert result.passed is False and result.verdict == "FAIL: ort-fp16 missed its thresholds"
    assert b["ort-int8"].thresholds["logits"] == Thresholds.for_precision("int8")
    assert b["ort-int8"].to_json()["thresholds"]["logits"] == Thresholds.for_precision("int8").to_json()
    # The fixture labels 4 of 40 images wrongly on purpose.
    assert result.reference.accuracy.top1 == pytest.approx(90.0)
    assert b["ort-fp16"].accuracy.delta_top1_vs_fp32 == pytest.approx(b["ort-fp16"].accuracy.top1 - 90.0)
    assert b["ort-fp32"].accuracy.delta_top1_vs_fp32 == pytest.approx(0.0)


def test_run_parity_accuracy_delta_fails_int8(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    install_runners(monkeypatch, bundle, {"ort-int8": swap_top2(every=20)})  # 2 of 40 rows change
    overrides = parse_threshold_args(["ort-int8:top1_agreement=0.9"])
    result = run_parity(bundle, ParityRequest.of(["ort-int8"], thresholds=tuple(overrides)))
    e = result.backends["ort-int8"]
    delta = e.accuracy.delta_top1_vs_fp32
    assert delta < -1.0  # a correct row turned wrong costs 2.5 points
    assert e.passed is False and any(f.startswith("logits: accuracy_drop") for f in e.failures)
    assert not any("top1_agreement" in f for f in e.failures)  # overridden to 0.9


def test_run_parity_tf_reference_and_errors(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b", labels=False)

    class Boom(FakeRunner):
        def _infer(self, feed):
            if self.calls == 1:
                raise RuntimeError("device lost")
            return super()._infer(feed)

    made = install_runners(monkeypatch, bundle, {"tf": None, "ort-fp32": None,
                                                 "trt-fp32": Boom(bundle.w, "trt-fp32")})
    result = run_parity(bundle, ParityRequest.of(["ort-fp32", "trt-fp32"], batch_size=8, num_images=20))
    assert result.reference.name == "tf"
    assert made["tf"].calls == 3  # TF ran on the same 3 batches (20 images, batch 8)
    assert result.data.num_images == 20 and result.data.labels is False
    assert result.backends["ort-fp32"].passed is True
    assert result.backends["ort-fp32"].accuracy is None
    e = result.backends["trt-fp32"]
    assert e.status == "error" and e.passed is False and "device lost" in e.reason
    assert "after 8 images" in e.reason
    assert result.verdict == "FAIL: trt-fp32 stopped with an error"
    assert not made["tf"].active  # every runner closed again


def test_run_parity_folder_data_without_tf(tmp_path, monkeypatch):
    """--data goes through deploy.data.inputs.InputSet (faked here); ort-fp32 is the reference."""
    bundle = make_bundle(tmp_path / "b")
    x = np.random.default_rng(9).standard_normal((12, FEATURES)).astype(np.float32)
    x[:, 0] = 1.0
    y = (x @ bundle.w).argmax(axis=1) - 1
    y[::4] = (y[::4] + 1) % (C - 1)
    calls = {}

    class FakeSet:
        skipped = []

        @classmethod
        def from_path(cls, path, *, input, preprocess, num=None, seed=0, skip_bad=False, skip_option=None):
            calls["from_path"] = (Path(path), input.name, preprocess, num, seed)
            return cls()

        def check_labels(self, num_labels):
            calls["check_labels"] = num_labels

        def batches_with_labels(self, batch_size, desc):
            for s in range(0, 12, batch_size):
                yield {"input": x[s:s + batch_size]}, y[s:s + batch_size]

    class FakePreprocess:
        @classmethod
        def from_json(cls, d):
            return ("preprocess", d["preset"])

    monkeypatch.setitem(sys.modules, "deploy.data.inputs", types.SimpleNamespace(InputSet=FakeSet))
    monkeypatch.setitem(sys.modules, "deploy.data.preprocess", types.SimpleNamespace(Preprocess=FakePreprocess))
    install_runners(monkeypatch, bundle, {"ort-fp32": None, "ort-int8": swap_top2(every=6)})
    result = run_parity(bundle, ParityRequest.of("ort-fp32,ort-int8", data=tmp_path / "imgs", num_images=12, seed=3,
                                                 batch_size=5))
    assert calls["from_path"] == (tmp_path / "imgs", "input", ("preprocess", "digits"), 12, 3)
    assert result.reference.name == "ort-fp32"
    assert result.data.num_images == 12
    # The corruption runs per batch: row 0 of each of the 3 batches (5, 5, 2 images) is swapped.
    assert result.backends["ort-int8"].outputs["logits"].top1_agreement == pytest.approx(9 / 12)
    assert result.reference.accuracy.top1 == pytest.approx(100.0 * ((x @ bundle.w).argmax(1) == y + 1).mean())


def test_run_parity_usage_errors(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    install_runners(monkeypatch, bundle, {})
    with pytest.raises(UsageError, match="unknown output"):
        run_parity(bundle, ParityRequest.of(thresholds=tuple(parse_threshold_args(["ort-int8:probs:max_abs=1"]))))
    with pytest.raises(UsageError, match="no FP32 reference"):
        run_parity(bundle, ParityRequest.of(data=tmp_path / "imgs"))
    with pytest.raises(UsageError, match="the batch size must be at least 1"):  # the CLI's check is its option's type
        ParityRequest.of(batch_size=0)
