"""Stand-ins for `pycuda.driver` and libcuda's graph functions with the same names, for CPU tests
of the bookkeeping around them. They model what the code relies on (per-thread context stack,
device memory addressed by integer pointers, stream capture recording work instead of running
it) and nothing more; names and signatures are checked against a real pycuda build in
test_bindings_api.py."""
from __future__ import annotations

import itertools
import threading
import types

import numpy as np


class FakeCudaError(Exception):
    pass


class FakeContextBase:
    """pycuda's `Context` for a retained primary context; `_fake` is the FakeCuda it lives in."""

    _fake: "FakeCuda"

    def __init__(self, device):
        self.handle = 0xC0000 + device  # the primary context's CUcontext
        self.device = device
        self.valid = True
        self.thread = threading.get_ident()

    def push(self):
        self._fake.prepare_context_switch()
        self._fake.driver_stack().append(self.handle)
        self._fake.stack().append(self)

    @classmethod
    def pop(cls):
        fake = cls._fake
        fake.prepare_context_switch()
        if not fake.stack():
            raise FakeCudaError("context::pop: cannot pop non-current context")
        fake.stack().pop()
        current = fake.current_context()
        if current is not None:
            fake.driver_stack().append(current.handle)

    @classmethod
    def get_current(cls):
        return cls._fake.current_context()

    def detach(self):
        fake = self._fake
        if not self.valid:
            raise FakeCudaError("context::detach: cannot detach from invalid context")
        fake.detached += 1
        active = fake.current_context() is self
        if active:
            fake.release_primary(self.device)
        elif self.thread == threading.get_ident():
            fake.driver_stack().append(self.handle)  # cuCtxPushCurrent; the release never pops it
            fake.release_primary(self.device)
        self.valid = False
        if active:
            new_active = fake.current_context(except_=self)
            if new_active is not None:
                fake.driver_stack().append(new_active.handle)


