"""Per-layer timing: the aggregation of IProfiler reports, `profile_engine` and
`trtdeploy profile` on the fakes (TensorRT's layer times come from FakeContext.layers),
and where the parity report finds them (its section: tests/parity/test_layer_timing.py). Real
engines: test_gpu_profile_bench.py."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from deploy.cli import main
from deploy.errors import UsageError
from deploy.parity.layer_timing import layer_timing_html, load_profiles, profile_path
from deploy.trt import profiler as profiler_module
from deploy.trt import runtime as runtime_module
from deploy.trt.profiler import LayerTimes, make_profiler, profile_engine, top_layers_text

from .fake_cuda import FakeCuda
from .fakes import make_fake_trt
from .test_runtime_logic import write_engine

MANIFEST = {"format": 1, "model": {"name": "m", "num_classes": 2},
            "inputs": [{"name": "x", "shape": [-1, 3], "dtype": "float32", "layout": "NC"}],
            "outputs": [{"name": "y", "shape": [-1, 2], "dtype": "float32"}], "preprocessing": {}}


@pytest.fixture
def device(monkeypatch):
    """Fake TensorRT and pycuda wherever the device side imports them."""
    from deploy.trt import enginebench

    cuda = FakeCuda(capability=(8, 7))
    trt = make_fake_trt("10.16.1.11", cuda)
    for module in (runtime_module, profiler_module, enginebench):
        monkeypatch.setattr(module, "import_tensorrt", lambda: trt)
        monkeypatch.setattr(module, "import_cuda", lambda: cuda)
    return trt, cuda


@pytest.fixture
def bundle(tmp_path):
    """A bundle directory with one (fake) engine: engines/m.fp32.plan + its sidecar."""
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    write_engine(tmp_path)
    return tmp_path


def test_layer_times_median_share_and_order():
    times = LayerTimes()
    for conv, relu in ((3.0, 1.0), (5.0, 1.0), (4.0, 2.0)):
        times.start_call()
        times.add("relu", relu)
        times.add("conv", conv / 2)
        times.add("conv", conv / 2)  # reported twice in one call (a loop): adds up
    times.start_call()
    times.add("conv", 4.0)  # relu not reported in this call: it took no time
    s = times.summary()
    assert s["calls"] == 4
    conv, relu = s["layers"]
    assert (conv["name"], conv["index"], conv["median_ms"], conv["max_ms"]) == ("conv", 1, 4.0, 5.0)
    assert (relu["name"], relu["index"], relu["median_ms"], relu["mean_ms"]) == ("relu", 0, 1.0, 1.0)
    assert conv["share"] == pytest.approx(0.8) and relu["share"] == pytest.approx(0.2)
    assert s["total_ms"]["median"] == 5.0 and s["total_ms"]["max"] == 6.0
    times.reset()
    with pytest.raises(UsageError, match="no layer times were reported"):
        times.summary()


def test_profiler_subclass_feeds_layer_times(device):
    trt, _ = device
    times = LayerTimes()
    profiler = make_profiler(trt, times)
    assert isinstance(profiler, trt.IProfiler)
    profiler.report_layer_time("conv", 0.25)
    assert times.calls == [{"conv": 0.25}]


def test_profile_engine_on_the_fakes(tmp_path, device):
    plan = write_engine(tmp_path)
    result = profile_engine(plan, iters=7, warmup=3)
    json.dumps(result, allow_nan=False)
    assert result["batch"] == 4 and result["calls"] == 7  # the profile's opt batch; warm-up left out
    # FakeContext.layers: ms per image 0.5, 0.01, 0.1
    assert [(r["name"], r["median_ms"]) for r in result["layers"]] == [
        ("conv1 + relu", 2.0), ("fc", pytest.approx(0.4)), ("pool", pytest.approx(0.04))]
    assert sum(r["share"] for r in result["layers"]) == pytest.approx(1.0)
    assert result["layers"][0]["share"] == pytest.approx(2.0 / 2.44)
    assert result["machine"]["gpu"] == {"index": 0, "name": "Fake GPU", "compute_capability": "sm_87",
                                        "memory_mib": 8192, "cuda_driver": "12.8", "clock_mhz": 1300,
                                        "memory_clock_mhz": 3200}
    assert result["machine"]["tools"]["tensorrt"] == "10.16.1.11" and "cpu" in result["machine"]
    assert "conv1 + relu" in top_layers_text(result).splitlines()[1]
    with pytest.raises(UsageError, match=r"--batch 9 is outside m.fp32.plan's profile \[1, 8\]"):
        profile_engine(plan, batch=9)


def test_profile_cli_writes_where_the_report_finds_it(bundle, device, capsys):
    assert main(["profile", str(bundle), "--batch", "2", "--iters", "5", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "m.fp32.plan, batch 2: 1.2200 ms per call" in out and "... and 1 more layers" in out
    path = profile_path(bundle / "reports", bundle / "engines" / "m.fp32.plan")
    assert path == bundle / "reports" / "profile.m.fp32.json" and f"profile: {path}" in out
    (profile,) = load_profiles(bundle / "reports")
    assert profile.batch == 2 and profile.stale is False and profile.path == str(path)
    assert profile.gpu == "Fake GPU" and profile.layers[0].name == "conv1 + relu"
    # the engine rebuilt since: the report says the profile is stale
    side = bundle / "engines" / "m.fp32.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "plan_sha256": "ff" * 32}))
    (profile,) = load_profiles(bundle / "reports")
    assert profile.stale is True
    assert "rebuilt after this profile" in layer_timing_html([profile])


def test_profile_without_tensorrt_is_one_line(bundle, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["profile", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: TensorRT is not importable") and err.count("\n") == 1


def test_profile_of_a_missing_engine_names_it(bundle, capsys):
    assert main(["profile", str(bundle), "--engine", str(bundle / "engines" / "nope.plan")]) == 2
    assert "nope.plan: no such engine" in capsys.readouterr().err


def test_runner_outputs_unchanged_while_profiled(tmp_path, device):
    trt, _ = device
    times = LayerTimes()
    with runtime_module.TrtRunner(write_engine(tmp_path), profiler=make_profiler(trt, times)) as runner:
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_allclose(runner.infer({"x": x})["y"], x[:, :2] * 2 + x[:, 2:])
    assert times.summary()["calls"] == 1
