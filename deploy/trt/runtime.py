"""`TrtRunner`: a serialized engine behind the common runner interface, run with pycuda.

- Before TensorRT sees the plan, the sidecar is checked against this TensorRT and GPU and
  the plan's sha256 against the sidecar (TensorRT itself would answer `None` and a log line).
- CUDA: the device's primary context (shared with TensorRT's CUDA runtime), retained once
  per process (see `cuda.retain_primary`) and pushed/popped around every call, so the
  runner works from any thread and leaves each thread's context stack as it found it.
- Buffers: page-locked host and device buffers sized once for the profile's largest
  shapes, bound once with `set_tensor_address`; per call async H2D, `execute_async_v3` on
  one stream, async D2H, and numpy copies the caller owns.
- Per input shape, once (`_Binding`): the feed's checks against the profile,
  `set_input_shape`, the output shapes, shaped views of the pinned buffers. A call with the
  shapes of an earlier one checks only dtypes and contiguity; `set_input_shape` runs only
  when the shapes differ from the previous call's.
- `timing=True` (the default): CUDA events around H2D, `execute_async_v3` and D2H, in
  `last_timing` and `timings()`; `timing=False` records none (four event records and four
  elapsed-time queries less per call).
- `cuda_graph=True`: each input shape gets an execution context of its own (sharing one block
  of activation memory), whose shapes never change: it runs plain once, then `execute_async_v3`
  is captured once and replayed (deploy/trt/graphs.py, where TensorRT's rules are); a
  remainder batch thus never replays a graph over a context another shape changed. If the
  capture fails the runner clears the runtime's error, says why and runs without.
- `profiler`: a `trt.IProfiler` attached to the context; TensorRT reports each call's
  layer times to it after the call (deploy/trt/profiler.py).
"""
from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping, Sequence

import numpy as np

from ..runners.timing import summarize_ms
from ..errors import EngineError, InputError, UsageError
from ..runners.base import Runner, TensorSpec
from .cuda import gpu_info, import_cuda, pushed, retain_primary
from .dla import check_engine_dla
from .graphs import Graph, GraphError, Graphs, open_driver, open_runtime
from .logger import make_logger
from .sidecar import IOTensor, Sidecar, check_compatible, load_plan, read_sidecar
from .versions import import_tensorrt

log = logging.getLogger("trtdeploy.trt")

# Distinct input shapes kept bound (with their graphs); the oldest is dropped beyond this.
MAX_BINDINGS = 64


@dataclass(frozen=True)
class Timing:
    """One call, from CUDA events on the stream. `gpu_ms`: execute_async_v3 (or its graph);
    `host_ms`: H2D + compute + D2H; `h2d_ms`, `d2h_ms`: the copies."""

    batch: int
    gpu_ms: float
    host_ms: float
    h2d_ms: float
    d2h_ms: float


class _Binding:
    """One set of input shapes: shaped views of the pinned buffers and, with CUDA graphs, the
    execution context that holds these shapes only, and once captured, its graph."""

    __slots__ = ("shapes", "batch", "inputs", "outputs", "context", "warm", "graph")

    def __init__(self, shapes: dict[str, tuple[int, ...]], batch: int,
                 inputs: tuple[tuple[str, np.ndarray, Any], ...], outputs: tuple[tuple[str, np.ndarray, Any], ...],
                 context: Any = None):
        self.shapes = shapes
        self.batch = batch
        self.inputs = inputs  # (name, pinned view in the input's shape, device allocation)
        self.outputs = outputs  # (name, pinned view in the output's shape, device allocation)
        self.context = context  # None: runs on the runner's main context
        self.warm = False  # its context ran once since its shapes were set (TensorRT's deferred work)
        self.graph: Graph | None = None


def volume(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def describe_engine(trt: ModuleType, engine: Any) -> tuple[IOTensor, ...]:
    """Name, mode, numpy dtype, shape and (inputs) profile-0 shapes of every I/O tensor."""
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        try:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        except TypeError:
            raise EngineError(f"engine tensor {name!r} has a type numpy cannot hold "
                              f"({engine.get_tensor_dtype(name)}); keep FP32/FP16 at the model's I/O") from None
        profile = (tuple(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0))
                   if is_input else None)
        tensors.append(IOTensor(name, "input" if is_input else "output", dtype,
                                tuple(int(d) for d in engine.get_tensor_shape(name)), profile))
    return tuple(tensors)