class FakeCuda(types.SimpleNamespace):
    """`pycuda.driver` 2026.1 over a stand-in driver: memory is a dict pointer -> bytearray.

    Two per-thread stacks, as in reality: the driver's context stack (`driver_stack()`,
    handles; what CUDA calls run in) and pycuda's own (`stack()`, Context objects), kept in
    step by pycuda the way src/cpp/cuda.hpp does it:
    - `ctx.push()` (context_push): if pycuda's stack is not empty, pop the driver's top
      (prepare_context_switch), then push on both;
    - `Context.pop()`: the same driver pop, pop pycuda's stack, push pycuda's new top (if
      any) back on the driver's;
    - `ctx.detach()` of a primary context: if it is pycuda's current context, release it
      (cuDevicePrimaryCtxRelease, which never pops), drop it from pycuda's stack and push
      pycuda's next context on the driver's; else, on the thread that retained it, push it on
      the driver's stack (cuCtxPushCurrent) and release it, never popping; from another
      thread, nothing (the reference leaks). It is invalid afterwards either way.
    A primary context whose last reference is released is reset: CUDA calls fail in it.
    `driver_version` (12060 for CUDA 12.6), each GPU's `total_memory` and `integrated` (a
    Jetson's GPU) are what `get_driver_version()`, `Device.total_memory()` and
    `Device.get_attribute(device_attribute.INTEGRATED)` answer.
    """

    def __init__(self, name="Fake GPU", capability=(8, 7), devices=1, driver_version=12080, total_memory=8 << 30,
                 integrated=False):
        super().__init__()
        self.driver_version = driver_version
        self.memory: dict[int, np.ndarray] = {}
        self.freed: list[int] = []
        self.host_freed = 0
        self.retained = 0
        self.detached = 0
        self.primary_refs: dict[int, int] = {}  # device -> the driver's reference count
        self.capturing: dict[int, list] = {}  # stream handle -> work recorded by a capture
        self.invalidated: set[int] = set()  # streams whose capture TensorRT's work invalidated
        self._next = itertools.count(0x1000, 0x1000)
        self._local = threading.local()
        fake = self

        class Device:
            def __init__(self, ordinal):
                self.ordinal = ordinal

            @staticmethod
            def count():
                return devices

            def name(self):
                return name

            def compute_capability(self):
                return capability

            def total_memory(self):
                return total_memory

            def get_attribute(self, attribute):
                return {"CLOCK_RATE": 1_300_000, "MEMORY_CLOCK_RATE": 3_200_000,  # kHz
                        "INTEGRATED": int(integrated)}[attribute]

            def retain_primary_context(self):
                fake.retained += 1
                fake.primary_refs[self.ordinal] = fake.primary_refs.get(self.ordinal, 0) + 1
                return Context(self.ordinal)

        class Context(FakeContextBase):
            _fake = fake

        class Stream:
            handle = 0xCAFE

            def synchronize(self):
                fake.require_context()

        class Event:
            _clock = itertools.count()

            def record(self, stream=None):
                fake.require_context()
                self.t = next(Event._clock)
                return self

            def time_till(self, other):
                return float(other.t - self.t)

        self.Device, self.Context, self.Stream, self.Event = Device, Context, Stream, Event
        self.Error = FakeCudaError
        self.device_attribute = types.SimpleNamespace(CLOCK_RATE="CLOCK_RATE", MEMORY_CLOCK_RATE="MEMORY_CLOCK_RATE",
                                                      INTEGRATED="INTEGRATED")

    def get_driver_version(self):
        return self.driver_version

    def stack(self) -> list:
        """pycuda's context stack on this thread."""
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def driver_stack(self) -> list:
        """The driver's context stack on this thread (CUcontext handles); its top is current."""
        if not hasattr(self._local, "driver"):
            self._local.driver = []
        return self._local.driver

    def current_context(self, except_=None):
        """pycuda's `context::current_context`: its stack's top, dropping invalid entries."""
        stack = self.stack()
        while stack:
            if stack[-1] is not except_ and stack[-1].valid:
                return stack[-1]
            stack.pop()
        return None

    def prepare_context_switch(self) -> None:
        if self.stack():
            if not self.driver_stack():
                raise FakeCudaError("cuCtxPopCurrent: no current context")
            self.driver_stack().pop()

    def release_primary(self, device: int) -> None:
        if self.primary_refs.get(device, 0) < 1:
            raise FakeCudaError("cuDevicePrimaryCtxRelease: not retained")
        self.primary_refs[device] -= 1

    @property
    def runtime_error(self) -> int:
        """The CUDA runtime's last error on this thread (cudaGetLastError returns and resets it)."""
        return getattr(self._local, "runtime_error", 0)

    @runtime_error.setter
    def runtime_error(self, code: int) -> None:
        self._local.runtime_error = code

    def invalidate_capture(self, stream_handle: int) -> None:
        """What an operation not permitted under capture does: the capture is invalidated and the
        runtime's last error is set to cudaErrorStreamCaptureInvalidated, until someone clears it
        (trtexec's endCaptureOnError, samples/common/sampleDevice.h, calls cudaGetLastError for it)."""
        self.invalidated.add(stream_handle)
        self.runtime_error = FakeLibcuda.INVALIDATED

    def require_context(self) -> None:
        driver = self.driver_stack()
        if not driver:
            raise FakeCudaError("invalid device context (no context current on this thread)")
        if self.primary_refs.get(driver[-1] - 0xC0000, 0) < 1:
            raise FakeCudaError("invalid device context (the current primary context was released)")

    def init(self):
        pass

    def mem_alloc(self, nbytes):
        self.require_context()
        fake = self
        ptr = next(self._next)
        self.memory[ptr] = np.zeros(nbytes, np.uint8)

        class DeviceAllocation:
            def __int__(self):
                return ptr

            def free(self):
                fake.freed.append(ptr)
                del fake.memory[ptr]

        return DeviceAllocation()

    def pagelocked_empty(self, shape, dtype):
        fake = self

        class PagelockedHostAllocation(bytearray):
            def free(self):
                fake.host_freed += 1

        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.ndarray(shape, dtype, buffer=PagelockedHostAllocation(n))

    def memcpy_htod(self, dest, src):
        self.require_context()
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        self.memory[int(dest)][: raw.size] = raw

    def memcpy_htod_async(self, dest, src, stream=None):
        self.memcpy_htod(dest, src)

    def memcpy_dtoh_async(self, dest, src, stream=None):
        self.require_context()
        raw = dest.view(np.uint8).reshape(-1)
        raw[:] = self.memory[int(src)][: raw.size]


