"""TensorRT calibration cache: format, round trip, and errors that name the line."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from deploy.trt.calibration_cache import (
    TrtCache,
    calibration_algorithm_for,
    format_cache,
    parse_cache,
    read_cache,
    trt_version_code,
    write_cache,
)
from deploy.errors import CalibrationError, UsageError


@pytest.mark.parametrize("version, code", [
    ("10.3.0", 100300), ("10.16.1", 101601), ("10.13.3.9", 101303), ("8.6.1", 8601), ("8.5.3", 8503),
    ("7.2.3", 7203),
])
def test_version_codes(version, code):
    assert trt_version_code(version) == code


def test_version_code_without_packaging(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "packaging", None)
    monkeypatch.setitem(sys.modules, "packaging.version", None)
    assert trt_version_code("10.16.1") == 101601
    assert trt_version_code("8.6.1") == 8601


def test_bad_version_is_a_usage_error():
    with pytest.raises(UsageError, match="'ten'"):
        trt_version_code("ten")


def test_known_hex():
    text = format_cache({"input": 127.0, "relu:0": 0.5 * 127}).decode()
    assert text == "TRT-100300-EntropyCalibration2\ninput: 3f800000\nrelu:0: 3f000000\n"


def test_round_trip_is_float32_exact(tmp_path):
    rng = np.random.default_rng(0)
    amax = {f"resnet_v2_50/block{i}/unit_1/bottleneck_v2/preact/Relu:0": float(v)
            for i, v in enumerate(rng.lognormal(0, 2, 20))}
    amax["input"] = 2.0
    amax["a/b:c: weird/name:0"] = 3.0
    path = tmp_path / "calibration" / "trt.cache"
    write_cache(path, amax, version="8.6.1", algorithm="MinMaxCalibration")
    cache = read_cache(path)
    assert cache.version == 8601 and cache.algorithm == "MinMaxCalibration"
    assert list(cache.scales) == list(amax)
    for name, value in amax.items():
        assert cache.scales[name] == np.float32(np.float32(value / 127.0))
        assert cache.amax(name) == pytest.approx(value, rel=1e-7)
    assert [p.name for p in path.parent.iterdir()] == ["trt.cache"]  # no temp files left


def test_names_with_colons_and_slashes_split_on_the_last_separator():
    data = b"TRT-100300-EntropyCalibration2\nscope/x: y/Conv2D:0: 3f800000\n"
    cache = parse_cache(data)
    assert cache == TrtCache(100300, "EntropyCalibration2", {"scope/x: y/Conv2D:0": 1.0})


def test_value_bits_are_big_endian_float32():
    data = format_cache({"t": 127.0 * 0.0123})
    value = data.decode().splitlines()[1].rsplit(": ", 1)[1]
    assert bytes.fromhex(value) == struct.pack(">f", 0.0123)


@pytest.mark.parametrize("data, line", [
    (b"", 1),
    (b"TRT-100300-KLCalibration\nx: 3f800000\n", 1),
    (b"TRT-abc-EntropyCalibration2\n", 1),
    (b"TRT-100300-EntropyCalibration2\nx: 3f800000\ny 3f800000\n", 3),
    (b"TRT-100300-EntropyCalibration2\nx: 3f80000\n", 2),
    (b"TRT-100300-EntropyCalibration2\nx: zzzzzzzz\n", 2),
    (b"TRT-100300-EntropyCalibration2\n: 3f800000\n", 2),
    (b"TRT-100300-EntropyCalibration2\nx: 3f800000\nx: 3f800000\n", 3),
])
def test_malformed_caches_name_file_and_line(tmp_path, data, line):
    path = tmp_path / "trt.cache"
    path.write_bytes(data)
    with pytest.raises(CalibrationError) as err:
        read_cache(path)
    message = str(err.value)
    assert f"{path}:{line}:" in message and "--recalibrate" in message and "\n" not in message


def test_binary_and_missing_files_are_calibration_errors(tmp_path):
    with pytest.raises(CalibrationError, match="not a text"):
        parse_cache(b"\xff\xfe\x00garbage", source="x.cache")
    with pytest.raises(CalibrationError, match="missing.cache"):
        read_cache(tmp_path / "missing.cache")


def test_unusable_amax_is_refused():
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CalibrationError, match="'t'"):
            format_cache({"t": bad})
    with pytest.raises(UsageError, match="EntropyCalibration2"):
        format_cache({"t": 1.0}, algorithm="Entropy")


def test_missing_tensor_names_the_tensor():
    with pytest.raises(CalibrationError, match="'nope'"):
        TrtCache(100300, "EntropyCalibration2", {}).amax("nope")


def test_algorithm_for_each_method():
    assert calibration_algorithm_for("entropy") == "EntropyCalibration2"
    for method in ("max", "percentile", "mse"):
        assert calibration_algorithm_for(method) == "MinMaxCalibration"
    with pytest.raises(UsageError, match="kl"):
        calibration_algorithm_for("kl")