def check_engine_matches(engine_io: Sequence[IOTensor], sidecar: Sidecar, plan: Path) -> None:
    """The deserialized engine must have the I/O its sidecar promised (names, modes, dtypes)."""
    got = sorted((t.name, t.mode, t.dtype) for t in engine_io)
    want = sorted((t.name, t.mode, t.dtype) for t in sidecar.io)
    if got != want:
        raise EngineError(f"{plan}: engine I/O {got} differs from its sidecar's {want}; rebuild the engine")


def check_profile(inputs: Sequence[IOTensor], feed: Mapping[str, np.ndarray], who: str) -> None:
    """Refuse shapes outside the engine's optimization profile (min <= dim <= max)."""
    for t in inputs:
        if t.profile is None or t.name not in feed:
            continue
        lo, _opt, hi = t.profile
        shape = feed[t.name].shape
        if len(shape) != len(lo):
            continue  # the base class reports rank mismatches
        for axis, (d, a, b) in enumerate(zip(shape, lo, hi)):
            if not a <= d <= b:
                what = "batch" if axis == 0 else f"dimension {axis}"
                raise InputError(
                    f"{who}: input {t.name!r} {what} {d} is outside the engine's profile [{a}, {b}]; "
                    f"split the batch, or rebuild with `trtdeploy build BUNDLE --batch MIN OPT MAX` covering {d}"
                )