# ---------------------------------------------------------------- libcuda (graphs)
def _value(arg):
    """The integer inside a ctypes argument (c_void_p, byref(...)) or a plain int."""
    arg = getattr(arg, "_obj", arg)
    return int(getattr(arg, "value", arg) or 0)


class FakeLibcuda:
    """libcuda's graph calls over a FakeCuda: a capture records what execute_async_v3
    enqueues on the stream, a launch runs it. `fail` maps a function name to the CUresult
    it returns instead of working."""

    INVALIDATED = 901  # CUDA_ERROR_STREAM_CAPTURE_INVALIDATED

    def __init__(self, cuda: FakeCuda, fail: dict[str, int] | None = None):
        self.cuda = cuda
        self.fail = dict(fail or {})
        self.graphs: dict[int, list] = {}
        self.execs: dict[int, list] = {}
        self.launches = 0
        self.calls: list[str] = []
        self._ids = itertools.count(0x100)

    def _enter(self, name):
        self.calls.append(name)
        self.cuda.require_context()
        return self.fail.get(name, 0)

    def cuStreamBeginCapture_v2(self, stream, mode):  # noqa: N802 - the driver's names
        code = self._enter("cuStreamBeginCapture_v2")
        if not code:
            self.cuda.capturing[_value(stream)] = []
        return code

    def cuStreamEndCapture(self, stream, graph_out):  # noqa: N802
        code = self._enter("cuStreamEndCapture")
        work = self.cuda.capturing.pop(_value(stream))
        if _value(stream) in self.cuda.invalidated:
            # "stream is in cudaErrorStreamCaptureInvalidated state ... the returning mGraph should be
            # nullptr" (trtexec's endCaptureOnError)
            self.cuda.invalidated.discard(_value(stream))
            return self.INVALIDATED
        if code:
            if code == self.INVALIDATED:  # what invalidated it left the runtime's error set too
                self.cuda.runtime_error = code
            return code
        graph = next(self._ids)
        self.graphs[graph] = work
        graph_out._obj.value = graph
        return 0

    def cuGraphInstantiateWithFlags(self, exec_out, graph, flags):  # noqa: N802
        code = self._enter("cuGraphInstantiateWithFlags")
        if code:
            return code
        exe = next(self._ids)
        self.execs[exe] = self.graphs[_value(graph)]
        exec_out._obj.value = exe
        return 0

    def cuGraphLaunch(self, exe, stream):  # noqa: N802
        code = self._enter("cuGraphLaunch")
        if code:
            return code
        for work in self.execs[_value(exe)]:
            work()
        self.launches += 1
        return 0

    def cuGraphExecDestroy(self, exe):  # noqa: N802
        self._enter("cuGraphExecDestroy")
        del self.execs[_value(exe)]
        return 0

    def cuGraphDestroy(self, graph):  # noqa: N802
        self._enter("cuGraphDestroy")
        del self.graphs[_value(graph)]
        return 0

    def cuGetErrorName(self, code, name_out):  # noqa: N802
        name_out._obj.value = {self.INVALIDATED: b"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"}.get(code, b"CUDA_ERROR_UNKNOWN")
        return 0


class FakeCudart:
    """libcudart's `cudaGetLastError` over a FakeCuda: returns this thread's last runtime error
    and resets it to cudaSuccess (0), as the CUDA runtime API documents."""

    def __init__(self, cuda: FakeCuda):
        self.cuda = cuda
        self.cleared: list[int] = []

    def cudaGetLastError(self):  # noqa: N802 - the runtime's name
        code, self.cuda.runtime_error = self.cuda.runtime_error, 0
        self.cleared.append(code)
        return code
