"""deploy.bench.forward and `tools/benchmark.py forward`: every backend timed through fakes."""
from __future__ import annotations

import json

import pytest

from deploy.parity import backends
from deploy.bench import forward
from deploy.runners.timing import TimingConfig, summarize_ms
from deploy.errors import ToolMissingError, UsageError
from deploy.trt import enginebench

from .fakes import Clock, LimitedRunner, SteppingRunner, fake_bundle, load_tool


@pytest.fixture
def fakes(monkeypatch):
    clock = Clock()
    made = {}

    def make_runner(backend, bundle, engines=None):
        if backend == "ort-int8":
            return backends.Skip("model.int8.onnx: missing")
        if backend == "tf":
            return backends.Skip("TensorFlow is not installed")
        made[backend] = SteppingRunner(clock, [0.001] * 50, timings=backend.startswith("trt"))
        return made[backend]

    def no_tf(model, batch, size):
        raise ToolMissingError("TensorFlow is not installed")

    def bench_engine(plan, config):
        made["bench_engine"] = (plan, config)
        return {"engine": str(plan), "batch": config.batch, "wall_ms": summarize_ms([2.0, 4.0]),
                "gpu_compute_ms": summarize_ms([1.0, 1.5]), "throughput": {"images_per_s": 1000.0}}

    monkeypatch.setattr(backends, "make_runner", make_runner)
    monkeypatch.setattr(forward, "tf_forward_runner", no_tf)
    monkeypatch.setattr(enginebench, "bench_engine", bench_engine)
    return made


def test_forward_benchmark_json(tmp_path, fakes):
    root = fake_bundle(tmp_path)
    out = forward.forward_benchmark(batch=4, config=TimingConfig(warmup=1, iters=5), bundle_dir=root,
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
    # TensorRT engines are timed by `trtdeploy bench` (CUDA events), with the forward keys added
    plan, config = fakes["bench_engine"]
    assert plan == root / "engines" / "tiny.fp16.plan"
    assert config == enginebench.BenchConfig(batch=4, iters=5, warmup_iters=1)
    assert r["trt-fp16"]["latency_ms"] == summarize_ms([2.0, 4.0]) and r["trt-fp16"]["images_per_s"] == 1000.0
    assert r["trt-fp16"]["gpu_compute_ms"]["median"] == 1.25 and r["trt-fp16"]["iters"] == 5
    with pytest.raises(UsageError, match="unknown backend"):
        forward.forward_benchmark(backends=["onnx"])
    # Without a bundle, bundle backends are skipped with the reason.
    assert forward.forward_benchmark(backends=["ort-fp32"])["results"]["ort-fp32"]["reason"] == "needs --bundle DIR"


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


def test_benchmark_tool_splits_for_an_engine_profile(tmp_path, monkeypatch, capsys):
    clock = Clock()
    made = {}

    def make_runner(backend, bundle, engines=None):
        made[backend] = LimitedRunner(clock, [0.001] * 50, timings=True)
        return made[backend]

    monkeypatch.setattr(backends, "make_runner", make_runner)
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

    monkeypatch.setattr(forward, "tf_forward_runner", tf_runner)
    out = forward.forward_benchmark(batch=2, config=TimingConfig(warmup=0, iters=2), backends=["tf"])
    assert seen == [("resnet_v2_152", 2, 224)]  # the seed experiment
    assert (out["model"], out["image_size"], out["results"]["tf"]["model"]) == ("resnet_v2_152", [224, 224],
                                                                                "resnet_v2_152")
    out = forward.forward_benchmark(model="resnet_v2_50", image_size=160, batch=2,
                                    config=TimingConfig(warmup=0, iters=2), backends=["tf"])
    assert seen[-1] == ("resnet_v2_50", 2, 160) and (out["model"], out["image_size"]) == ("resnet_v2_50", [160, 160])


def test_benchmark_tool_refuses_a_network_beside_a_bundle(tmp_path, fakes, capsys):
    tool = load_tool()
    assert tool.main(["forward", "--bundle", str(fake_bundle(tmp_path)), "--model", "resnet_v2_152"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model and --image-size choose the network without --bundle") and "(tiny)" in err


class EventRunner(LimitedRunner):
    """As backends.make_runner makes a TrtRunner: `last_timing` (CUDA events) only with `timing` set."""

    timing = False

    def _infer(self, feed):
        self.timings = self.timing
        return super()._infer(feed)


def test_split_engine_batches_are_timed_with_cuda_events(tmp_path, monkeypatch):
    clock = Clock()
    made = {}

    def make_runner(backend, bundle, engines=None):
        made[backend] = EventRunner(clock, [0.001] * 50)
        return made[backend]

    monkeypatch.setattr(backends, "make_runner", make_runner)
    out = forward.forward_benchmark(batch=7, config=TimingConfig(warmup=0, iters=2), bundle_dir=fake_bundle(tmp_path),
                                    backends=["trt-fp16"])
    r = out["results"]["trt-fp16"]
    assert r["status"] == "ran" and r["calls_per_pass"] == 3  # above the profile: split, not `trtdeploy bench`
    assert r["device_ms"]["gpu"]["median"] == pytest.approx(1.5)  # 3 slices x 0.001 s x 500, summed