class TrtRunner(Runner):
    """Runs `engines/NAME.PRECISION.plan`. Use as a context manager (or call close()).

    `timing`: record CUDA events per call (`last_timing`, `timings()`); `cuda_graph`: replay
    `execute_async_v3` as a CUDA graph per input shape where the engine allows it;
    `profiler`: a `trt.IProfiler` that receives each call's layer times.
    """

    def __init__(self, engine_path: str | Path, sidecar: Sidecar | str | Path | None = None,
                 name: str | None = None, device: int = 0, timing: bool = True, cuda_graph: bool = False,
                 profiler: Any = None):
        if cuda_graph and profiler is not None:
            raise UsageError("a profiled engine cannot be replayed as a CUDA graph (TensorRT reports layer "
                             "times per enqueue); drop --cuda-graph to profile")
        self.engine_path = Path(engine_path)
        if sidecar is None:
            sidecar = read_sidecar(self.engine_path)
        elif not isinstance(sidecar, Sidecar):
            sidecar = Sidecar.from_json(json.loads(Path(sidecar).read_text()), source=str(sidecar))
        self.sidecar: Sidecar = sidecar
        self.name = name or f"tensorrt-{sidecar.precision}"
        self.device = device
        self.last_timing: Timing | None = None
        self._timings: list[Timing] = []
        self._lock = threading.RLock()  # close() runs inside a failed activate()
        self._cuda: ModuleType | None = None
        self._ctx: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._events: list[Any] = []
        self._host: dict[str, np.ndarray] = {}
        self._device_buffers: dict[str, Any] = {}
        self._inputs: tuple[IOTensor, ...] = sidecar.inputs
        self._outputs: tuple[IOTensor, ...] = sidecar.outputs
        self.timing = timing
        self.cuda_graph = cuda_graph
        # Why graphs are not replayed although asked for (None while they are, or not asked).
        self.graph_fallback: str | None = None
        self._profiler = profiler
        self._graphs: Graphs | None = None
        self._bindings: dict[tuple[tuple[int, ...], ...], _Binding] = {}
        self._bound: _Binding | None = None  # whose shapes the main context holds
        self._trt: ModuleType | None = None
        self._graph_memory: Any = None  # activation memory the graph bindings' contexts share
        self._dtypes: tuple[tuple[str, np.dtype], ...] = ()

    # --- interface ------------------------------------------------------------
    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(t.name, tuple(None if d < 0 else d for d in t.shape), np.dtype(t.dtype))
                for t in self._inputs]

    def output_names(self) -> list[str]:
        return [t.name for t in self._outputs]

    @property
    def max_batch(self) -> int:  # type: ignore[override]
        """The optimization profile's largest batch: `infer` refuses more, `infer_any_batch` splits."""
        highs = [t.profile[2][0] for t in self._inputs if t.profile is not None]
        return min(highs) if highs else self.sidecar.batch[2]

    def validate(self, feed: Mapping[str, np.ndarray]) -> None:
        super().validate(feed)
        check_profile(self._inputs, feed, self.name)

    # --- lifecycle ----------------------------------------------------------------
    def activate(self) -> None:
        with self._lock:
            if self._ctx is None:
                self._activate()

    def _activate(self) -> None:
        cuda = import_cuda()
        trt = import_tensorrt()
        gpu = gpu_info(cuda, self.device)
        check_compatible(self.sidecar, trt.__version__, gpu.compute_capability, self.engine_path)
        data = load_plan(self.engine_path, self.sidecar)
        self._cuda = cuda
        self._ctx = retain_primary(cuda, self.device)
        try:
            with pushed(cuda, self._ctx):
                self._load(trt, cuda, data)
        except BaseException:
            self.close()
            raise
        log.debug("%s: loaded %s on %s", self.name, self.engine_path, gpu.name)

    def _load(self, trt: ModuleType, cuda: ModuleType, data: bytes) -> None:
        self._trt = trt
        logger = make_logger(trt)
        self._runtime = trt.Runtime(logger)
        if self.sidecar.version_compatible:
            self._runtime.engine_host_code_allowed = True  # version-compatible plans embed a lean runtime
        if self.sidecar.dla_core is not None:  # a DLA engine runs on the core it was built for
            check_engine_dla(self.sidecar, int(self._runtime.num_DLA_cores), self.engine_path)
            self._runtime.DLA_core = self.sidecar.dla_core
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineError(f"{self.engine_path}: TensorRT cannot load it ({logger.last_errors()})")
        io = describe_engine(trt, self._engine)
        check_engine_matches(io, self.sidecar, self.engine_path)
        self._inputs = tuple(t for t in io if t.mode == "input")
        self._outputs = tuple(t for t in io if t.mode == "output")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"{self.engine_path}: no execution context (GPU memory exhausted?); "
                              f"{logger.last_errors()}")
        for name, shape in self._max_shapes().items():
            dtype = np.dtype(next(t.dtype for t in io if t.name == name))
            self._host[name] = cuda.pagelocked_empty(volume(shape), dtype)
            self._device_buffers[name] = cuda.mem_alloc(max(self._host[name].nbytes, 1))
            self._context.set_tensor_address(name, int(self._device_buffers[name]))
        self._stream = cuda.Stream()
        self._events = [cuda.Event() for _ in range(4)]
        self._dtypes = tuple((t.name, np.dtype(t.dtype)) for t in self._inputs)
        self._bound = None  # _max_shapes left the profile's max in the context
        if self._profiler is not None:
            self._context.profiler = self._profiler
            self._context.enqueue_emits_profile = False  # reported after synchronize, by report_to_profiler
        if self.cuda_graph:
            try:
                self._graphs = Graphs(open_driver(), self._stream.handle, open_runtime())
            except GraphError as e:
                self._no_graphs(str(e))

    def _max_shapes(self) -> dict[str, tuple[int, ...]]:
        """Input shapes at the profile's max, and the output shapes they imply."""
        shapes: dict[str, tuple[int, ...]] = {}
        for t in self._inputs:
            _lo, _opt, hi = t.profile  # type: ignore[misc]  # describe_engine gives inputs a profile
            shapes[t.name] = hi
            self._context.set_input_shape(t.name, hi)
        for t in self._outputs:
            shape = tuple(int(d) for d in self._context.get_tensor_shape(t.name))
            if any(d < 0 for d in shape):
                raise EngineError(f"{self.engine_path}: output {t.name!r} has a data-dependent shape {shape}; "
                                  "this runner needs output shapes that follow from the input shapes")
            shapes[t.name] = shape
        return shapes

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._release()

    def _release(self) -> None:
        try:
            with pushed(self._cuda, self._ctx):
                self._drop_bindings()  # graphs and their contexts hold the buffers' addresses: first
                if self._graph_memory is not None:
                    self._graph_memory.free()
                    self._graph_memory = None
                for allocation in self._device_buffers.values():
                    allocation.free()
                for host in self._host.values():
                    pinned = host.base  # the page-locked allocation behind the array
                    pinned.free()
                self._device_buffers.clear()
                self._host.clear()
                # Destroy TensorRT objects and CUDA handles while their context is current.
                self._events = []
                self._stream = None
                self._context = None
                self._engine = None
                self._runtime = None
        finally:
            self._ctx = None  # never detached: see cuda.retain_primary

    # --- running -----------------------------------------------------------------
    def check_feed(self, feed: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """A feed of shapes seen before passes on its dtypes and layout alone (its binding is
        reused); a new one is validated in full and bound. `_infer` runs the binding kept here."""
        if self._ctx is None:
            self.activate()
        binding = self._known(feed)
        if binding is None:
            self.validate(feed)
            binding = self._bind(feed)
        self._checked = binding
        return feed

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(self._checked, feed)

    def _known(self, feed: Mapping[str, np.ndarray]) -> _Binding | None:
        """The binding of an earlier call with these shapes, if the feed passes what can
        still differ (dtype, contiguity); None sends the feed through the full checks."""
        if len(feed) != len(self._dtypes):
            return None
        try:
            binding = self._bindings.get(tuple([feed[name].shape for name, _ in self._dtypes]))
        except (KeyError, AttributeError, TypeError):
            return None
        if binding is None:
            return None
        for name, dtype in self._dtypes:
            array = feed[name]
            if not isinstance(array, np.ndarray) or array.dtype != dtype or not array.flags.c_contiguous:
                return None
        return binding

    def _bind(self, feed: Mapping[str, np.ndarray]) -> _Binding:
        """Set the (validated) feed's shapes in a context (its own one when graphs are replayed,
        else the main one) and keep what follows from them."""
        shapes = {t.name: tuple(feed[t.name].shape) for t in self._inputs}
        with self._lock, pushed(self._cuda, self._ctx):
            own = self._graph_context() if self._graphs is not None else None
            context = self._context if own is None else own
            if own is None:
                self._bound = None  # the main context may hold some of the new shapes if one is refused
            self._set_shapes(context, shapes)
            inputs, outputs = [], []
            for t in self._inputs:
                shape = shapes[t.name]
                inputs.append((t.name, self._host[t.name][: volume(shape)].reshape(shape),
                               self._device_buffers[t.name]))
            for t in self._outputs:
                shape = tuple(int(d) for d in context.get_tensor_shape(t.name))
                outputs.append((t.name, self._host[t.name][: volume(shape)].reshape(shape),
                                self._device_buffers[t.name]))
            first = shapes[self._inputs[0].name]
            binding = _Binding(shapes, int(first[0]) if first else 0, tuple(inputs), tuple(outputs), own)
            if own is None:
                self._bound = binding
            if len(self._bindings) >= MAX_BINDINGS:
                self._forget(next(iter(self._bindings)))
            self._bindings[tuple(shapes[name] for name, _ in self._dtypes)] = binding
        return binding

    def _graph_context(self) -> Any:
        """A new execution context for one input shape's graph: user-managed activation memory,
        one block shared by every such context (they run one at a time, under the lock, on one
        stream), and the runner's buffers bound; None (said why) when TensorRT cannot give one."""
        engine, trt = self._engine, self._trt
        try:
            size = int(engine.device_memory_size_v2)
            context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        except AttributeError as e:  # TensorRT 10.0 has neither
            self._no_graphs(f"this TensorRT cannot give each graph its own context ({e}); TensorRT 10.1 or newer can")
            return None
        if context is None:
            raise EngineError(f"{self.engine_path}: no execution context for a CUDA graph (GPU memory exhausted?)")
        if self._graph_memory is None:
            self._graph_memory = self._cuda.mem_alloc(max(size, 1))
        context.set_device_memory(int(self._graph_memory), size)
        for name, allocation in self._device_buffers.items():
            context.set_tensor_address(name, int(allocation))
        return context

    def _set_shapes(self, context: Any, shapes: Mapping[str, tuple[int, ...]]) -> None:
        for name, shape in shapes.items():
            if not context.set_input_shape(name, shape):
                raise InputError(f"{self.name}: TensorRT refused shape {shape} for {name!r}")

    def _forget(self, key: tuple[tuple[int, ...], ...]) -> None:
        binding = self._bindings.pop(key)
        if binding.graph is not None and self._graphs is not None:
            self._graphs.destroy(binding.graph)
        # A call holding this binding still may run it, without its graph, on the main context.
        binding.graph = None
        binding.context = None
        if self._bound is binding:
            self._bound = None

    def _drop_bindings(self) -> None:
        for key in list(self._bindings):
            self._forget(key)
        if self._graphs is not None:
            self._graphs.destroy_all()  # captured for a binding dropped while a call held it
        self._graphs = None

    def _run(self, binding: _Binding, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, stream = self._cuda, self._stream
        events = self._events if self.timing else None
        with self._lock:
            self._ctx.push()
            try:
                if binding.context is None and self._bound is not binding:  # another shape ran since
                    self._bound = None
                    self._set_shapes(self._context, binding.shapes)
                    self._bound = binding
                if events:
                    events[0].record(stream)
                for name, host, device in binding.inputs:
                    np.copyto(host, feed[name])
                    cuda.memcpy_htod_async(device, host, stream)
                if events:
                    events[1].record(stream)
                self._enqueue(binding)
                if events:
                    events[2].record(stream)
                for _name, host, device in binding.outputs:
                    cuda.memcpy_dtoh_async(host, device, stream)
                if events:
                    events[3].record(stream)
                stream.synchronize()
                if self._profiler is not None and not self._context.report_to_profiler():
                    raise EngineError(f"{self.name}: report_to_profiler failed; see the TensorRT log")
                outputs = {name: host.copy() for name, host, _device in binding.outputs}
                if events:
                    self._record_timing(binding.batch, events)
            finally:
                cuda.Context.pop()
        return outputs

    def _enqueue(self, binding: _Binding) -> None:
        """execute_async_v3 on the binding's context, or its graph: a graph binding's context
        runs plain once after its shapes are set (TensorRT's deferred work, as trtexec enqueues
        once before capturing), then is captured once and replayed."""
        context = self._context if binding.context is None else binding.context
        graphs = self._graphs
        if binding.context is not None and graphs is not None and binding.warm:
            try:
                if binding.graph is None:
                    binding.graph = graphs.capture(lambda: self._execute(context))
                graphs.launch(binding.graph)
                return
            except GraphError as e:
                self._no_graphs(f"{e}; shapes {binding.shapes}")
        if not self._execute(context):
            after = f" (after the CUDA-graph fallback: {self.graph_fallback})" if self.graph_fallback else ""
            raise EngineError(f"{self.name}: execute_async_v3 failed; see the TensorRT log{after}")
        binding.warm = True

    def _execute(self, context: Any) -> bool:
        return bool(context.execute_async_v3(self._stream.handle))

    def _no_graphs(self, why: str) -> None:
        log.warning("%s: running without CUDA graphs: %s", self.name, why)
        self.graph_fallback = why
        if self._graphs is not None:
            self._graphs.destroy_all()
        for binding in self._bindings.values():
            binding.graph = None
        self._graphs = None

    def _record_timing(self, batch: int, events: list[Any]) -> None:
        ev_start, ev_h2d, ev_compute, ev_end = events
        timing = Timing(batch, gpu_ms=ev_h2d.time_till(ev_compute), host_ms=ev_start.time_till(ev_end),
                        h2d_ms=ev_start.time_till(ev_h2d), d2h_ms=ev_compute.time_till(ev_end))
        self.last_timing = timing
        self._timings.append(timing)

    def timings(self) -> dict[str, Any]:
        """Summary (deploy.bench.summarize_ms) of every timed call of this runner."""
        if not self._timings:
            return {"calls": 0}
        return {"calls": len(self._timings),
                **{key: summarize_ms([getattr(t, key) for t in self._timings])
                   for key in ("gpu_ms", "host_ms", "h2d_ms", "d2h_ms")}}

