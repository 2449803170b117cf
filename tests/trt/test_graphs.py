"""CUDA-graph replay in TrtRunner on the fakes: libcuda's graph functions stand in with
FakeLibcuda, where a capture records what the fake engine enqueues and a launch runs it, and
libcudart's cudaGetLastError with FakeCudart. The fakes enforce TensorRT's rules: a graph
replayed after its execution context changed is an error (FakeContext._replay), and a failed
capture leaves the runtime's last error set, which fails the next enqueue until cleared
(FakeCuda.invalidate_capture). What a real capture of a TensorRT engine does is for a GPU
(shared/gpu/graph_check.py shows the driver calls on a pycuda stream)."""
from __future__ import annotations

import ctypes
import json
import logging
import shutil
import subprocess

import numpy as np
import pytest

from deploy.errors import EngineError, UsageError
from deploy.trt import runtime as runtime_module
from deploy.trt.graphs import GraphError, Graphs, open_runtime
from deploy.trt.runtime import TrtRunner
from deploy.trt.sidecar import IOTensor

from .fake_cuda import FakeCuda, FakeCudaError, FakeCudart, FakeLibcuda
from .fake_engine import FakeEngine, TensorIOMode
from .fakes import make_fake_trt
from .test_runtime_logic import expected, fakes, write_engine  # noqa: F401 - fixture

RNG = np.random.default_rng(0)


def x_of(n: int) -> np.ndarray:
    return RNG.standard_normal((n, 3), dtype=np.float32)


@pytest.fixture
def cudart(fakes, monkeypatch):
    _, cuda = fakes
    runtime = FakeCudart(cuda)
    monkeypatch.setattr(runtime_module, "open_runtime", lambda: runtime)
    return runtime


@pytest.fixture
def libcuda(fakes, cudart, monkeypatch):
    _, cuda = fakes
    lib = FakeLibcuda(cuda)
    monkeypatch.setattr(runtime_module, "open_driver", lambda: lib)
    return lib


def context_of(runner: TrtRunner, n: int):
    """The execution context the runner gave batch `n`'s graph."""
    return runner._bindings[((n, 3),)].context


def test_second_call_of_a_shape_captures_then_replays(tmp_path, fakes, libcuda):
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        for call in range(4):
            x = x_of(2)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
            if call == 0:  # TensorRT's plain enqueue after the shapes are set, before any capture
                assert context_of(runner, 2).calls == 1 and not libcuda.calls
        # one plain enqueue, one captured; every later call is a replay of that capture
        assert context_of(runner, 2).calls == 2 and libcuda.launches == 3
        assert libcuda.calls.count("cuStreamBeginCapture_v2") == 1
        assert runner._context.calls == 0  # the main context runs no graph
        assert runner.graph_fallback is None
        assert runner.last_timing.gpu_ms > 0  # events still bracket the replay


def test_each_shape_replays_its_own_graph_on_its_own_context(tmp_path, fakes, libcuda):
    trt, cuda = fakes
    with TrtRunner(write_engine(tmp_path), cuda_graph=True, timing=False) as runner:
        for n in (2, 2, 3, 3, 2, 2, 3):
            x = x_of(n)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
        two, three = context_of(runner, 2), context_of(runner, 3)
        assert two is not three and two.shapes == {"x": (2, 3)} and three.shapes == {"x": (3, 3)}
        # shape 2: plain, capture + launch, launch, launch; shape 3: plain, capture + launch, launch
        assert len(libcuda.execs) == 2 and libcuda.launches == 3 + 2
        assert (two.calls, three.calls) == (2, 2)
        # both share one block of activation memory, beside the runner's two buffers
        assert two.device_memory == three.device_memory and len(cuda.memory) == 3


def test_remainder_batches_never_replay_over_another_shape(tmp_path, fakes, libcuda):
    """`parity`'s and `infer`'s batches above the profile's 8 are split (8, 8, 3): each shape
    keeps a context whose shapes never change, so the fake's rule (no replay after the context
    changed, as TensorRT's developer guide warns) holds call after call."""
    with TrtRunner(write_engine(tmp_path), cuda_graph=True, timing=False) as runner:
        for _ in range(4):
            x = x_of(19)
            np.testing.assert_allclose(runner.infer_any_batch({"x": x})["y"], expected(x), rtol=1e-6)
        assert sorted(shape for (shape,) in runner._bindings) == [(3, 3), (8, 3)]
        assert runner.graph_fallback is None
        # batch 8, 8 calls: plain, then 7 launches (the capture's and 6 replays); batch 3, 4 calls: 3 launches
        assert libcuda.launches == 7 + 3


