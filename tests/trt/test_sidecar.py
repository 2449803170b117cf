"""Engine sidecar: round trip, the version/GPU rules, and the plan hash check."""
from __future__ import annotations

import dataclasses
import json

import pytest

from deploy.errors import EngineError
from deploy.fsutil import sha256_bytes
from deploy.trt.sidecar import (IOTensor, Sidecar, check_compatible, load_plan, read_sidecar, rebuild_command,
                                sidecar_path)

PLAN_BYTES = b"serialized engine bytes"


def make_sidecar(**changes) -> Sidecar:
    base = Sidecar(
        plan="x.int8.plan", plan_sha256=sha256_bytes(PLAN_BYTES), model="x", tensorrt="10.3.0.30",
        gpu_name="Orin", compute_capability="sm_87", precision="int8", mode="explicit",
        version_compatible=False, hardware_compat=None, batch=(1, 8, 32),
        io=(IOTensor("input", "input", "float32", (-1, 3, 224, 224),
                     ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))),
            IOTensor("logits", "output", "float32", (-1, 1001))),
        onnx="model.int8.onnx", onnx_sha256="ab" * 32,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def engine(tmp_path):
    engines = tmp_path / "bundle" / "engines"
    engines.mkdir(parents=True)
    plan = engines / "x.int8.plan"
    plan.write_bytes(PLAN_BYTES)
    sidecar_path(plan).write_text(json.dumps(make_sidecar().to_json()))
    return plan


def test_round_trip_keeps_every_field(engine):
    got = read_sidecar(engine)
    assert got == make_sidecar()
    assert [t.name for t in got.inputs] == ["input"] and [t.name for t in got.outputs] == ["logits"]
    assert got.inputs[0].profile[2] == (32, 3, 224, 224)


def test_same_version_and_gpu_is_accepted():
    check_compatible(make_sidecar(), "10.3.0.30", "sm_87")


def test_other_version_and_gpu_refused_with_rebuild_command(engine):
    with pytest.raises(EngineError) as e:
        check_compatible(make_sidecar(), "10.16.1.11", "sm_90", engine)
    msg = str(e.value)
    assert msg.startswith(f"{engine}: built with TensorRT 10.3.0.30 for sm_87; this is TensorRT 10.16.1.11 on sm_90")
    assert f"rebuild with `trtdeploy build {engine.parent.parent} --precision int8 --batch 1 8 32`" in msg
    assert "exact TensorRT version" in msg and "compute capability" in msg


@pytest.mark.parametrize("runtime, ok", [
    ("10.3.0.30", True),
    ("10.16.1.11", True),   # same major, newer: accepted when version-compatible
    ("10.2.0", False),      # older
    ("11.4.0.106", False),  # next major
])
def test_version_compatible_same_major_newer_or_equal(runtime, ok):
    sidecar = make_sidecar(version_compatible=True)
    if ok:
        check_compatible(sidecar, runtime, "sm_87")
    else:
        with pytest.raises(EngineError, match="version-compatible engine needs TensorRT 10.x >= 10.3.0.30"):
            check_compatible(sidecar, runtime, "sm_87")


def test_exact_version_means_build_number_too():
    with pytest.raises(EngineError):
        check_compatible(make_sidecar(), "10.3.0.26", "sm_87")


@pytest.mark.parametrize("gpu, ok", [("sm_80", True), ("sm_90", True), ("sm_120", True), ("sm_75", False)])
def test_hardware_compat_ampere_plus(gpu, ok):
    sidecar = make_sidecar(hardware_compat="ampere+", compute_capability="sm_86")
    if ok:
        check_compatible(sidecar, "10.3.0.30", gpu)
    else:
        with pytest.raises(EngineError, match=r"needs sm_80 or newer.*--hardware-compat ampere\+"):
            check_compatible(sidecar, "10.3.0.30", gpu)


def test_without_hardware_compat_the_capability_must_match():
    with pytest.raises(EngineError, match="this is TensorRT 10.3.0.30 on sm_86"):
        check_compatible(make_sidecar(), "10.3.0.30", "sm_86")


def test_rebuild_command_repeats_the_options():
    cmd = rebuild_command(make_sidecar(mode="implicit", version_compatible=True, hardware_compat="ampere+",
                                       batch=(2, 4, 8)), "b")
    assert cmd == ("trtdeploy build b --precision int8 --int8-mode implicit --batch 2 4 8 "
                   "--version-compatible --hardware-compat ampere+")
    assert rebuild_command(make_sidecar(builder={"tf32": True}), "b").endswith(" --tf32")
    assert "--tf32" not in rebuild_command(make_sidecar(builder={"tf32": False}), "b")


def test_plan_hash_matches(engine):
    assert load_plan(engine, read_sidecar(engine)) == PLAN_BYTES


@pytest.mark.parametrize("content", [PLAN_BYTES[:10], b"another engine entirely"])
def test_swapped_or_half_copied_plan_refused(engine, content):
    engine.write_bytes(content)
    with pytest.raises(EngineError, match="swapped or half-copied"):
        load_plan(engine, read_sidecar(engine))


def test_missing_plan_named_before_its_sidecar(tmp_path):
    with pytest.raises(EngineError, match=r"nope\.plan: no such engine file; build one"):
        read_sidecar(tmp_path / "nope.plan")


def test_missing_sidecar_refused(engine):
    sidecar_path(engine).unlink()
    with pytest.raises(EngineError, match=r"no sidecar x\.int8\.json.*trtdeploy build"):
        read_sidecar(engine)


@pytest.mark.parametrize("text, match", [
    ("{not json", "unreadable sidecar"),
    (json.dumps({"format": 1, "plan": "x"}), "not a valid engine sidecar"),
    (json.dumps({"format": 99}), "sidecar format 99"),
])
def test_damaged_sidecar_refused(engine, text, match):
    sidecar_path(engine).write_text(text)
    with pytest.raises(EngineError, match=match):
        read_sidecar(engine)
