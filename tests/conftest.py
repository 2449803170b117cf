"""Shared fixtures. The `gpu` marker skips with the reason unless TensorRT and a CUDA
device are both usable here."""
from __future__ import annotations

import functools

import pytest


@functools.lru_cache(maxsize=None)
def gpu_unavailable_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # ImportError, or OSError from missing libnvinfer
        return f"TensorRT is not importable here ({type(e).__name__}: {e})"
    try:
        import pycuda.driver as cuda
        cuda.init()
        if cuda.Device.count() < 1:
            return "pycuda sees no CUDA device"
    except Exception as e:
        return f"no CUDA driver/device usable via pycuda ({type(e).__name__}: {e})"
    return None


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or gpu_unavailable_reason()
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"gpu test: {reason}"))