def test_a_replay_over_a_changed_context_is_what_the_fake_refuses(fakes, libcuda):
    """The rule itself, without the runner: capture on a context, change its shapes, launch."""
    trt, cuda = fakes
    engine = trt.Runtime(None).deserialize_cuda_engine(b"plan")
    cuda.Device(0).retain_primary_context().push()
    context = engine.create_execution_context()
    for name, nbytes in (("x", 96), ("y", 64)):
        context.set_tensor_address(name, int(cuda.mem_alloc(nbytes)))
    context.set_input_shape("x", (8, 3))
    graphs = Graphs(libcuda, 0xCAFE)
    graph = graphs.capture(lambda: context.execute_async_v3(0xCAFE))
    graphs.launch(graph)
    context.set_input_shape("x", (3, 3))
    context.set_input_shape("x", (8, 3))  # back to the captured shape: the context still changed
    with pytest.raises(FakeCudaError, match="replayed after its execution context changed"):
        graphs.launch(graph)


def test_engine_that_cannot_be_captured_falls_back_and_says_why(tmp_path, fakes, libcuda, cudart, caplog):
    _, cuda = fakes
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        runner.infer({"x": x_of(2)})
        context_of(runner, 2).capturable = False
        with caplog.at_level(logging.WARNING, logger="trtdeploy.trt"):
            for _ in range(3):
                x = x_of(2)
                np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
    assert "execute_async_v3 failed during stream capture" in runner.graph_fallback
    assert [r.getMessage() for r in caplog.records] == [f"tensorrt-fp32: running without CUDA graphs: "
                                                        f"{runner.graph_fallback}"]
    assert libcuda.calls.count("cuStreamBeginCapture_v2") == 1 and libcuda.launches == 0
    assert not cuda.capturing and not libcuda.graphs  # the capture was ended and its graph freed
    # the invalidated capture's error was cleared (else the plain enqueue after it had failed)
    assert cudart.cleared == [FakeLibcuda.INVALIDATED] and cuda.runtime_error == 0


def test_without_a_reachable_runtime_the_fallback_fails_naming_the_capture(tmp_path, fakes, libcuda, monkeypatch):
    """The fake's rule: a failed capture leaves the runtime's last error set and TensorRT's next
    enqueue fails on it; with no libcudart to clear it, the error says what happened."""
    monkeypatch.setattr(runtime_module, "open_runtime", lambda: None)
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        runner.infer({"x": x_of(2)})
        context_of(runner, 2).capturable = False
        with pytest.raises(EngineError, match=r"execute_async_v3 failed; see the TensorRT log \(after the CUDA-graph "
                                              r"fallback: execute_async_v3 failed during stream capture"):
            runner.infer({"x": x_of(2)})


def test_invalidated_capture_falls_back_with_the_driver_error(tmp_path, fakes, cudart, monkeypatch):
    _, cuda = fakes
    lib = FakeLibcuda(cuda, fail={"cuStreamEndCapture": FakeLibcuda.INVALIDATED})
    monkeypatch.setattr(runtime_module, "open_driver", lambda: lib)
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        for _ in range(3):
            x = x_of(4)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
    assert "cuStreamEndCapture failed: CUDA_ERROR_STREAM_CAPTURE_INVALIDATED (901)" in runner.graph_fallback
    assert not cuda.capturing and not lib.graphs and not lib.execs
    assert cudart.cleared == [FakeLibcuda.INVALIDATED]


def test_no_driver_falls_back(tmp_path, fakes, monkeypatch):
    def no_driver():
        raise GraphError("cannot load libcuda.so.1 for CUDA graphs (not here)")

    monkeypatch.setattr(runtime_module, "open_driver", no_driver)
    with TrtRunner(write_engine(tmp_path), cuda_graph=True) as runner:
        for _ in range(2):
            x = x_of(1)
            np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
        assert runner._context.calls == 2  # all on the main context
    assert runner.graph_fallback == "cannot load libcuda.so.1 for CUDA graphs (not here)"


def test_close_destroys_graphs_and_contexts_before_freeing_their_memory(tmp_path, fakes, libcuda):
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
    assert buffers_at_destroy == [3, 3]  # both device buffers and the shared activations still allocated
    assert not libcuda.execs and not libcuda.graphs and not cuda.memory and cuda.stack() == []
    assert cuda.driver_stack() == []
    # a second activation captures again
    x = x_of(3)
    for _ in range(2):
        np.testing.assert_allclose(runner.infer({"x": x})["y"], expected(x), rtol=1e-6)
    assert len(libcuda.execs) == 1
    runner.close()


def test_dropped_shapes_release_their_graphs_and_contexts(tmp_path, fakes, libcuda, monkeypatch):
    monkeypatch.setattr(runtime_module, "MAX_BINDINGS", 2)
    with TrtRunner(write_engine(tmp_path), cuda_graph=True, timing=False) as runner:
        for n in (1, 1, 2, 2, 3, 3):
            runner.infer({"x": x_of(n)})
        assert len(libcuda.execs) == 2 and len(runner._graphs.live) == 2
        assert sorted(shape for (shape,) in runner._bindings) == [(2, 3), (3, 3)]


def test_profiling_and_graphs_exclude_each_other(tmp_path):
    with pytest.raises(UsageError, match="drop --cuda-graph to profile"):
        TrtRunner(write_engine(tmp_path), cuda_graph=True, profiler=object())


