"""deploy.parity.backends: the runner factory's skips, engine lookup, backend names."""
from __future__ import annotations

import pytest

from deploy.errors import UsageError
from deploy.parity import backends
from deploy.parity.backends import Skip

from .fakes import make_bundle


def test_real_factory_skips_with_reasons(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    r = backends.make_runner("ort-int8", bundle)
    assert isinstance(r, Skip) and "model.int8.onnx" in r.reason
    r = backends.make_runner("tf", bundle)
    assert isinstance(r, Skip) and "saved_model" in r.reason
    r = backends.make_runner("trt-fp16", bundle)
    assert isinstance(r, Skip) and "tiny.fp16.plan" in r.reason and "trtdeploy build" in r.reason
    # A plan without its sidecar (or without TensorRT/GPU here) is skipped with the reason, not dropped.
    plan = tmp_path / "x.int8.plan"
    plan.write_bytes(b"not an engine")
    r = backends.make_runner("trt-int8", bundle, {"int8": plan})
    assert isinstance(r, Skip) and r.reason


def test_engine_precision_from_name(tmp_path):
    assert backends.engine_precision("e/resnet_v2_50.int8.plan") == "int8"
    with pytest.raises(UsageError, match="NAME.PRECISION.plan"):
        backends.engine_precision("e/model.plan")
    plans = [tmp_path / "a.fp16.plan", tmp_path / "b.fp16.plan"]
    for p in plans:
        p.write_bytes(b"plan")
    with pytest.raises(UsageError, match="two engines"):
        backends.engines_by_precision(plans)
    with pytest.raises(UsageError, match="no such engine file"):
        backends.engines_by_precision([tmp_path / "missing.fp16.plan"])


def test_parse_backends():
    assert backends.parse_backends("ort-int8, tf,ort-int8") == ["ort-int8", "tf"]
    assert backends.parse_backends(None) == list(backends.BACKENDS)
    with pytest.raises(UsageError, match="unknown backend 'trt'"):
        backends.parse_backends("trt")


def test_the_cli_offers_exactly_the_backends_parity_runs(capsys):
    from deploy.cli import main

    with pytest.raises(SystemExit):
        main(["parity", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, even at hyphens
    assert f"from:{','.join(backends.BACKENDS)}(default:all)" in help_text
