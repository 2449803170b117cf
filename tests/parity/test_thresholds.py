"""deploy.parity.thresholds: the defaults per precision, the override grammar and its order."""
from __future__ import annotations

import json

import pytest

from deploy.errors import UsageError
from deploy.parity import OutputMetrics, Thresholds, parse_threshold_args, parse_threshold_override, resolve_thresholds


def metrics(**kw) -> OutputMetrics:
    base = {"max_abs": 0.0, "max_abs_scaled": 0.0, "mean_abs": 0.0, "max_rel": 0.0, "cosine_min": 1.0,
            "cosine_mean": 1.0, "top1_agreement": 1.0, "top5_agreement": 1.0, "nonfinite": 0,
            "ref_max_abs": 1.0, "samples": 1}
    base.update(kw)
    return OutputMetrics(**base)


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
