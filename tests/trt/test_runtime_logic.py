"""TrtRunner bookkeeping on a stand-in engine and pycuda (see fake_engine.py, fake_cuda.py): checks before
deserializing, buffers sized for the profile, per-call shapes, copies the caller owns, input
validation, timing, the context pushed on the calling thread, and clean release. What TensorRT
itself computes is tested on a GPU (test_gpu_engines.py)."""
from __future__ import annotations

import json
import sys
import threading

import numpy as np
import pytest

from deploy.runners.timing import summarize_ms
from deploy.errors import EngineError, InputError, ToolMissingError
from deploy.fsutil import sha256_bytes
from deploy.trt import runtime as runtime_module
from deploy.trt.cuda import import_cuda, sm_tag
from deploy.trt.runtime import TrtRunner, check_profile, describe_engine, volume
from deploy.trt.sidecar import IOTensor, Sidecar, sidecar_path

from .fake_cuda import FakeCuda
from .fake_engine import FakeEngine
from .fakes import make_fake_trt

PLAN = b"fake plan"


def write_engine(tmp_path, **changes) -> object:
    plan = tmp_path / "engines" / "m.fp32.plan"
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_bytes(PLAN)
    fields = dict(
        plan=plan.name, plan_sha256=sha256_bytes(PLAN), model="m", tensorrt="10.16.1.11", gpu_name="Fake GPU",
        compute_capability="sm_87", precision="fp32", mode="explicit", version_compatible=False,
        hardware_compat=None, batch=(1, 4, 8),
        io=(IOTensor("x", "input", "float32", (-1, 3), ((1, 3), (4, 3), (8, 3))),
            IOTensor("y", "output", "float32", (-1, 2))),
        onnx="model.onnx", onnx_sha256="00" * 32,
    )
    fields.update(changes)
    sidecar_path(plan).write_text(json.dumps(Sidecar(**fields).to_json()))
    return plan


@pytest.fixture
def fakes(monkeypatch):
    cuda = FakeCuda(capability=(8, 7))
    trt = make_fake_trt("10.16.1.11", cuda)
    monkeypatch.setattr(runtime_module, "import_cuda", lambda: cuda)
    monkeypatch.setattr(runtime_module, "import_tensorrt", lambda: trt)
    return trt, cuda


def expected(x: np.ndarray) -> np.ndarray:
    return x[:, :2] * 2 + x[:, 2:]


def test_runs_batches_of_any_size_in_the_profile(tmp_path, fakes):
    trt, cuda = fakes
    rng = np.random.default_rng(0)
    with TrtRunner(write_engine(tmp_path)) as runner:
        big = rng.standard_normal((8, 3), dtype=np.float32)
        small = rng.standard_normal((2, 3), dtype=np.float32)
        out_big = runner.infer({"x": big})
        out_small = runner.infer({"x": small})  # must not see the previous, larger batch
        np.testing.assert_allclose(out_big["y"], expected(big), rtol=1e-6)
        np.testing.assert_allclose(out_small["y"], expected(small), rtol=1e-6)
        assert out_small["y"].shape == (2, 2)
        # buffers were sized once, for the profile max: one allocation per tensor
        assert sorted(m.size for m in cuda.memory.values()) == [8 * 2 * 4, 8 * 3 * 4]
        # results are the caller's: changing one does not change the next call's
        out_small["y"][:] = 0
        again = runner.infer({"x": small})
        np.testing.assert_allclose(again["y"], expected(small), rtol=1e-6)
        assert not np.shares_memory(again["y"], out_small["y"])
        assert runner.last_timing.batch == 2 and runner.last_timing.host_ms > runner.last_timing.gpu_ms > 0
        timings = runner.timings()
        assert timings["calls"] == 3
        # the statistics are deploy.bench's, one function for every benchmark
        assert timings["gpu_ms"] == summarize_ms([1.0, 1.0, 1.0])
        assert set(timings) == {"calls", "gpu_ms", "host_ms", "h2d_ms", "d2h_ms"}
    assert trt.deserialized == [PLAN]


def test_close_frees_everything_and_leaves_no_context(tmp_path, fakes):
    _, cuda = fakes
    runner = TrtRunner(write_engine(tmp_path))
    runner.infer({"x": np.ones((1, 3), np.float32)})
    runner.close()
    runner.close()  # idempotent
    assert not cuda.memory and cuda.host_freed == 2
    # pycuda's detach() would leave the primary context pushed on the driver's stack
    # (fake_cuda.FakeCuda models it); the one reference is kept for the process instead.
    assert cuda.driver_stack() == [] and cuda.stack() == []
    assert cuda.retained == 1 and cuda.detached == 0
    with TrtRunner(write_engine(tmp_path)) as again:  # the same reference serves every runner
        again.infer({"x": np.ones((1, 3), np.float32)})
    assert cuda.retained == 1 and cuda.driver_stack() == [] and cuda.stack() == []


