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
    # Modules with end-to-end (slow) tests first, each kept whole: on ./test.sh's two workers the
    # longest test (tf-slim's vgg_16 at 224, about 2 minutes) then starts early instead of
    # ending the run alone.
    heavy = {item.module.__name__ for item in items if "slow" in item.keywords and item.module is not None}
    items.sort(key=lambda item: item.module is None or item.module.__name__ not in heavy)
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or gpu_unavailable_reason()
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"gpu test: {reason}"))


@pytest.fixture(scope="session")
def _pristine_default_bundle(tmp_path_factory):
    """The default model exported once per test session (about 15 s); use `default_bundle_dir`."""
    pytest.importorskip("tensorflow")
    from deploy.cli import main

    out = tmp_path_factory.mktemp("pristine") / "bundle"
    assert main(["export", "--model", "default", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def default_bundle_dir(_pristine_default_bundle, tmp_path_factory):
    """A private copy of the exported default bundle per test module (modules write into it)."""
    import shutil

    return shutil.copytree(_pristine_default_bundle, tmp_path_factory.mktemp("bundle") / "bundle")
