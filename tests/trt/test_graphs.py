"""CUDA-graph replay in TrtRunner on the fakes: libcuda's graph functions stand in with
FakeLibcuda, where a capture records what the fake engine enqueues and a launch runs it.
What a real capture of a TensorRT engine does is for a GPU (shared/gpu/graph_check.py shows
the driver calls on a pycuda stream)."""
from __future__ import annotations

import ctypes
import logging

import numpy as np
import pytest

from deploy.errors import UsageError
from deploy.trt import runtime as runtime_module
from deploy.trt.graphs import GraphError, Graphs
from deploy.trt.runtime import TrtRunner

from .fake_cuda import FakeCuda, FakeLibcuda
from .test_runtime_logic import expected, fakes, write_engine  # noqa: F401 - fixture

RNG = np.random.default_rng(0)


def x_of(n: int) -> np.ndarray:
    return RNG.standard_normal((n, 3), dtype=np.float32)


@pytest.fixture
def libcuda(fakes, monkeypatch):
    _, cuda = fakes
    lib = FakeLibcuda(cuda)
    monkeypatch.setattr(runtime_module, "open_driver", lambda: lib)
    return lib


def test_second_call_of_a_shape_captures_then_replays(tmp_path, fakes, libcuda):
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        context = runner._context
        for call in range(4):
            x = x_of(2)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
            if call == 0:  # TensorRT's plain enqueue after a shape change, before any capture
                assert context.calls == 1 and not libcuda.calls
        # one plain enqueue, one captured; every later call is a replay of that capture
        assert context.calls == 2 and libcuda.launches == 3
        assert libcuda.calls.count("cuStreamBeginCapture_v2") == 1
        assert runner.graph_fallback is None
        assert runner.last_timing.gpu_ms > 0  # events still bracket the replay


def test_a_graph_per_shape_replayed_only_after_a_plain_call(tmp_path, fakes, libcuda):
    with TrtRunner(write_engine(tmp_path), cuda_graph=True, timing=False) as runner:
        for n in (2, 2, 3, 3, 2, 2, 3):
            x = x_of(n)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
        # shapes 2 and 3 captured once each (calls 2 and 4, replayed at once); the four calls
        # after a shape change ran plain; call 6 replayed shape 2's graph
        assert len(libcuda.execs) == 2 and libcuda.launches == 3
        assert runner._context.calls == 4 + 2


def test_engine_that_cannot_be_captured_falls_back_and_says_why(tmp_path, fakes, libcuda, caplog):
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        runner.infer({"x": x_of(2)})
        runner._context.capturable = False
        with caplog.at_level(logging.WARNING, logger="trtdeploy.trt"):
            for _ in range(3):
                x = x_of(2)
                np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
    assert "execute_async_v3 failed during stream capture" in runner.graph_fallback
    assert [r.getMessage() for r in caplog.records] == [f"tensorrt-fp32: running without CUDA graphs: "
                                                        f"{runner.graph_fallback}"]
    assert libcuda.calls.count("cuStreamBeginCapture_v2") == 1 and libcuda.launches == 0
    assert not fakes[1].capturing and not libcuda.graphs  # the capture was ended and its graph freed


def test_invalidated_capture_falls_back_with_the_driver_error(tmp_path, fakes, monkeypatch):
    _, cuda = fakes
    lib = FakeLibcuda(cuda, fail={"cuStreamEndCapture": FakeLibcuda.INVALIDATED})
    monkeypatch.setattr(runtime_module, "open_driver", lambda: lib)
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        for _ in range(3):
            x = x_of(4)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
    assert "cuStreamEndCapture failed: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (901)" in runner.graph_fallback
    assert not cuda.capturing and not lib.graphs and not lib.execs


def test_no_driver_falls_back(tmp_path, fakes, monkeypatch):
    def no_driver():
        raise GraphError("cannot load libcuda.so.1 for CUDA graphs (not here)")

    monkeypatch.setattr(runtime_module, "open_driver", no_driver)
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        for _ in range(2):
            x = x_of(1)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
    assert runner.graph_fallback == "cannot load libcuda.so.1 for CUDA graphs (not here)"


def test_close_destroys_graphs_before_freeing_their_buffers(tmp_path, fakes, libcuda):
    _, cuda = fakes
    buffers_at_destroy = []
    destroy = libcuda.cuGraphExecDestroy

    def watched(exe):
        buffers_at_destroy.append(len(cuda.memory))
        return destroy(exe)

    libcuda.cuGraphExecDestroy = watched
    runner = TrtRunner(write_engine(tmp_path), cuda_graph=True)
    for n in (2, 2, 5, 5):
        runner.infer({"x": x_of(n)})
    assert len(libcuda.execs) == 2
    runner.close()
    assert buffers_at_destroy == [2, 2]  # both device buffers still allocated
    assert not libcuda.execs and not libcuda.graphs and not cuda.memory and cuda.stack() == []
    assert cuda.driver_stack() == []
    # a second activation captures again
    x = x_of(3)
    for _ in range(2):
        np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
    assert len(libcuda.execs) == 1
    runner.close()


def test_dropped_shapes_release_their_graphs(tmp_path, fakes, libcuda, monkeypatch):
    monkeypatch.setattr(runtime_module, "MAX_BINDINGS", 2)
    with TrtRunner(write_engine(tmp_path), cuda_graph=True, timing=False) as runner:
        for n in (1, 1, 2, 2, 3, 3):
            runner.infer({"x": x_of(n)})
        assert len(libcuda.execs) == 2 and len(runner._graphs.live) == 2


def test_profiling_and_graphs_exclude_each_other(tmp_path):
    with pytest.raises(UsageError, match="drop --cuda-graph to profile"):
        TrtRunner(write_engine(tmp_path), cuda_graph=True, profiler=object())


def test_capture_ends_even_when_the_enqueue_raises():
    cuda = FakeCuda()
    lib = FakeLibcuda(cuda)
    cuda.Device(0).retain_primary_context().push()  # libcuda calls need a current context
    graphs = Graphs(lib, 0xCAFE)

    def boom():
        raise RuntimeError("enqueue crashed")

    with pytest.raises(RuntimeError, match="enqueue crashed"):
        graphs.capture(boom)
    assert lib.calls == ["cuStreamBeginCapture_v2", "cuStreamEndCapture"] and not cuda.capturing
    assert graphs.live == []


def test_refused_begin_capture_is_a_graph_error():
    cuda = FakeCuda()
    lib = FakeLibcuda(cuda, fail={"cuStreamBeginCapture_v2": 900})
    cuda.Device(0).retain_primary_context().push()  # libcuda calls need a current context
    with pytest.raises(GraphError, match=r"cuStreamBeginCapture_v2 failed: CUDA_ERROR_UNKNOWN \(900\)"):
        Graphs(lib, 0xCAFE).capture(lambda: True)
    assert isinstance(Graphs(lib, 1).stream, ctypes.c_void_p)


def test_failed_launch_falls_back_for_good(tmp_path, fakes, libcuda):
    libcuda.fail["cuGraphLaunch"] = 700  # CUDA_ERROR_ILLEGAL_ADDRESS, say
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        for _ in range(4):
            x = x_of(2)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
    assert runner.graph_fallback.startswith("cuGraphLaunch failed: CUDA_ERROR_UNKNOWN (700)")
    assert libcuda.calls.count("cuGraphLaunch") == 1 and not libcuda.execs and not libcuda.graphs
