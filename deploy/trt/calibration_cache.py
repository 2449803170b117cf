"""TensorRT's (<= 10) INT8 calibration cache: read and write it without TensorRT.

Text, one header line then one line per tensor::

    TRT-100300-EntropyCalibration2
    input: 3c010a14
    resnet_v2_50/conv1/Conv2D:0: 3d9a1c8f

The version is NV_TENSORRT_VERSION: major*10000+minor*100+patch from 10.x on
(10.3.0 -> 100300), major*1000+minor*100+patch before (8.6.1 -> 8601). Each value is the
big-endian IEEE-754 float32 of scale = amax / 127. Tensor names may contain ':' and '/',
so a line splits on its last ': '.

Calibration writes the cache (`calibration.pipeline`), the device reads and serves it
(`deploy.trt.calibrator`); it lives here, beside the TensorRT version parsing it uses, so the
device never imports calibration. Standard library only.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass

from ..errors import CalibrationError, UsageError
from ..fsutil import atomic_write_bytes
from ..int8 import CALIBRATION_METHODS, INT8_MAX
from .versions import parse_release

# Header words, one per TensorRT calibrator class; TensorRT refuses a cache under another class's.
ENTROPY_2 = "EntropyCalibration2"  # IInt8EntropyCalibrator2
MIN_MAX = "MinMaxCalibration"  # IInt8MinMaxCalibrator
ALGORITHMS = (ENTROPY_2, "EntropyCalibration", MIN_MAX, "LegacyCalibration")
# The header version `trtdeploy calibrate` writes (JetPack 6's TensorRT). `trtdeploy build`
# does not depend on it: it serves the cache under the running TensorRT's version.
DEFAULT_VERSION = "10.3.0"
_FIX = "re-run `trtdeploy calibrate --recalibrate`"
_HEADER = re.compile(r"TRT-(\d+)-([A-Za-z0-9]+)")
_HEX = re.compile(r"[0-9a-fA-F]{8}")


def trt_version_code(version: str) -> int:
    """"10.3.0" -> 100300, "10.16.1" -> 101601, "8.6.1" -> 8601 (NV_TENSORRT_VERSION).

    Extra components ("10.3.0.26", "8.6.1.post1") are ignored.
    """
    release = _release(version)
    major, minor, patch = (release + (0, 0, 0))[:3]
    if major >= 10:
        return major * 10000 + minor * 100 + patch
    return major * 1000 + minor * 100 + patch


def _release(version: str) -> tuple[int, ...]:
    try:
        return parse_release(version).release
    except ValueError:
        raise UsageError(f"cannot parse TensorRT version {version!r}; expected MAJOR.MINOR.PATCH") from None


def calibration_algorithm_for(method: str) -> str:
    """The cache header's algorithm for one of our calibration methods.

    TensorRT reads only the scales from a cache, but it rejects a cache whose header names
    another algorithm than the calibrator class serving it ("Calibration table does not
    match calibrator algorithm type"). Entropy results are served by an
    IInt8EntropyCalibrator2; max, percentile and mse ranges are plain ranges that a
    MinMax calibrator serves unchanged, so they go out under MinMaxCalibration.
    """
    if method not in CALIBRATION_METHODS:
        raise UsageError(f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
    return ENTROPY_2 if method == "entropy" else MIN_MAX


@dataclass(frozen=True)
class TrtCache:
    """A parsed cache: version code, algorithm, and scale (amax/127) per tensor name."""

    version: int
    algorithm: str
    scales: dict[str, float]

    def amax(self, name: str) -> float:
        try:
            return self.scales[name] * INT8_MAX
        except KeyError:
            raise CalibrationError(f"calibration cache has no scale for tensor {name!r}; {_FIX}") from None


def _scale_hex(scale: float) -> str:
    return struct.pack("!f", scale).hex()


def format_cache(amax: dict[str, float], version: str = DEFAULT_VERSION,
                 algorithm: str = ENTROPY_2) -> bytes:
    """The cache text for `amax` (per tensor), in the given order, with a trailing newline."""
    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown calibration algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
    lines = [f"TRT-{trt_version_code(version)}-{algorithm}"]
    for name, value in amax.items():
        value = float(value)
        if "\n" in name or not name:
            raise CalibrationError(f"tensor name {name!r} cannot go into a calibration cache")
        # A non-positive or non-finite scale would make TensorRT divide by zero or NaN.
        if not (0.0 < value < float("inf")):
            raise CalibrationError(f"tensor {name!r}: amax {value!r} is not positive and finite; {_FIX}")
        lines.append(f"{name}: {_scale_hex(value / INT8_MAX)}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_cache(path: str | os.PathLike, amax: dict[str, float], version: str = DEFAULT_VERSION,
                algorithm: str = ENTROPY_2) -> None:
    """Write the cache atomically (never half-written under its final name)."""
    atomic_write_bytes(path, format_cache(amax, version, algorithm))


def parse_cache(data: bytes, source: str = "<calibration cache>") -> TrtCache:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CalibrationError(f"{source}: not a text calibration cache (not UTF-8); {_FIX}") from None
    lines = text.splitlines()
    header = lines[0].strip() if lines else ""
    m = _HEADER.fullmatch(header)
    if not m or m.group(2) not in ALGORITHMS:
        raise CalibrationError(
            f"{source}:1: bad header {header[:60]!r}, expected TRT-<version>-<{'|'.join(ALGORITHMS)}>; {_FIX}"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(": ")
        value = value.strip()
        if not sep or not name or not _HEX.fullmatch(value):
            raise CalibrationError(
                f"{source}:{number}: expected '<tensor name>: <8 hex digits>', got {line[:80]!r}; {_FIX}")
        if name in scales:
            raise CalibrationError(f"{source}:{number}: tensor {name!r} appears twice; {_FIX}")
        scales[name] = struct.unpack("!f", bytes.fromhex(value))[0]
    return TrtCache(int(m.group(1)), m.group(2), scales)


def read_cache(path: str | os.PathLike) -> TrtCache:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CalibrationError(f"{path}: cannot read calibration cache ({e.strerror or e}); {_FIX}") from None
    return parse_cache(data, source=str(path))
