"""The builder's timing cache (`trtdeploy build --timing-cache FILE`): loaded when it fits this
TensorRT and GPU, replaced by the build's own only after the build succeeds."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_bytes

log = logging.getLogger("trtdeploy.trt")


def load_timing_cache(builder_config: Any, path: Path | None) -> tuple[Any, dict[str, Any]]:
    """Start from the timing cache at `path` when it is one and fits this TensorRT and GPU,
    else from a fresh one (said so), which replaces the file only after a successful build.

    Stats are what the Python API can honestly tell: sizes before and after, and whether
    the old cache was accepted (TensorRT does not expose hit counts)."""
    if path is None:
        return None, {}
    previous = path.read_bytes() if path.is_file() else b""
    # create_timing_cache answers None for bytes that are no timing cache at all.
    timing_cache = builder_config.create_timing_cache(previous) if previous else None
    loaded = timing_cache is not None and bool(builder_config.set_timing_cache(timing_cache, ignore_mismatch=False))
    if previous and not loaded:
        why = ("made by another TensorRT or GPU" if timing_cache is not None
               else "not a TensorRT timing cache (corrupt, truncated or another file)")
        log.warning("%s: %s; starting a fresh one, written over it once the build succeeds", path, why)
    if not loaded:
        timing_cache = builder_config.create_timing_cache(b"")
        builder_config.set_timing_cache(timing_cache, ignore_mismatch=False)
    return timing_cache, {"path": str(path), "bytes_before": len(previous), "loaded": loaded}


def save_timing_cache(builder_config: Any, path: Path | None, stats: dict[str, Any]) -> None:
    if path is None:
        return
    timing_cache = builder_config.get_timing_cache()
    data = bytes(memoryview(timing_cache.serialize()))
    atomic_write_bytes(path, data)
    stats["bytes_after"] = len(data)
