"""pycuda, used the way TensorRT expects: the device's primary context, shared with the
CUDA runtime inside TensorRT, pushed around each use so any thread may call in, and popped
after it, so every thread's context stack is left as it was found.

`import pycuda.autoinit` is avoided on purpose: it creates a non-primary context bound to
the importing thread ("invalid device context" from other threads, "context stack was
not empty upon module cleanup" at exit).
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterator

from ..errors import ToolMissingError


def import_cuda() -> ModuleType:
    """`pycuda.driver`, initialised, or ToolMissingError naming what is missing."""
    try:
        import pycuda.driver as cuda
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and e.name in ("pycuda", "pycuda.driver"):
            raise ToolMissingError("pycuda is not installed: `pip install pycuda` (needs the CUDA toolkit)") from None
        # pycuda present, libcuda.so.1 (the driver) not: the common case in containers without --gpus.
        raise ToolMissingError(
            f"no CUDA driver: pycuda cannot load it ({e}); install the NVIDIA driver, or run the "
            "container with --gpus all / --runtime nvidia"
        ) from None
    try:
        cuda.init()
    except cuda.Error as e:
        raise ToolMissingError(f"no CUDA device usable: cuInit failed ({e}); check `nvidia-smi`") from None
    return cuda


def sm_tag(capability: tuple[int, int]) -> str:
    """(8, 7) -> "sm_87", the form the sidecar records."""
    major, minor = capability
    return f"sm_{major}{minor}"


def parse_sm(tag: str) -> int:
    """"sm_87" -> 87, so capabilities compare as numbers."""
    if not tag.startswith("sm_") or not tag[3:].isdigit():
        raise ValueError(f"not a compute capability tag: {tag!r} (expected e.g. 'sm_87')")
    return int(tag[3:])


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "sm_87"


def gpu_info(cuda: ModuleType, device: int = 0) -> GpuInfo:
    if cuda.Device.count() <= device:
        raise ToolMissingError(f"no CUDA device {device}: pycuda sees {cuda.Device.count()}; check `nvidia-smi`")
    dev = cuda.Device(device)
    return GpuInfo(dev.name(), sm_tag(dev.compute_capability()))


# (id of the pycuda module, device) -> (that module, its primary context). The module is kept
# so its id cannot be reused by another module object (the tests' stand-ins) while cached.
_PRIMARY: dict[tuple[int, int], tuple[ModuleType, Any]] = {}
_PRIMARY_LOCK = threading.Lock()


def retain_primary(cuda: ModuleType, device: int = 0) -> Any:
    """The primary context of `device`: retained once per process, never released.

    pycuda 2026.1 cannot release a primary context without leaving it on the calling
    thread's context stack: `Context.detach()` of a context that is not pycuda's current one
    pushes it (cuCtxPushCurrent), then calls cuDevicePrimaryCtxRelease, which never pops; of
    the current one, it releases and drops it from pycuda's stack but not from the driver's;
    and from any thread but the one that retained it, it releases nothing (src/cpp/cuda.hpp,
    `context::detach`, `primary_context::detach_internal`). Keeping the one reference costs
    nothing: the CUDA runtime inside TensorRT keeps the primary context active until the
    process exits (or cudaDeviceReset) whatever we release.
    """
    key = (id(cuda), device)
    with _PRIMARY_LOCK:
        if key not in _PRIMARY:
            dev = cuda.Device(device)
            _PRIMARY[key] = (cuda, dev.retain_primary_context())
        return _PRIMARY[key][1]


@contextlib.contextmanager
def pushed(cuda: ModuleType, ctx) -> Iterator[None]:
    """Make `ctx` current on this thread for the block; the stack is as before afterwards."""
    ctx.push()
    try:
        yield
    finally:
        cuda.Context.pop()


@contextlib.contextmanager
def primary_context(cuda: ModuleType, device: int = 0) -> Iterator[object]:
    """The primary context of `device`, current on this thread for the block."""
    ctx = retain_primary(cuda, device)
    with pushed(cuda, ctx):
        yield ctx