def test_close_leaves_a_context_the_caller_had_current(tmp_path, fakes):
    """A caller with its own context current (pycuda.autoprimaryctx, say) finds both stacks as
    they were after the runner is done."""
    _, cuda = fakes
    own = cuda.Device(0).retain_primary_context()
    own.push()
    before = (list(cuda.driver_stack()), list(cuda.stack()))
    with TrtRunner(write_engine(tmp_path)) as runner:
        runner.infer({"x": np.ones((2, 3), np.float32)})
    assert (cuda.driver_stack(), cuda.stack()) == before
    cuda.Context.pop()
    assert cuda.driver_stack() == [] and cuda.stack() == []


def test_close_from_another_thread_leaves_both_threads_clean(tmp_path, fakes):
    _, cuda = fakes
    runner = TrtRunner(write_engine(tmp_path))
    seen = {}

    def first_use():
        runner.infer({"x": np.ones((1, 3), np.float32)})
        seen["worker"] = (list(cuda.driver_stack()), list(cuda.stack()))

    t = threading.Thread(target=first_use)
    t.start()
    t.join()
    runner.close()
    assert seen["worker"] == ([], [])
    assert cuda.driver_stack() == [] and cuda.stack() == [] and not cuda.memory


def test_build_context_leaves_the_thread_as_it_was():
    from deploy.trt.cuda import primary_context

    cuda = FakeCuda()
    with primary_context(cuda) as ctx:
        assert cuda.driver_stack() == [ctx.handle] and cuda.stack() == [ctx]
        cuda.mem_alloc(4).free()
    assert cuda.driver_stack() == [] and cuda.stack() == []
    with primary_context(cuda):
        pass
    assert cuda.driver_stack() == [] and cuda.retained == 1


def test_other_threads_push_the_context(tmp_path, fakes):
    results = {}
    with TrtRunner(write_engine(tmp_path)) as runner:
        def work():
            try:
                results["y"] = runner.infer({"x": np.ones((3, 3), np.float32)})["y"]
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                results["error"] = e

        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert "error" not in results, results.get("error")
    np.testing.assert_allclose(results["y"], np.full((3, 2), 3.0))


def test_batch_outside_the_profile_is_an_input_error(tmp_path, fakes):
    with TrtRunner(write_engine(tmp_path)) as runner:
        with pytest.raises(InputError, match=r"batch 9 is outside the engine's profile \[1, 8\]"):
            runner.infer({"x": np.ones((9, 3), np.float32)})
        with pytest.raises(InputError, match="dtype float64"):
            runner.infer({"x": np.ones((2, 3))})
        with pytest.raises(InputError, match="missing"):
            runner.infer({})


def test_incompatible_engine_refused_before_deserializing(tmp_path, fakes):
    trt, _ = fakes
    runner = TrtRunner(write_engine(tmp_path, tensorrt="10.3.0.30"))
    with pytest.raises(EngineError, match="built with TensorRT 10.3.0.30 for sm_87; this is TensorRT 10.16.1.11"):
        runner.activate()
    assert trt.deserialized == []


def test_swapped_plan_refused_before_deserializing(tmp_path, fakes):
    trt, _ = fakes
    plan = write_engine(tmp_path)
    plan.write_bytes(b"another plan")
    with pytest.raises(EngineError, match="swapped or half-copied"):
        TrtRunner(plan).activate()
    assert trt.deserialized == []


def test_engine_disagreeing_with_its_sidecar_refused_and_released(tmp_path, fakes):
    _, cuda = fakes
    plan = write_engine(tmp_path, io=(IOTensor("image", "input", "float32", (-1, 3), ((1, 3), (4, 3), (8, 3))),
                                      IOTensor("y", "output", "float32", (-1, 2))))
    with pytest.raises(EngineError, match="differs from its sidecar"):
        TrtRunner(plan).activate()
    assert cuda.stack() == [] and cuda.driver_stack() == []


def test_input_specs_come_from_the_sidecar_without_a_gpu(tmp_path):
    runner = TrtRunner(write_engine(tmp_path))
    (spec,) = runner.input_specs()
    assert (spec.name, spec.shape, spec.dtype) == ("x", (None, 3), np.dtype(np.float32))
    assert runner.output_names() == ["y"] and runner.name == "tensorrt-fp32"


