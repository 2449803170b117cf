"""`TrtRunner`: a serialized engine behind the common runner interface, run with pycuda.

- Before TensorRT sees the plan, the sidecar is checked against this TensorRT and GPU and
  the plan's sha256 against the sidecar (TensorRT itself would answer `None` and a log line).
- CUDA: the device's primary context (shared with TensorRT's CUDA runtime), retained once
  per process (see `cuda.retain_primary`) and pushed/popped around every call, so the
  runner works from any thread and leaves each thread's context stack as it found it.
- Buffers: page-locked host and device buffers sized once for the profile's largest
  shapes, bound once with `set_tensor_address`; per call `set_input_shape`, async H2D,
  `execute_async_v3` on one stream, async D2H, and numpy copies the caller owns.
- Timing with CUDA events: GPU compute (around `execute_async_v3`) and host latency
  (H2D + compute + D2H), in `last_timing` and `timings()`.
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

from ..errors import EngineError, InputError
from ..runners.base import Runner, TensorSpec
from .cuda import gpu_info, import_cuda, pushed, retain_primary
from .dla import check_engine_dla
from .logger import make_logger
from .sidecar import IOTensor, Sidecar, check_compatible, load_plan, read_sidecar
from .versions import import_tensorrt

log = logging.getLogger("trtdeploy.trt")


@dataclass(frozen=True)
class Timing:
    """One call. `gpu_ms`: execute_async_v3 on the stream; `host_ms`: H2D + compute + D2H."""

    batch: int
    gpu_ms: float
    host_ms: float


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


def summarize(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "min": float(a.min()), "max": float(a.max())}


class TrtRunner(Runner):
    """Runs `engines/NAME.PRECISION.plan`. Use as a context manager (or call close())."""

    def __init__(self, engine_path: str | Path, sidecar: Sidecar | str | Path | None = None,
                 name: str | None = None, device: int = 0):
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
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.activate()
        with self._lock, pushed(self._cuda, self._ctx):
            cuda = self._cuda
            ev_start, ev_compute_from, ev_compute_to, ev_end = self._events
            for t in self._inputs:
                if not self._context.set_input_shape(t.name, feed[t.name].shape):
                    raise InputError(f"{self.name}: TensorRT refused shape {feed[t.name].shape} for {t.name!r}")
            ev_start.record(self._stream)
            for t in self._inputs:
                array = feed[t.name]
                host = self._host[t.name][: array.size]
                np.copyto(host, array.reshape(-1))
                cuda.memcpy_htod_async(self._device_buffers[t.name], host, self._stream)
            ev_compute_from.record(self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise EngineError(f"{self.name}: execute_async_v3 failed; see the TensorRT log")
            ev_compute_to.record(self._stream)
            shapes = {}
            for t in self._outputs:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(t.name))
                shapes[t.name] = shape
                cuda.memcpy_dtoh_async(self._host[t.name][: volume(shape)], self._device_buffers[t.name],
                                       self._stream)
            ev_end.record(self._stream)
            self._stream.synchronize()
            outputs = {name: self._host[name][: volume(shape)].reshape(shape).copy()
                       for name, shape in shapes.items()}
            timing = Timing(batch=int(next(iter(feed.values())).shape[0]) if feed else 0,
                            gpu_ms=ev_compute_from.time_till(ev_compute_to), host_ms=ev_start.time_till(ev_end))
        self.last_timing = timing
        self._timings.append(timing)
        return outputs

    def timings(self) -> dict[str, Any]:
        """Summary (mean, median, p90, min, max in ms) of every call since the last reset."""
        if not self._timings:
            return {"calls": 0}
        return {"calls": len(self._timings),
                "gpu_ms": summarize([t.gpu_ms for t in self._timings]),
                "host_ms": summarize([t.host_ms for t in self._timings])}

    def reset_timings(self) -> None:
        self._timings.clear()
        self.last_timing = None
