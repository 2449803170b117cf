"""`trtdeploy bench`: the statistics, the config's refusals, streams and CUDA graphs on the
fakes (whose CUDA events tick a counter, so their "ms" are not times), and the CLI."""
from __future__ import annotations

import json
import sys

import pytest

from deploy.runners.timing import summarize_ms
from deploy.cli import main
from deploy.errors import EngineError, UsageError
from deploy.trt import runtime as runtime_module
from deploy.trt.enginebench import BenchConfig, bench_engine, summarize_calls, summary_text
from deploy.trt.runtime import Timing

from .fake_cuda import FakeCudart, FakeLibcuda
from .fake_engine import FakeContext
from .test_profiler import bundle, device  # noqa: F401 - fixtures
from .test_runtime_logic import write_engine


def test_summarize_calls_has_trtexecs_metrics():
    timings = [Timing(4, gpu_ms=g, host_ms=g + 0.3, h2d_ms=0.2, d2h_ms=0.1) for g in (1.0, 2.0, 3.0, 4.0)]
    wall = [1.5, 2.5, 3.5, 6.0]
    s = summarize_calls(wall, timings, batch=4, span_s=0.5, per_stream=[{"calls": 4}])
    assert (s["calls"], s["images"]) == (4, 16)
    assert s["throughput"] == {"images_per_s": 32.0, "calls_per_s": 8.0}
    assert s["gpu_compute_ms"] == summarize_ms([1.0, 2.0, 3.0, 4.0])
    assert s["host_latency_ms"]["median"] == pytest.approx(2.8) and s["h2d_ms"]["p99"] == pytest.approx(0.2)
    assert s["runner_overhead_ms"] == summarize_ms([0.5, 0.5, 0.5, 2.0])  # wall minus GPU compute
    assert set(s["wall_ms"]) == {"median", "mean", "p90", "p99", "min", "max", "std"}
    with pytest.raises(UsageError, match="no timed calls"):
        summarize_calls([], [], batch=1, span_s=0.0)


@pytest.mark.parametrize("kwargs, message", [
    ({"iters": 5, "duration_s": 1.0}, "a number of timed calls or a duration, not both"),
    ({"iters": 0}, "the number of timed calls must be at least 1, got 0"),
    ({"duration_s": 0.0}, "finite number of seconds > 0"),
    ({"warmup_s": -1.0}, "the warm-up must be finite and >= 0"),
    ({"warmup_s": float("nan")}, "the warm-up must be finite and >= 0"),
    ({"streams": 0}, "the number of streams must be at least 1, got 0"),
    ({"batch": 0}, "the batch size must be at least 1, got 0"),
])
def test_config_refusals(kwargs, message):
    with pytest.raises(UsageError, match=message):
        BenchConfig(**kwargs)


def test_streams_run_in_parallel_runners(tmp_path, device):
    result = bench_engine(write_engine(tmp_path), BenchConfig(batch=2, iters=6, warmup_iters=2, streams=3))
    json.dumps(result, allow_nan=False)
    assert result["calls"] == 18 and result["images"] == 36 and result["streams"] == 3
    assert [s["calls"] for s in result["per_stream"]] == [6, 6, 6]
    assert result["throughput"]["images_per_s"] > 0 and result["batch"] == 2
    assert result["cuda_graph"] == {"requested": False, "used": False, "fallback": None}
    assert result["machine"]["gpu"]["name"] == "Fake GPU" and result["machine"]["tools"]["tensorrt"] == "10.16.1.11"
    assert "3 stream(s), CUDA graph: no" in summary_text(result)


def test_duration_bounds_the_timed_phase(tmp_path, device):
    result = bench_engine(write_engine(tmp_path), BenchConfig(duration_s=0.05, warmup_s=0.0))
    assert result["calls"] > 0 and result["batch"] == 4  # the engine's opt batch
    assert 0.05 <= result["span_s"] < 5


def test_cuda_graph_used_or_fallback_reported(tmp_path, device, monkeypatch):
    _, cuda = device
    lib = FakeLibcuda(cuda)
    monkeypatch.setattr(runtime_module, "open_driver", lambda: lib)
    monkeypatch.setattr(runtime_module, "open_runtime", lambda: FakeCudart(cuda))
    plan = write_engine(tmp_path)
    result = bench_engine(plan, BenchConfig(batch=1, iters=5, warmup_iters=2, cuda_graph=True))
    assert result["cuda_graph"] == {"requested": True, "used": True, "fallback": None}
    assert lib.launches == 6  # 7 calls: one plain, then a capture and six replays
    monkeypatch.setattr(FakeContext, "__init__", _not_capturable(FakeContext.__init__))
    result = bench_engine(plan, BenchConfig(batch=1, iters=3, warmup_iters=2, cuda_graph=True))
    assert result["cuda_graph"]["used"] is False
    assert "execute_async_v3 failed during stream capture" in result["cuda_graph"]["fallback"]
    assert "CUDA graph: no (execute_async_v3 failed" in summary_text(result)


def _not_capturable(init):
    def wrapped(self, engine, *args):
        init(self, engine, *args)
        self.capturable = False
    return wrapped


def test_a_failing_stream_stops_the_benchmark_with_its_error(tmp_path, device, monkeypatch):
    def fail(self, stream_handle):
        return False

    monkeypatch.setattr(FakeContext, "execute_async_v3", fail)
    with pytest.raises(EngineError, match="execute_async_v3 failed"):
        bench_engine(write_engine(tmp_path), BenchConfig(iters=2, streams=2))


def test_bench_cli_writes_json(bundle, device, capsys):
    assert main(["bench", str(bundle), "--batch", "3", "--iters", "4", "--warmup", "0", "--streams", "2"]) == 0
    out = capsys.readouterr().out
    path = bundle / "reports" / "bench.m.fp32.json"
    result = json.loads(path.read_text())
    assert result["calls"] == 8 and result["batch"] == 3 and f"bench: {path}" in out
    assert "GPU compute: min" in out and "runner overhead (wall - GPU compute)" in out


def test_bench_cli_refusals(bundle, monkeypatch, capsys):
    with pytest.raises(SystemExit):  # argparse: --duration and --iters exclude each other
        main(["bench", str(bundle), "--duration", "1", "--iters", "3"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # the CLI's check is the option's type
        main(["bench", str(bundle), "--streams", "0"])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: argument --streams: must be an integer >= 1, got '0' "
                                       "(see `trtdeploy bench --help`)\n")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert main(["bench", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: TensorRT is not importable") and err.count("\n") == 1
