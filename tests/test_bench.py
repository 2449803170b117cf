"""deploy.bench and tools/benchmark.py: the timing loop with a fake runner and a fake clock."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from deploy import bench, parity
from deploy.bench import TimingConfig, random_feed, summarize_ms, time_runner
from deploy.errors import InputError, ToolMissingError, UsageError
from deploy.runners.base import Runner, TensorSpec

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@dataclass(frozen=True)
class FakeTiming:
    batch: int
    gpu_ms: float
    host_ms: float


class SteppingRunner(Runner):
    """Each call advances the fake clock by the next duration (seconds) in `durations`."""

    def __init__(self, clock: Clock, durations, timings: bool = False):
        self.clock = clock
        self.durations = list(durations)
        self.calls = 0
        self.timings = timings
        self.last_timing = None
        self.name = "fake"

    def input_specs(self):
        return [TensorSpec("x", (None, 3, 4, 4), np.dtype(np.float32))]

    def _infer(self, feed):
        d = self.durations[self.calls]
        self.calls += 1
        self.clock.t += d
        if self.timings:
            self.last_timing = FakeTiming(len(feed["x"]), gpu_ms=d * 500.0, host_ms=d * 900.0)
        return {"y": feed["x"].sum(axis=(1, 2, 3))}


def test_warmup_excluded_and_percentiles():
    clock = Clock()
    # 3 warm-up calls take 5 s each; the timed calls take 1..10 ms.
    runner = SteppingRunner(clock, [5.0] * 3 + [k / 1000 for k in range(1, 11)])
    feed = random_feed(runner.input_specs(), batch=8)
    res = time_runner(runner, feed, TimingConfig(warmup=3, iters=10), clock=clock)
    assert runner.calls == 13
    lat = res["latency_ms"]
    assert lat["max"] == pytest.approx(10.0) and lat["min"] == pytest.approx(1.0)  # no 5000 ms warm-up
    assert lat["median"] == pytest.approx(5.5)
    assert lat["mean"] == pytest.approx(5.5)
    assert lat["p90"] == pytest.approx(9.1)  # linear interpolation between the 9th and 10th values
    assert lat["p99"] == pytest.approx(9.91)
    assert res["images_per_s"] == pytest.approx(8 / 0.0055)
    assert res["batch"] == 8 and res["warmup"] == 3 and res["iters"] == 10
    assert res["input_shapes"] == {"x": [8, 3, 4, 4]}
    assert "device_ms" not in res
    json.dumps(res, allow_nan=False)


def test_runner_timings_are_reported_separately():
    clock = Clock()
    runner = SteppingRunner(clock, [1.0] + [0.002, 0.004, 0.006], timings=True)
    res = time_runner(runner, random_feed(runner.input_specs(), 2), TimingConfig(warmup=1, iters=3), clock=clock)
    assert set(res["device_ms"]) == {"gpu", "host"}
    assert res["device_ms"]["gpu"]["median"] == pytest.approx(2.0)  # 0.004 s * 500
    assert res["device_ms"]["host"]["max"] == pytest.approx(5.4)
    assert res["latency_ms"]["median"] == pytest.approx(4.0)


def test_config_and_feed_validation():
    with pytest.raises(UsageError):
        TimingConfig(warmup=-1)
    with pytest.raises(UsageError):
        TimingConfig(iters=0)
    with pytest.raises(UsageError):
        summarize_ms([])
    feed = random_feed([TensorSpec("a", (None, 2), np.dtype(np.float16)), TensorSpec("b", (None,), np.dtype(np.int64))],
                       batch=4, seed=1)
    assert feed["a"].shape == (4, 2) and feed["a"].dtype == np.float16 and feed["b"].shape == (4,)
    with pytest.raises(UsageError, match="dynamic"):
        random_feed([TensorSpec("a", (None, None), np.dtype(np.float32))], batch=1)


def test_machine_info_keys():
    info = bench.machine_info()
    assert set(info) >= {"python", "numpy", "platform", "cpu", "cpu_count", "tools"}
    assert info["numpy"] == np.__version__


def fake_bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({
        "format": 1, "model": {"name": "tiny", "num_classes": 3},
        "inputs": [{"name": "x", "shape": [-1, 3, 4, 4], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": "y", "shape": [-1], "dtype": "float32"}], "preprocessing": {}}))
    (root / "engines").mkdir()
    (root / "engines" / "tiny.fp16.plan").write_bytes(b"plan")
    (root / "engines" / "tiny.fp16.json").write_text(json.dumps({"precision": "fp16", "tensorrt": "10.3.0"}))
    return root


@pytest.fixture
def fakes(monkeypatch):
    clock = Clock()
    made = {}

    def make_runner(backend, bundle, engines=None):
        if backend == "ort-int8":
            return parity.Skip("model.int8.onnx: missing")
        if backend == "tf":
            return parity.Skip("TensorFlow is not installed")
        made[backend] = SteppingRunner(clock, [0.001] * 50, timings=backend.startswith("trt"))
        return made[backend]

    def no_tf(model, batch, size):
        raise ToolMissingError("TensorFlow is not installed")

    monkeypatch.setattr(parity, "make_runner", make_runner)
    monkeypatch.setattr(bench, "tf_forward_runner", no_tf)
    return made


def test_forward_benchmark_json(tmp_path, fakes):
    root = fake_bundle(tmp_path)
    out = bench.forward_benchmark(batch=4, config=TimingConfig(warmup=1, iters=5), bundle_dir=root,
                                  backends=["tf", "ort-fp32", "ort-int8", "trt-fp16"])
    json.dumps(out, allow_nan=False)
    assert set(out) == {"experiment", "model", "batch", "image_size", "timing", "bundle", "machine", "results"}
    assert out["timing"] == {"warmup": 1, "iters": 5}
    # Every result is for the bundle's model at its input size, and the top of the JSON says so.
    assert out["model"] == "tiny" and out["image_size"] == [4, 4]
    assert {e["model"] for e in out["results"].values() if e["status"] == "ran"} == {"tiny"}
    r = out["results"]
    assert r["tf"] == {"status": "skipped", "reason": "TensorFlow is not installed"}
    assert r["ort-int8"]["status"] == "skipped"
    assert r["ort-fp32"]["status"] == "ran" and r["ort-fp32"]["batch"] == 4
    assert fakes["ort-fp32"].calls == 6
    assert r["trt-fp16"]["engine"]["build"] == {"precision": "fp16", "tensorrt": "10.3.0"}
    assert set(r["trt-fp16"]["device_ms"]) == {"gpu", "host"}
    with pytest.raises(UsageError, match="unknown backend"):
        bench.forward_benchmark(backends=["onnx"])
    # Without a bundle, bundle backends are skipped with the reason.
    assert bench.forward_benchmark(backends=["ort-fp32"])["results"]["ort-fp32"]["reason"] == "needs --bundle DIR"


def load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", ROOT / "tools" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_tool_writes_json(tmp_path, fakes, capsys):
    tool = load_tool()
    root = fake_bundle(tmp_path)
    out_file = tmp_path / "bench.json"
    rc = tool.main(["forward", "--bundle", str(root), "--backends", "ort-fp32,tf", "--batch", "2",
                    "--warmup", "0", "--iters", "3", "--out", str(out_file)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out_file.read_text())
    assert printed["results"]["ort-fp32"]["iters"] == 3 and printed["batch"] == 2
    assert tool.main(["forward", "--iters", "0"]) == 2
    parser = tool.build_parser()
    assert parser.parse_args(["forward"]).func is tool.run_forward
    assert parser.parse_args(["calibration", "--num-images", "4"]).func is tool.run_calibration


def test_calibration_benchmark_runs_both_sides(tmp_path, capsys):
    """The real thing on the default model's architecture (random weights, 8 noise images):
    both calibrations run, the JSON says so, and each side leaves a Q/DQ model behind."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tensorflow")
    import onnx

    tool = load_tool()
    out_file = tmp_path / "calib.json"
    rc = tool.main(["calibration", "--model", "resnet_v2_digits", "--image-size", "32", "--num-images", "8", "4",
                    "12", "--batch", "4", "--workdir", str(tmp_path / "work"), "--out", str(out_file)])
    assert rc == 0
    result = json.loads(out_file.read_text())
    assert json.loads(capsys.readouterr().out) == result  # stdout carries the JSON and nothing else
    assert result["num_images"] == 8 and result["model"] == "resnet_v2_digits"
    assert result["ours_seconds"] > 0 and result["peer_seconds"] > 0
    assert result["ratio_peer_over_ours"] == pytest.approx(result["peer_seconds"] / result["ours_seconds"], rel=0.05)
    assert result["ours_tensors_observed"] > 0
    # One fresh process per extra --num-images value: seconds per image and its peak RSS.
    assert [p["num_images"] for p in result["points"]] == [4, 12]
    for point in result["points"]:
        assert point["seconds_per_image"] == pytest.approx(point["seconds"] / point["num_images"], abs=1e-3)
        assert 100 < point["peak_rss_mb"] < 4000 and 0 < point["statistics_seconds"] <= point["seconds"]
    assert "VmHWM" in result["peak_rss_method"]
    # A fresh process's own peak: not this (TensorFlow-holding) process's memory, which a
    # forked child's ru_maxrss also counts.
    from deploy.bench_calibration import peak_rss_mb

    assert max(p["peak_rss_mb"] for p in result["points"]) < peak_rss_mb()
    peer = onnx.load(str(tmp_path / "work" / "peer.int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in peer.graph.node)
    ours = onnx.load(str(tmp_path / "work" / "resnet_v2_digits_32" / "model.int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in ours.graph.node)
    with pytest.raises(SystemExit):
        tool.main(["calibration", "--method", "max"])
    assert tool.main(["calibration", "--num-images", "0"]) == 2  # refused before any export


class LimitedRunner(SteppingRunner):
    """A runner whose calls take at most `max_batch` samples, as a TensorRT profile does."""

    max_batch = 3

    def validate(self, feed):
        super().validate(feed)
        if len(feed["x"]) > self.max_batch:
            raise InputError(f"batch {len(feed['x'])} is outside the engine's profile [1, {self.max_batch}]")


def test_batches_above_max_batch_are_timed_in_slices():
    clock = Clock()
    runner = LimitedRunner(clock, [0.001] * 30, timings=True)
    res = time_runner(runner, random_feed(runner.input_specs(), 8), TimingConfig(warmup=1, iters=2), clock=clock)
    assert runner.calls == 3 * 3  # 8 = 3 + 3 + 2, for the warm-up and both timed passes
    assert res["calls_per_pass"] == 3 and res["batch"] == 8
    assert res["latency_ms"]["median"] == pytest.approx(3.0)  # one pass is all three calls
    assert res["device_ms"]["gpu"]["median"] == pytest.approx(1.5)  # 3 x 0.001 s x 500, summed over slices
    assert res["images_per_s"] == pytest.approx(8 / 0.003)


def test_benchmark_tool_splits_for_an_engine_profile(tmp_path, monkeypatch, capsys):
    clock = Clock()
    made = {}

    def make_runner(backend, bundle, engines=None):
        made[backend] = LimitedRunner(clock, [0.001] * 50, timings=True)
        return made[backend]

    monkeypatch.setattr(parity, "make_runner", make_runner)
    tool = load_tool()
    rc = tool.main(["forward", "--bundle", str(fake_bundle(tmp_path)), "--backends", "trt-fp16", "--batch", "7",
                    "--warmup", "0", "--iters", "2"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)["results"]["trt-fp16"]
    assert result["status"] == "ran" and result["calls_per_pass"] == 3 and made["trt-fp16"].calls == 6


def test_top_level_model_without_a_bundle_is_the_tf_network(monkeypatch):
    clock = Clock()
    seen = []

    def tf_runner(model, batch, size):
        seen.append((model, batch, size))
        return SteppingRunner(clock, [0.001] * 10)

    monkeypatch.setattr(bench, "tf_forward_runner", tf_runner)
    out = bench.forward_benchmark(batch=2, config=TimingConfig(warmup=0, iters=2), backends=["tf"])
    assert seen == [("resnet_v2_152", 2, 224)]  # the seed experiment
    assert (out["model"], out["image_size"], out["results"]["tf"]["model"]) == ("resnet_v2_152", [224, 224],
                                                                                "resnet_v2_152")
    out = bench.forward_benchmark(model="resnet_v2_50", image_size=160, batch=2,
                                  config=TimingConfig(warmup=0, iters=2), backends=["tf"])
    assert seen[-1] == ("resnet_v2_50", 2, 160) and (out["model"], out["image_size"]) == ("resnet_v2_50", [160, 160])


def test_benchmark_tool_refuses_a_network_beside_a_bundle(tmp_path, fakes, capsys):
    tool = load_tool()
    assert tool.main(["forward", "--bundle", str(fake_bundle(tmp_path)), "--model", "resnet_v2_152"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model and --image-size choose the network without --bundle") and "(tiny)" in err