def test_describe_engine(fakes):
    trt, cuda = fakes
    io = describe_engine(trt, FakeEngine(cuda))
    assert io == (IOTensor("x", "input", "float32", (-1, 3), ((1, 3), (4, 3), (8, 3))),
                  IOTensor("y", "output", "float32", (-1, 2)))


def test_check_profile_names_the_dimension():
    t = IOTensor("x", "input", "float32", (-1, 3, -1), ((1, 3, 4), (2, 3, 8), (4, 3, 16)))
    check_profile([t], {"x": np.zeros((4, 3, 16))}, "r")
    with pytest.raises(InputError, match="dimension 2 20 is outside"):
        check_profile([t], {"x": np.zeros((1, 3, 20))}, "r")


def test_helpers():
    assert volume((8, 3, 224, 224)) == 8 * 3 * 224 * 224 and volume(()) == 1
    assert sm_tag((8, 7)) == "sm_87" and sm_tag((12, 0)) == "sm_120"


def test_no_pycuda_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.delitem(sys.modules, "pycuda.driver", raising=False)
    with pytest.raises(ToolMissingError, match="pycuda is not installed"):
        import_cuda()


def test_repeated_shapes_skip_the_shape_work(tmp_path, fakes):
    with TrtRunner(write_engine(tmp_path), timing=False) as runner:
        context = runner._context
        after_load = context.shape_calls  # the profile's max, to size the buffers
        x2, x3 = np.ones((2, 3), np.float32), np.ones((3, 3), np.float32)
        for _ in range(5):
            runner.infer({"x": x2})
        assert context.shape_calls == after_load + 1
        runner.infer({"x": x3})
        runner.infer({"x": x2})  # back to a known shape: set again, since the context holds 3
        assert context.shape_calls == after_load + 3
        np.testing.assert_allclose(runner.infer({"x": x3 * 2})["y"], expected(x3 * 2), rtol=1e-6)


def test_known_shapes_are_still_checked_for_dtype_and_layout(tmp_path, fakes):
    with TrtRunner(write_engine(tmp_path)) as runner:
        runner.infer({"x": np.ones((2, 3), np.float32)})
        with pytest.raises(InputError, match="dtype float64"):
            runner.infer({"x": np.ones((2, 3))})
        with pytest.raises(InputError, match="not C-contiguous"):
            runner.infer({"x": np.ones((3, 2), np.float32).T})
        with pytest.raises(InputError, match="unexpected"):
            runner.infer({"x": np.ones((2, 3), np.float32), "z": np.ones((2, 3), np.float32)})


def test_timing_off_records_no_events(tmp_path, fakes, monkeypatch):
    _, cuda = fakes
    recorded = []
    monkeypatch.setattr(cuda.Event, "record", lambda self, stream=None: recorded.append(self))
    with TrtRunner(write_engine(tmp_path), timing=False) as runner:
        out = runner.infer({"x": np.ones((2, 3), np.float32)})
        np.testing.assert_allclose(out["y"], np.full((2, 2), 3.0))
    assert recorded == [] and runner.last_timing is None and runner.timings() == {"calls": 0}


def test_shape_cache_is_bounded(tmp_path, fakes, monkeypatch):
    monkeypatch.setattr(runtime_module, "MAX_BINDINGS", 3)
    with TrtRunner(write_engine(tmp_path), timing=False) as runner:
        for n in range(1, 9):
            x = np.full((n, 3), n, np.float32)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x))
        assert sorted(k[0][0] for k in runner._bindings) == [6, 7, 8]


def test_profiler_receives_each_calls_layer_times(tmp_path, fakes):
    trt, _ = fakes
    seen = []

    class Profiler(trt.IProfiler):
        def report_layer_time(self, layer_name, ms):
            seen.append((layer_name, ms))

    profiler = Profiler()
    with TrtRunner(write_engine(tmp_path), profiler=profiler) as runner:
        assert runner._context.profiler is profiler and runner._context.enqueue_emits_profile is False
        for _ in range(2):
            runner.infer({"x": np.ones((2, 3), np.float32)})
        # reported after the stream's synchronize, not by a synchronous enqueue (the fake reports from
        # the enqueue itself while enqueue_emits_profile is true, TensorRT's default)
        assert runner._context.reported_by == ["report_to_profiler"] * 2
    assert seen == [("conv1 + relu", 1.0), ("pool", 0.02), ("fc", 0.2)] * 2
