"""CUDA-graph capture and replay of `execute_async_v3`, through the driver API with ctypes.

pycuda 2026.1 has no graph API, so the five driver calls are made on `libcuda.so.1`
directly, on the runner's pycuda stream (its `.handle` is the CUstream) while the runner's
context is current. TensorRT's rules for capturing an engine (developer guide, "CUDA
Graphs"): input shapes are set before capture; after a shape change, enqueue once without
capturing so TensorRT does its deferred work; engines with data-dependent shapes, loops or
conditionals cannot be captured (`execute_async_v3` fails, or the capture is invalidated).
A graph replays the kernels it captured with the buffer addresses and shapes of that
capture, and "the captured graph is specific to the input shapes and the state of the execution
context. Modifying the context with which the graph was captured will result in undefined
behavior when executing the graph", so the guide's practice is "one execution context per
captured graph", sharing one block of activation memory: the runner gives each input shape it
replays its own context, whose shapes never change after the capture (runtime.py).

A capture that fails leaves the CUDA runtime's last error set (cudaErrorStreamCaptureInvalidated):
TensorRT's enqueue checks it after its launches, so the plain `execute_async_v3` that should
replace the graph would fail too. trtexec's `TrtCudaGraph::endCaptureOnError`
(samples/common/sampleDevice.h) ends the capture and then calls `cudaGetLastError()` to clear it;
`Graphs.capture` does the same on the runtime library TensorRT loaded (`open_runtime`).

Nothing here imports pycuda or TensorRT; `open_driver` loads libcuda when first asked.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import DeployError

# CUstreamCaptureMode: THREAD_LOCAL refuses unsafe CUDA calls (cuMemAlloc, synchronous copies)
# made by this thread during the capture, without stopping other runners' threads, as GLOBAL
# (0) would.
CAPTURE_THREAD_LOCAL = 1
_FUNCTIONS = ("cuStreamBeginCapture_v2", "cuStreamEndCapture", "cuGraphInstantiateWithFlags", "cuGraphLaunch",
              "cuGraphExecDestroy", "cuGraphDestroy")


class GraphError(DeployError):
    """A capture, instantiation or launch the driver refused (the runner falls back)."""


def open_driver() -> Any:
    """libcuda with the graph functions' result types set; GraphError if it lacks them."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        raise GraphError(f"cannot load libcuda.so.1 for CUDA graphs ({e})") from None
    for name in _FUNCTIONS:
        try:
            getattr(lib, name).restype = ctypes.c_int
        except AttributeError:
            raise GraphError(f"the CUDA driver has no {name} (CUDA graphs need a driver for CUDA 11.4 or "
                             "newer)") from None
    return lib


def open_runtime(maps: str | Path = "/proc/self/maps") -> Any | None:
    """The CUDA runtime library already loaded into this process (TensorRT's libcudart.so.*),
    with `cudaGetLastError` returning an int; None when none is mapped (a runtime linked
    statically into TensorRT keeps its error state where no caller can reach it)."""
    try:
        lines = Path(maps).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if Path(path).name.startswith("libcudart.so"):
            try:
                lib = ctypes.CDLL(path)  # already mapped: the loader hands back that very library
                lib.cudaGetLastError.restype = ctypes.c_int
            except (OSError, AttributeError):
                return None
            return lib
    return None


def _error_name(lib: Any, code: int) -> str:
    name = ctypes.c_char_p()
    get = getattr(lib, "cuGetErrorName", None)
    if get is not None and get(code, ctypes.byref(name)) == 0 and name.value:
        return f"{name.value.decode()} ({code})"
    return f"CUresult {code}"


@dataclass(frozen=True, eq=False)
class Graph:
    """One captured and instantiated graph: the driver's CUgraph and CUgraphExec handles."""

    graph: ctypes.c_void_p
    exec: ctypes.c_void_p


class Graphs:
    """Captures, launches and destroys graphs on one stream, with one driver library and (to
    clear a failed capture's error) the CUDA runtime TensorRT uses, when it can be reached."""

    def __init__(self, lib: Any, stream_handle: int, runtime: Any | None = None):
        self.lib = lib
        self.runtime = runtime
        self.stream = ctypes.c_void_p(stream_handle)
        self.live: list[Graph] = []

    def _check(self, code: int, what: str) -> None:
        if code != 0:
            raise GraphError(f"{what} failed: {_error_name(self.lib, code)}")

    def capture(self, enqueue: Callable[[], bool]) -> Graph:
        """Capture what `enqueue()` puts on the stream (it must return True, as
        `execute_async_v3` does on success) and instantiate it; nothing runs yet."""
        self._check(self.lib.cuStreamBeginCapture_v2(self.stream, CAPTURE_THREAD_LOCAL), "cuStreamBeginCapture_v2")
        graph = ctypes.c_void_p()
        ok = False
        try:
            ok = enqueue()
        finally:
            # End the capture whatever happened, or the stream stays unusable; a failed one leaves
            # no graph to keep and the runtime's last error to clear.
            ended = self.lib.cuStreamEndCapture(self.stream, ctypes.byref(graph))
            if not ok or ended != 0:
                self._destroy_graph(graph)
                self._clear_runtime_error()
        if not ok:
            raise GraphError("execute_async_v3 failed during stream capture (TensorRT cannot capture this "
                             "engine; see its log)")
        self._check(ended, "cuStreamEndCapture")
        exe = ctypes.c_void_p()
        code = self.lib.cuGraphInstantiateWithFlags(ctypes.byref(exe), graph, ctypes.c_ulonglong(0))
        if code != 0:
            self._destroy_graph(graph)
            self._check(code, "cuGraphInstantiateWithFlags")
        captured = Graph(graph, exe)
        self.live.append(captured)
        return captured

    def _clear_runtime_error(self) -> None:
        if self.runtime is not None:
            self.runtime.cudaGetLastError()  # returns and resets the last error, as trtexec does

    def launch(self, graph: Graph) -> None:
        self._check(self.lib.cuGraphLaunch(graph.exec, self.stream), "cuGraphLaunch")

    def _destroy_graph(self, graph: ctypes.c_void_p) -> None:
        if graph.value:
            self.lib.cuGraphDestroy(graph)

    def destroy(self, graph: Graph) -> None:
        """Release one graph (its context must be current)."""
        self.lib.cuGraphExecDestroy(graph.exec)
        self.lib.cuGraphDestroy(graph.graph)
        self.live.remove(graph)

    def destroy_all(self) -> None:
        for graph in list(self.live):
            self.destroy(graph)