def test_capture_ends_even_when_the_enqueue_raises():
    cuda = FakeCuda()
    lib = FakeLibcuda(cuda)
    cuda.Device(0).retain_primary_context().push()  # libcuda calls need a current context
    runtime = FakeCudart(cuda)
    graphs = Graphs(lib, 0xCAFE, runtime)

    def boom():
        raise RuntimeError("enqueue crashed")

    with pytest.raises(RuntimeError, match="enqueue crashed"):
        graphs.capture(boom)
    # the capture is ended, the graph it gave destroyed, the runtime's error cleared
    assert lib.calls == ["cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphDestroy"] and not cuda.capturing
    assert graphs.live == [] and not lib.graphs and runtime.cleared == [0]


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


# --------------------------------------------------------------------------- finding libcudart
def test_open_runtime_takes_the_mapped_libcudart(tmp_path):
    """A stand-in libcudart.so.12 (one C function) mapped in a process is found in its maps and
    its cudaGetLastError answers; nothing mapped, or no such function, is None."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build a stand-in libcudart")
    source = tmp_path / "cudart.c"
    source.write_text("int cudaGetLastError(void) { return 901; }\n")
    lib = tmp_path / "libcudart.so.12"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(source)], check=True, capture_output=True)
    ctypes.CDLL(str(lib))  # what TensorRT's loading it does: the library is now in this process's maps
    maps = tmp_path / "maps"
    maps.write_text(f"7f00-7f10 r-xp 00000000 08:01 42 {lib}\n7f10-7f20 r--p 00000000 08:01 43 /usr/lib/libc.so.6\n")
    runtime = open_runtime(maps)
    assert runtime is not None and runtime.cudaGetLastError() == 901
    maps.write_text("7f10-7f20 r--p 00000000 08:01 43 /usr/lib/libc.so.6\n")
    assert open_runtime(maps) is None and open_runtime(tmp_path / "no-maps") is None
    other = tmp_path / "libcudart.so.11"
    source.write_text("int unrelated(void) { return 0; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(other), str(source)], check=True, capture_output=True)
    maps.write_text(f"7f00-7f10 r-xp 00000000 08:01 44 {other}\n")
    assert open_runtime(maps) is None


# --------------------------------------------------------------------------- through the CLI
class PixelEngine(FakeEngine):
    """FakeEngine on 1x1 RGB images: x [-1, 3, 1, 1] -> y [-1, 2], the same arithmetic."""

    io = {"x": (TensorIOMode.INPUT, (-1, 3, 1, 1)), "y": (TensorIOMode.OUTPUT, (-1, 2))}
    profile = ((1, 3, 1, 1), (4, 3, 1, 1), (8, 3, 1, 1))


def test_infer_cli_replays_full_batches_and_runs_the_remainder(tmp_path, monkeypatch, capsys):
    """`trtdeploy infer --cuda-graph` on 27 images, engine batches up to 8: 8, 8, 8 and the
    remainder 3, each shape on its own context; every score is the engine's arithmetic."""
    Image = pytest.importorskip("PIL.Image")
    from deploy.cli import main
    from deploy.cli.infer import softmax
    from deploy.data.preprocess import Preprocess

    cuda = FakeCuda(capability=(8, 7))
    trt = make_fake_trt("10.16.1.11", cuda, engine=PixelEngine)
    lib, runtime = FakeLibcuda(cuda), FakeCudart(cuda)
    for name, value in (("import_cuda", lambda: cuda), ("import_tensorrt", lambda: trt),
                        ("open_driver", lambda: lib), ("open_runtime", lambda: runtime)):
        monkeypatch.setattr(runtime_module, name, value)
    preprocessing = {"preset": "digits", "height": 1, "width": 1, "layout": "NCHW"}
    (tmp_path / "manifest.json").write_text(json.dumps({
        "format": 1, "model": {"name": "m", "num_classes": 2}, "preprocessing": preprocessing,
        "inputs": [{"name": "x", "shape": [-1, 3, 1, 1], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": "y", "shape": [-1, 2], "dtype": "float32"}]}))
    plan = write_engine(tmp_path, io=(IOTensor("x", "input", "float32", (-1, 3, 1, 1), PixelEngine.profile),
                                      IOTensor("y", "output", "float32", (-1, 2))))
    rng = np.random.default_rng(1)
    images = []
    for i in range(27):
        images.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)).save(images[-1])
    assert main(["infer", str(tmp_path), *map(str, images), "--engine", str(plan), "--cuda-graph", "--json",
                 "--top-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    x = np.stack([Preprocess.from_json(preprocessing).load(p) for p in images]).reshape(27, 3)
    want = softmax(expected(x))
    got = np.array([[t["score"] for t in sorted(r["top"], key=lambda t: t["class"])] for r in results])
    # float32 engine arithmetic against float64 here: scores agree to float32 rounding, ~1e-7
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert lib.launches == 2  # batch 8: plain, then the capture's launch and one replay; batch 3 ran plain
