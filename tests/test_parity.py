"""deploy.parity: metrics with known answers, thresholds, overrides, backends, run_parity, CLI."""
from __future__ import annotations

import json
import shlex
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from deploy import parity
from deploy.bundle import Bundle
from deploy.cli import build_parser, main
from deploy.errors import DataError, InputError, UsageError
from deploy.parity import (AccuracyCounter, Skip, Thresholds, accuracy, compare_intermediates, compare_outputs,
                           keep_in_high_precision, parse_threshold_args, parse_threshold_override, rank_layers,
                           resolve_thresholds, run_parity)
from deploy.runners.base import Runner, TensorSpec

C = 10  # classes of the tiny fake model
FEATURES = 6


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_bundle(root: Path, n: int = 40, label_offset: int = 1, labels: bool = True, seed: int = 0) -> Bundle:
    """manifest.json + reference.npz of a linear 'model' with C logits (index 0 = background when offset 1)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    w = rng.standard_normal((FEATURES, C)).astype(np.float32)
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    # Feature 0 is a constant 1 that lifts every logit but the background one: no image is background.
    x[:, 0] = 1.0
    w[0, 1:] = 8.0
    w[:, 0] = 0.0
    logits = x @ w
    manifest = {
        "format": 1,
        "model": {"name": "tiny", "num_classes": C, "image_size": [1, 1], "weights": "random"},
        "inputs": [{"name": "input", "shape": [-1, FEATURES], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [-1, C], "dtype": "float32"},
                    {"name": "predictions", "shape": [-1, C], "dtype": "float32"}],
        "preprocessing": {"preset": "digits", "height": 1, "width": 1, "layout": "NCHW"},
        "label_offset": label_offset,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    arrays = {"input": x, "output:logits": logits, "output:predictions": softmax(logits)}
    if labels:
        y = logits.argmax(axis=1) - label_offset
        y[:4] = (y[:4] + 3) % (C - label_offset)  # the reference gets these 4 wrong: accuracy < 100%
        arrays["labels"] = y
    np.savez(root / "reference.npz", **arrays)
    bundle = Bundle(root)
    bundle.w = w  # the fake runners compute the same model
    return bundle


class FakeRunner(Runner):
    """The tiny linear model, with an optional corruption of its logits."""

    def __init__(self, w: np.ndarray, name: str, corrupt=None):
        self.w = w
        self.name = name
        self.corrupt = corrupt
        self.calls = 0
        self.active = False

    def activate(self) -> None:
        self.active = True

    def close(self) -> None:
        self.active = False

    def input_specs(self):
        return [TensorSpec("input", (None, FEATURES), np.dtype(np.float32))]

    def _infer(self, feed):
        self.calls += 1
        logits = feed["input"] @ self.w
        if self.corrupt is not None:
            logits = self.corrupt(logits)
        return {"logits": logits, "predictions": softmax(logits)}


def swap_top2(every: int):
    """Swap the two largest logits in every `every`-th row: top-1 changes, top-5 keeps it."""
    def f(logits):
        out = logits.copy()
        for i in range(0, len(out), every):
            a, b = np.argsort(-out[i])[:2]
            out[i, [a, b]] = out[i, [b, a]]
        return out
    return f


def install_runners(monkeypatch, bundle: Bundle, specs: dict):
    """make_runner returns FakeRunner/Skip per backend; anything unlisted is skipped."""
    made = {}

    def fake(backend, b, engines=None):
        spec = specs.get(backend, Skip(f"{backend}: not in this test"))
        if isinstance(spec, Skip) or isinstance(spec, Runner):
            made[backend] = spec
            return spec
        made[backend] = FakeRunner(bundle.w, backend, spec)
        return made[backend]

    monkeypatch.setattr(parity, "make_runner", fake)
    return made


# --- metrics -----------------------------------------------------------------------------


def test_identical_arrays_give_zero_error_and_full_agreement():
    x = np.random.default_rng(1).standard_normal((8, C))
    m = compare_outputs(x, x.copy())
    assert m["max_abs"] == 0 and m["mean_abs"] == 0 and m["max_rel"] == 0
    assert m["cosine_min"] == pytest.approx(1.0) and m["cosine_mean"] == pytest.approx(1.0)
    assert m["top1_agreement"] == 1.0 and m["top5_agreement"] == 1.0
    assert m["nonfinite"] == 0


def test_known_top1_permutation_gives_known_agreement():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((10, C))
    cand = swap_top2(every=3)(ref)  # rows 0, 3, 6, 9 swapped
    m = compare_outputs(ref, cand)
    assert m["top1_agreement"] == pytest.approx(6 / 10)
    assert m["top5_agreement"] == 1.0  # the reference top-1 is still second
    # Push the reference top-1 to the very bottom in two rows: top-5 loses them.
    cand2 = ref.copy()
    for i in (1, 2):
        cand2[i, ref[i].argmax()] = ref[i].min() - 1
    m2 = compare_outputs(ref, cand2)
    assert m2["top1_agreement"] == pytest.approx(8 / 10)
    assert m2["top5_agreement"] == pytest.approx(8 / 10)


def test_abs_rel_cosine_values():
    ref = np.zeros((2, 4))
    ref[:, 0] = 100.0
    cand = ref.copy()
    cand[0, 1] = 0.01  # |a| = 0 there: the floor 1e-3 * 100 = 0.1 is the denominator
    cand[1, 0] = 101.0  # 1% of a large value
    m = compare_outputs(ref, cand)
    assert m["max_abs"] == pytest.approx(1.0)
    assert m["mean_abs"] == pytest.approx(1.01 / 8)
    assert m["max_rel"] == pytest.approx(0.1)
    assert m["max_abs_scaled"] == pytest.approx(1.0 / 101.0 * 101.0 / 100.0)  # max|ref| is the reference's 100
    assert m["cosine_min"] == pytest.approx(100 / np.hypot(100, 0.01))


def test_opposite_and_zero_samples_cosine():
    ref = np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    cand = np.array([[-1.0, -2.0], [0.0, 0.0], [1.0, 0.0]])
    m = compare_outputs(ref, cand)
    assert m["cosine_min"] == pytest.approx(-1.0)
    assert m["cosine_mean"] == pytest.approx((-1.0 + 1.0 + 0.0) / 3)


def test_nonfinite_values_are_counted_fail_and_stay_json_safe():
    ref = np.ones((3, C))
    ref[:, 2] = 5
    cand = ref.copy()
    cand[1, 2] = np.nan
    cand[2, 0] = np.inf
    m = compare_outputs(ref, cand)
    assert m["nonfinite"] == 2
    assert m["top1_agreement"] == pytest.approx(1 / 3)  # rows with NaN/inf never agree
    json.dumps(m, allow_nan=False)
    assert any("non-finite" in f for f in Thresholds.for_precision("int8").check(m))


def test_non_class_outputs_have_no_agreement():
    ref = np.random.default_rng(3).standard_normal((4, 3, 5, 5))
    m = compare_outputs(ref, ref + 1e-3)
    assert m["top1_agreement"] is None and m["top5_agreement"] is None
    assert m["max_abs"] == pytest.approx(1e-3)


def test_shape_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="shape"):
        compare_outputs(np.zeros((2, 3)), np.zeros((2, 4)))


def test_label_offset_maps_dataset_labels_to_logit_indices():
    labels = np.array([0, 1, 2, 3])
    logits = np.zeros((4, 5))
    logits[np.arange(4), labels + 1] = 1.0  # slim: background at index 0
    assert accuracy(logits, labels, label_offset=1)["top1"] == 100.0
    assert accuracy(logits, labels, label_offset=0)["top1"] == 0.0
    # top-5 of 5 logits always holds the label.
    assert accuracy(logits, labels, label_offset=0)["top5"] == 100.0
    with pytest.raises(DataError, match="label_offset"):
        accuracy(logits, np.array([4]) * np.ones(4, int), label_offset=1)


def test_per_class_accuracy_and_streaming_equal_whole():
    labels = np.array([0, 0, 1, 1, 1, 2])
    logits = np.zeros((6, 3))
    logits[np.arange(6), [0, 1, 1, 1, 0, 2]] = 1.0
    whole = accuracy(logits, labels)
    assert whole["per_class"] == {"labels": [0, 1, 2], "count": [2, 3, 1],
                                  "top1": [50.0, pytest.approx(200 / 3), 100.0]}
    acc = AccuracyCounter()
    acc.update(logits[:4], labels[:4])
    acc.update(logits[4:], labels[4:])
    assert acc.summary()["top1"] == pytest.approx(whole["top1"]) == pytest.approx(400 / 6)


# --- thresholds ------------------------------------------------------------------------


def metrics(**kw):
    base = {"max_abs": 0.0, "max_abs_scaled": 0.0, "mean_abs": 0.0, "max_rel": 0.0, "cosine_min": 1.0,
            "cosine_mean": 1.0, "top1_agreement": 1.0, "top5_agreement": 1.0, "nonfinite": 0}
    base.update(kw)
    return base


@pytest.mark.parametrize("precision, m, delta, ok", [
    ("fp32", metrics(max_abs_scaled=5e-5), None, True),
    ("fp32", metrics(max_abs_scaled=1e-3), None, False),
    ("fp32", metrics(top1_agreement=0.999), None, False),
    ("fp16", metrics(max_abs_scaled=1e-2, top1_agreement=0.996), -0.1, True),
    ("fp16", metrics(top1_agreement=0.99), 0.0, False),
    ("fp16", metrics(), -0.3, False),
    ("fp16", metrics(cosine_min=0.9), 0.0, False),
    ("int8", metrics(top1_agreement=0.985, cosine_min=0.5, cosine_mean=0.99), -0.8, True),
    ("int8", metrics(top1_agreement=0.975), 0.0, False),
    ("int8", metrics(), -1.5, False),
    ("int8", metrics(cosine_mean=0.9), 0.0, False),
    ("int8", metrics(), None, True),  # no labels: accuracy is not judged
])
def test_default_thresholds_per_precision(precision, m, delta, ok):
    failures = Thresholds.for_precision(precision).check(m, delta)
    assert (not failures) is ok, failures


def test_override_parsing():
    o = parse_threshold_override("ort-int8:logits:top1_agreement=0.97")
    assert (o.scope, o.output, o.key, o.value) == ("ort-int8", "logits", "top1_agreement", 0.97)
    o = parse_threshold_override("fp16:accuracy_drop=0.5")
    assert (o.scope, o.output, o.key, o.value) == ("fp16", None, "accuracy_drop", 0.5)
    o = parse_threshold_override("logits:max_rel=1")
    assert (o.scope, o.output) == (None, "logits")
    o = parse_threshold_override("*:top1_agreement=none")
    assert (o.scope, o.key, o.value) == (None, "top1_agreement", None)
    for bad, match in [("int8:top1_agreemnt=0.9", "unknown key"), ("int8:top1_agreement=abc", "not a number"),
                       ("ort-int9:logits:max_abs=1", "unknown backend"), ("top1_agreement", "KEY=VALUE"),
                       ("max_abs=inf", "finite")]:
        with pytest.raises(UsageError, match=match):
            parse_threshold_override(bad)


def test_override_file_and_resolution_order(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"ort-int8:logits": {"top1_agreement": 0.9}, "int8": {"top1_agreement": 0.95,
                                                                                   "accuracy_drop": 2}}))
    overrides = parse_threshold_args([str(f), "cosine_mean=none"])
    # Backend + output beats precision, whatever the order given.
    assert resolve_thresholds("ort-int8", "logits", overrides).top1_agreement == 0.9
    assert resolve_thresholds("ort-int8", "predictions", overrides).top1_agreement == 0.95
    assert resolve_thresholds("trt-int8", "logits", overrides).accuracy_drop == 2
    assert resolve_thresholds("trt-int8", "logits", overrides).cosine_mean is None
    assert resolve_thresholds("ort-fp16", "logits", overrides) == Thresholds.for_precision("fp16")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"int8": {"nope": 1}}))
    with pytest.raises(UsageError, match="unknown key 'nope'"):
        parse_threshold_args([str(bad)])


# --- backends --------------------------------------------------------------------------


def test_real_factory_skips_with_reasons(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    r = parity.make_runner("ort-int8", bundle)
    assert isinstance(r, Skip) and "model.int8.onnx" in r.reason
    r = parity.make_runner("tf", bundle)
    assert isinstance(r, Skip) and "saved_model" in r.reason
    r = parity.make_runner("trt-fp16", bundle)
    assert isinstance(r, Skip) and "tiny.fp16.plan" in r.reason and "trtdeploy build" in r.reason
    # A plan without its sidecar (or without TensorRT/GPU here) is skipped with the reason, not dropped.
    plan = tmp_path / "x.int8.plan"
    plan.write_bytes(b"not an engine")
    r = parity.make_runner("trt-int8", bundle, {"int8": plan})
    assert isinstance(r, Skip) and r.reason


def test_engine_precision_from_name(tmp_path):
    assert parity.engine_precision("e/resnet_v2_50.int8.plan") == "int8"
    with pytest.raises(UsageError, match="NAME.PRECISION.plan"):
        parity.engine_precision("e/model.plan")
    plans = [tmp_path / "a.fp16.plan", tmp_path / "b.fp16.plan"]
    for p in plans:
        p.write_bytes(b"plan")
    with pytest.raises(UsageError, match="two engines"):
        parity.engines_by_precision(plans)
    with pytest.raises(UsageError, match="no such engine file"):
        parity.engines_by_precision([tmp_path / "missing.fp16.plan"])


def test_parse_backends():
    assert parity.parse_backends("ort-int8, tf,ort-int8") == ["ort-int8", "tf"]
    assert parity.parse_backends(None) == list(parity.BACKENDS)
    with pytest.raises(UsageError, match="unknown backend 'trt'"):
        parity.parse_backends("trt")


# --- run_parity --------------------------------------------------------------------------


def test_run_parity_schema_pass_fail_and_skips(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    rng = np.random.default_rng(5)
    install_runners(monkeypatch, bundle, {
        "ort-fp32": lambda z: z + 1e-7,
        "ort-fp16": swap_top2(every=4),  # 10 of 40 rows change top-1: fails 0.995
        "ort-int8": lambda z: z + rng.normal(0, 1e-3, z.shape).astype(np.float32),
        "trt-int8": Skip("no GPU here"),
    })
    result = run_parity(bundle, backends="tf,ort-fp32,ort-fp16,ort-int8,trt-int8", batch_size=16)
    json.dumps(result, allow_nan=False)
    assert set(result) >= {"reference", "pass", "backends", "environment", "data"}
    assert result["reference"]["name"] == "reference.npz"
    assert result["data"]["num_images"] == 40 and result["data"]["labels"] is True
    b = result["backends"]
    assert list(b) == ["tf", "ort-fp32", "ort-fp16", "ort-int8", "trt-int8"]
    assert b["tf"]["status"] == "skipped" and b["tf"]["reason"]
    assert b["trt-int8"] == {**b["trt-int8"], "status": "skipped", "reason": "no GPU here", "precision": "int8"}
    for name in ("ort-fp32", "ort-fp16", "ort-int8"):
        e = b[name]
        assert e["status"] == "ran"
        assert set(e["outputs"]) == {"logits", "predictions"}
        assert set(e["outputs"]["logits"]) >= {"max_abs", "mean_abs", "max_rel", "cosine_min", "cosine_mean",
                                               "top1_agreement", "top5_agreement"}
        assert set(e["accuracy"]) >= {"top1", "top5", "delta_top1_vs_fp32"}
        assert sum(e["histogram"]["counts"]) + e["histogram"]["zeros"] + e["histogram"]["underflow"] \
            + e["histogram"]["overflow"] == 40 * C
    assert b["ort-fp32"]["pass"] is True and b["ort-int8"]["pass"] is True
    assert b["ort-fp16"]["pass"] is False
    assert b["ort-fp16"]["outputs"]["logits"]["top1_agreement"] == pytest.approx(30 / 40)
    assert any("top1_agreement 0.75 < 0.995" in f for f in b["ort-fp16"]["failures"])
    assert result["pass"] is False and result["verdict"] == "FAIL: ort-fp16 missed its thresholds"
    assert b["ort-int8"]["thresholds"]["logits"] == Thresholds.for_precision("int8").to_json()
    # The fixture labels 4 of 40 images wrongly on purpose.
    assert result["reference"]["accuracy"]["top1"] == pytest.approx(90.0)
    assert b["ort-fp16"]["accuracy"]["delta_top1_vs_fp32"] == pytest.approx(b["ort-fp16"]["accuracy"]["top1"] - 90.0)
    assert b["ort-fp32"]["accuracy"]["delta_top1_vs_fp32"] == pytest.approx(0.0)


def test_run_parity_accuracy_delta_fails_int8(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    install_runners(monkeypatch, bundle, {"ort-int8": swap_top2(every=20)})  # 2 of 40 rows change
    overrides = parse_threshold_args(["ort-int8:top1_agreement=0.9"])
    result = run_parity(bundle, backends=["ort-int8"], thresholds=overrides)
    e = result["backends"]["ort-int8"]
    delta = e["accuracy"]["delta_top1_vs_fp32"]
    assert delta < -1.0  # a correct row turned wrong costs 2.5 points
    assert e["pass"] is False and any(f.startswith("logits: accuracy_drop") for f in e["failures"])
    assert not any("top1_agreement" in f for f in e["failures"])  # overridden to 0.9


def test_run_parity_tf_reference_and_errors(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b", labels=False)

    class Boom(FakeRunner):
        def _infer(self, feed):
            if self.calls == 1:
                raise RuntimeError("device lost")
            return super()._infer(feed)

    made = install_runners(monkeypatch, bundle, {"tf": None, "ort-fp32": None,
                                                 "trt-fp32": Boom(bundle.w, "trt-fp32")})
    result = run_parity(bundle, backends=["ort-fp32", "trt-fp32"], batch_size=8, num_images=20)
    assert result["reference"]["name"] == "tf"
    assert made["tf"].calls == 3  # TF ran on the same 3 batches (20 images, batch 8)
    assert result["data"]["num_images"] == 20 and result["data"]["labels"] is False
    assert result["backends"]["ort-fp32"]["pass"] is True
    assert result["backends"]["ort-fp32"]["accuracy"] is None
    e = result["backends"]["trt-fp32"]
    assert e["status"] == "error" and e["pass"] is False and "device lost" in e["reason"]
    assert "after 8 images" in e["reason"]
    assert result["verdict"] == "FAIL: trt-fp32 stopped with an error"
    assert not made["tf"].active  # every runner closed again


def test_run_parity_folder_data_without_tf(tmp_path, monkeypatch):
    """--data goes through deploy.data.inputs.CalibrationSet (faked here); ort-fp32 is the reference."""
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

        def batches_with_labels(self, batch_size, desc):
            for s in range(0, 12, batch_size):
                yield {"input": x[s:s + batch_size]}, y[s:s + batch_size]

    class FakePreprocess:
        @classmethod
        def from_json(cls, d):
            return ("preprocess", d["preset"])

    monkeypatch.setitem(sys.modules, "deploy.data.inputs", types.SimpleNamespace(CalibrationSet=FakeSet))
    monkeypatch.setitem(sys.modules, "deploy.data.preprocess", types.SimpleNamespace(Preprocess=FakePreprocess))
    install_runners(monkeypatch, bundle, {"ort-fp32": None, "ort-int8": swap_top2(every=6)})
    result = run_parity(bundle, backends="ort-fp32,ort-int8", data=tmp_path / "imgs", num_images=12, seed=3,
                        batch_size=5)
    assert calls["from_path"] == (tmp_path / "imgs", "input", ("preprocess", "digits"), 12, 3)
    assert result["reference"]["name"] == "ort-fp32"
    assert result["data"]["num_images"] == 12
    # The corruption runs per batch: row 0 of each of the 3 batches (5, 5, 2 images) is swapped.
    assert result["backends"]["ort-int8"]["outputs"]["logits"]["top1_agreement"] == pytest.approx(9 / 12)
    assert result["reference"]["accuracy"]["top1"] == pytest.approx(100.0 * ((x @ bundle.w).argmax(1) == y + 1).mean())


def test_run_parity_usage_errors(tmp_path, monkeypatch):
    bundle = make_bundle(tmp_path / "b")
    install_runners(monkeypatch, bundle, {})
    with pytest.raises(UsageError, match="unknown output"):
        run_parity(bundle, thresholds=parse_threshold_args(["ort-int8:probs:max_abs=1"]))
    with pytest.raises(UsageError, match="no FP32 reference"):
        run_parity(bundle, data=tmp_path / "imgs")
    with pytest.raises(UsageError, match="batch-size"):
        run_parity(bundle, batch_size=0)


# --- per-layer -----------------------------------------------------------------------------


def test_compare_intermediates_and_rank_layers():
    rng = np.random.default_rng(4)
    order = [f"resnet_v2_50/block{i}" for i in range(1, 6)]
    fp32 = {n: rng.standard_normal((2, 8, 4, 4)) for n in order}
    # Relative error 0.01, 0.012, 0.10 (layer 3 adds most), 0.11, 0.15 (layer 5 adds 0.04).
    target = dict(zip(order, [0.01, 0.012, 0.10, 0.11, 0.15]))
    other = {}
    for n in order:
        noise = rng.standard_normal(fp32[n].shape)
        other[n] = fp32[n] + noise * (target[n] * np.linalg.norm(fp32[n]) / np.linalg.norm(noise))
    stats = compare_intermediates(fp32, other, order)
    assert list(stats) == order
    for n in order:
        assert stats[n]["rel_error"] == pytest.approx(target[n], rel=1e-9)
        assert 0.98 < stats[n]["cosine"] <= 1.0
    ranked = rank_layers(stats)
    assert [r["name"] for r in ranked][:3] == [order[2], order[4], order[0]]
    assert ranked[0]["growth"] == pytest.approx(0.088)
    assert keep_in_high_precision(ranked, 2) == [order[2], order[4]]
    with pytest.raises(DataError, match="block9"):
        compare_intermediates(fp32, other, order + ["resnet_v2_50/block9"])
    other[order[1]][0, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match="block2.*NaN/inf"):
        compare_intermediates(fp32, other, order)


def test_per_layer_section_names_layers_and_command(tmp_path):
    layers = {"m/block1/unit_1/bottleneck_v2": {"rel_error": 0.01, "cosine": 1.0},
              "m/block1/unit_2/bottleneck_v2": {"rel_error": 0.2, "cosine": 0.98},
              "m/block1/unit_3/bottleneck_v2": {"rel_error": 0.15, "cosine": 0.99}}
    nodes = [("Conv__7", "Conv"),  # tf2onnx renamed the root conv: unmappable by scope
             ("m/block1/unit_1/bottleneck_v2/conv1/Conv2D", "Conv"),
             ("m/block1/unit_1/bottleneck_v2/conv1/BatchNorm/Relu", "Relu"),
             ("m/block1/unit_2/bottleneck_v2/conv1/Conv2D", "Conv"),
             ("m/block1/unit_2/bottleneck_v2/add", "Add"),
             ("m/block1/unit_20/bottleneck_v2/conv1/Conv2D", "Conv")]
    root = tmp_path / "my bundle"
    s = parity.per_layer_section({"ort-int8": layers, "fp16": layers}, root, keep=3, onnx_nodes=nodes,
                                 calibration_data="/data/calib")
    e = s["ort-int8"]
    assert e["keep_high_precision"] == ["m/block1/unit_2/bottleneck_v2", "m/block1/unit_1/bottleneck_v2"]
    assert e["exclude_nodes"]["m/block1/unit_2/bottleneck_v2"] == ["m/block1/unit_2/bottleneck_v2/conv1/Conv2D",
                                                                   "m/block1/unit_2/bottleneck_v2/add"]
    assert e["command"] == (f"trtdeploy calibrate '{root}' --data /data/calib --exclude "
                            "m/block1/unit_2/bottleneck_v2/conv1/Conv2D m/block1/unit_2/bottleneck_v2/add "
                            "m/block1/unit_1/bottleneck_v2/conv1/Conv2D")
    assert e["unmapped"] == []
    assert s["fp16"]["command"] is None
    # The command parses with the real `calibrate` CLI into exactly those node names.
    args = build_parser().parse_args(shlex.split(e["command"])[1:])
    assert args.keep_fp32 == [n for layer in e["keep_high_precision"] for n in e["exclude_nodes"][layer]]
    # Without node names there is no command; a layer without nodes is reported.
    assert parity.per_layer_section({"int8": layers}, root)["int8"]["command"] is None
    only_root = parity.per_layer_section({"int8": {"m/conv1": {"rel_error": 0.3}}}, root, onnx_nodes=nodes)
    assert only_root["int8"]["unmapped"] == ["m/conv1"] and only_root["int8"]["command"] is None


# --- CLI -------------------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    bundle = make_bundle(tmp_path / "b")
    install_runners(monkeypatch, bundle, {"ort-fp32": None, "ort-int8": swap_top2(every=2)})
    out = tmp_path / "reports"
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,trt-fp16", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PASS: all 1 backend(s) that ran met their thresholds" in text
    assert str(out / "parity.html") in text and "skipped trt-fp16" in text
    assert (out / "parity.html").is_file() and json.loads((out / "parity.json").read_text())["pass"] is True

    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,ort-int8"]) == 1
    assert "FAIL ort-int8" in capsys.readouterr().out
    assert (bundle.root / "reports" / "parity.html").is_file()  # default --out
    # The same failure passes once its threshold is relaxed.
    assert main(["parity", str(bundle.root), "--backends", "ort-int8", "--threshold", "int8:top1_agreement=0.4",
                 "--threshold", "int8:accuracy_drop=none", "--threshold", "int8:cosine_mean=none"]) == 0

    assert main(["parity", str(bundle.root), "--backends", "trt"]) == 2
    assert main(["parity", str(bundle.root), "--threshold", "int8:bogus=1"]) == 2
    assert main(["parity", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err


class ProfileRunner(FakeRunner):
    """Takes at most `max_batch` samples a call and refuses more, as a TensorRT engine does."""

    max_batch = 8

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def validate(self, feed):
        super().validate(feed)
        if len(feed["input"]) > self.max_batch:
            raise InputError(f"{self.name}: batch {len(feed['input'])} is outside the engine's profile "
                                    f"[1, {self.max_batch}]")
        self.batches.append(len(feed["input"]))


def test_cli_splits_batches_above_an_engine_profile(tmp_path, monkeypatch, capsys):
    """parity's default --batch-size 16 against an engine built with --batch 1 8 8."""
    bundle = make_bundle(tmp_path / "b", n=40)
    engine = ProfileRunner(bundle.w, "trt-fp32")
    install_runners(monkeypatch, bundle, {"ort-fp32": None, "trt-fp32": engine})
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,trt-fp32", "--out", str(tmp_path / "r")]) == 0
    assert "PASS: all 2 backend(s)" in capsys.readouterr().out
    assert engine.batches == [8, 8] * 2 + [8]  # 40 images in batches of 16 = 16 + 16 + 8
    result = json.loads((tmp_path / "r" / "parity.json").read_text())
    assert result["backends"]["trt-fp32"]["outputs"]["logits"]["samples"] == 40
