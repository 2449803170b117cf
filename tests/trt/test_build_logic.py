"""Engine build decisions and the calibrator, without TensorRT: config validation, which
ONNX and flags for which TensorRT, profile shapes, file names, parser error text, the
TensorRT logger, and the calibration cache checks (with a stand-in `trt` module)."""
from __future__ import annotations

import json
import logging
import struct
import sys
import types

import numpy as np
import pytest

from deploy.bundle import Bundle, TensorInfo
from deploy.errors import BundleError, CalibrationError, DataError, ToolMissingError, UsageError
from deploy.fsutil import sha256_bytes
from deploy.trt.build import BuildConfig, format_parser_errors, plan_network, profile_shapes
from deploy.trt.engine_files import engine_paths
from deploy.trt.logger import make_logger
from deploy.trt.versions import import_tensorrt, supports_implicit_int8

from .fake_cuda import FakeCuda
from .fakes import make_fake_trt


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "int4"}, "--precision 'int4'"),
    ({"batch": (8, 1, 32)}, "MIN <= OPT <= MAX"),
    ({"batch": (0, 1, 2)}, "MIN <= OPT <= MAX"),
    ({"batch": (1, 2)}, "three integers"),
    ({"workspace_mib": 0}, "--workspace 0"),
    ({"int8_mode": "magic", "precision": "int8"}, "--int8-mode 'magic'"),
    ({"int8_mode": "implicit", "precision": "fp16"}, "applies to --precision int8"),
    ({"hardware_compat": "hopper+"}, "--hardware-compat 'hopper\\+'"),
    ({"precision": "int8", "calib_data": "imgs"}, "--data applies to"),
    ({"out": "engine.trt"}, "--out engine.trt: name the engine FILE.plan"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(UsageError, match=match):
        BuildConfig(**kwargs)


def test_config_accepts_lists_and_records_options(tmp_path):
    config = BuildConfig(precision="int8", int8_mode="implicit", batch=[1, 4, 16], calib_data=str(tmp_path))
    assert config.batch == (1, 4, 16) and config.mode == "implicit"
    assert config.options()["calibration"]["data"] == str(tmp_path)
    assert BuildConfig(precision="int8").mode == "explicit"


# --------------------------------------------------------------------------- versions
@pytest.mark.parametrize("version, implicit", [("8.6.1", True), ("9.3.0", True), ("10.3.0.30", True),
                                               ("10.16.1.11", True), ("11.0.0", False), ("11.4.0.106", False)])
def test_implicit_int8_exists_up_to_10(version, implicit):
    # "9.3" > "10.3" as strings: the versions must be parsed.
    assert supports_implicit_int8(version) is implicit


@pytest.mark.parametrize("version", ["10.3.0.30", "11.4.0.106"])
@pytest.mark.parametrize("precision, onnx", [("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8")])
def test_explicit_paths_are_strongly_typed_from_the_precision_onnx(version, precision, onnx):
    plan = plan_network(BuildConfig(precision=precision), version)
    assert (plan.onnx_precision, plan.strongly_typed, plan.implicit_int8) == (onnx, True, False)


def test_implicit_int8_on_10_uses_fp32_onnx_weakly_typed():
    plan = plan_network(BuildConfig(precision="int8", int8_mode="implicit", version_compatible=True,
                                    hardware_compat="ampere+"), "10.16.1.11")
    assert (plan.onnx_precision, plan.strongly_typed, plan.implicit_int8) == ("fp32", False, True)
    assert plan.version_compatible and plan.hardware_compat == "ampere+"


def test_tf32_is_off_unless_asked_and_recorded():
    assert not plan_network(BuildConfig(precision="fp32"), "10.16.1.11").tf32
    assert BuildConfig().options()["tf32"] is False
    config = BuildConfig(precision="fp32", tf32=True)
    assert plan_network(config, "11.4.0.106").tf32 and config.options()["tf32"] is True


def test_implicit_int8_on_11_refused_with_the_reason():
    with pytest.raises(UsageError) as e:
        plan_network(BuildConfig(precision="int8", int8_mode="implicit"), "11.4.0.106")
    assert "TensorRT 11 removed the INT8 calibrators" in str(e.value)
    assert "--int8-mode explicit" in str(e.value)


def test_missing_tensorrt_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(ToolMissingError, match=r"TensorRT is not importable .*`pip install tensorrt`"):
        import_tensorrt()


# --------------------------------------------------------------------------- shapes, names
def test_profile_shapes_put_the_batch_range_on_dim_0():
    inputs = [TensorInfo("input", (-1, 3, 224, 224), "float32", "NCHW")]
    assert profile_shapes(inputs, (1, 8, 32)) == {
        "input": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))}


def test_profile_shapes_refuse_other_dynamic_dims():
    with pytest.raises(BundleError, match="dynamic non-batch dimensions"):
        profile_shapes([TensorInfo("input", (-1, 3, -1, -1), "float32")], (1, 8, 32))


def test_static_batch_needs_a_matching_range():
    inputs = [TensorInfo("input", (4, 3, 8, 8), "float32")]
    assert profile_shapes(inputs, (4, 4, 4))["input"][2] == (4, 3, 8, 8)
    with pytest.raises(BundleError, match="--batch 4 4 4"):
        profile_shapes(inputs, (1, 8, 32))


def test_engine_paths(tmp_path):
    bundle = Bundle(tmp_path, {"model": {"name": "resnet_v2_50", "num_classes": 1001}})
    plan, sidecar = engine_paths(bundle, "fp16")
    assert plan == tmp_path / "engines" / "resnet_v2_50.fp16.plan"
    assert sidecar == tmp_path / "engines" / "resnet_v2_50.fp16.json"
    config = BuildConfig(precision="int8", int8_mode="implicit", out=str(tmp_path / "x.int8-implicit.plan"))
    assert engine_paths(bundle, "int8", config.out) == (tmp_path / "x.int8-implicit.plan",
                                                         tmp_path / "x.int8-implicit.json")
    with pytest.raises(UsageError, match="would overwrite the bundle's manifest.json"):
        engine_paths(bundle, "int8", tmp_path / "manifest.plan")


def test_replacing_an_engine_built_another_way_is_announced(tmp_path):
    from deploy.trt.engine_files import replaced_engine_note

    side = tmp_path / "m.int8.json"
    assert replaced_engine_note(side, "int8", "implicit") is None  # nothing there yet
    side.write_text(json.dumps({"precision": "int8", "mode": "explicit"}))
    note = replaced_engine_note(side, "int8", "implicit")
    assert note == ("replacing m.int8.plan (built int8, explicit) with an int8, implicit engine; "
                    "pass --out FILE.plan to keep both")
    assert replaced_engine_note(side, "int8", "explicit") is None  # a rebuild of the same kind
    side.write_text("{not json")
    assert replaced_engine_note(side, "int8", "implicit") is None


class _ParserError:
    def __init__(self, node, name, op, desc):
        self._v = (node, name, op, desc)

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def desc(self):
        return self._v[3]


def test_parser_errors_one_per_line_with_node_names():
    lines = format_parser_errors([
        _ParserError(12, "resnet_v2_50/conv1/Conv2D", "Conv", "Assertion failed: zero point must be 0"),
        _ParserError(-1, "", "", "model has no graph"),
    ])
    assert lines == ["node 12 'resnet_v2_50/conv1/Conv2D' (Conv): Assertion failed: zero point must be 0",
                     "model: model has no graph"]


def test_logger_forwards_to_logging_and_keeps_errors(caplog):
    trt = make_fake_trt("10.3.0")
    logger = make_logger(trt)
    with caplog.at_level(logging.DEBUG, logger="trtdeploy.tensorrt"):
        logger.log(trt.ILogger.Severity.WARNING, "slow tactic")
        logger.log(trt.ILogger.Severity.ERROR, "out of memory")
        logger.log(trt.ILogger.Severity.INFO, "chatter")
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels == {"TensorRT: slow tactic": logging.WARNING, "TensorRT: out of memory": logging.ERROR,
                      "TensorRT: chatter": logging.DEBUG}
    assert logger.last_errors() == "out of memory"


# --------------------------------------------------------------------------- calibrator
def cache_text(algorithm: str, scales: dict[str, float], version: int = 100300) -> bytes:
    lines = [f"TRT-{version}-{algorithm}"]
    lines += [f"{name}: {struct.pack('!f', s).hex()}" for name, s in scales.items()]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def cache_file(tmp_path):
    path = tmp_path / "bundle" / "calibration" / "trt.cache"
    path.parent.mkdir(parents=True)
    path.write_bytes(cache_text("EntropyCalibration2", {"input": 0.02, "conv1": 0.5}))
    return path


def test_valid_cache_is_served_and_never_overwritten(cache_file):
    from deploy.trt.calibrator import make_calibrator

    data = cache_file.read_bytes()
    calibrator = make_calibrator(make_fake_trt("10.3.0"), cache_file, expected_sha256=sha256_bytes(data),
                                 known_tensors={"input", "conv1", "logits"})
    assert calibrator.read_calibration_cache() == data
    calibrator.write_calibration_cache(b"TRT-100300-EntropyCalibration2\n")
    assert cache_file.read_bytes() == data
    calibrator.raise_pending()


@pytest.mark.parametrize("version, header", [("10.16.1.11", b"TRT-101601-"), ("10.13.3.9", b"TRT-101303-"),
                                             ("10.3.0.30", b"TRT-100300-")])
def test_cache_is_served_under_the_running_tensorrts_header(cache_file, version, header):
    """The scales do not depend on the version; TensorRT skips a table whose header names another."""
    from deploy.trt.calibrator import make_calibrator

    data = cache_file.read_bytes()
    calibrator = make_calibrator(make_fake_trt(version), cache_file, expected_sha256=sha256_bytes(data))
    served = calibrator.read_calibration_cache()
    assert served == header + b"EntropyCalibration2\n" + data.split(b"\n", 1)[1]
    assert cache_file.read_bytes() == data


def test_served_cache_still_refused_when_stale(cache_file):
    """The header is rewritten only after the sha256 check: a stale file is not served."""
    from deploy.trt.calibrator import make_calibrator

    with pytest.raises(CalibrationError, match="stale cache"):
        make_calibrator(make_fake_trt("10.16.1.11"), cache_file, expected_sha256="0" * 64)


def test_batches_asked_while_serving_are_an_error_after_the_build(cache_file):
    from deploy.trt.calibrator import make_calibrator

    calibrator = make_calibrator(make_fake_trt("10.16.1.11"), cache_file,
                                 expected_sha256=sha256_bytes(cache_file.read_bytes()))
    assert calibrator.get_batch(["input"]) is None  # no data to give: TensorRT must use the cache
    with pytest.raises(CalibrationError, match="TensorRT 10.16.1.11 did not accept the served cache"):
        calibrator.raise_pending()


def test_cache_of_another_algorithm_refused(cache_file):
    from deploy.trt.calibrator import make_calibrator

    cache_file.write_bytes(cache_text("MinMaxCalibration", {"input": 0.02}))
    with pytest.raises(CalibrationError) as e:
        make_calibrator(make_fake_trt("10.3.0"), cache_file, expected_sha256=sha256_bytes(cache_file.read_bytes()))
    assert "made with another algorithm (MinMaxCalibration)" in str(e.value)
    assert f"trtdeploy calibrate {cache_file.parent.parent} --method entropy" in str(e.value)


def test_stale_cache_refused(cache_file):
    from deploy.trt.calibrator import make_calibrator

    with pytest.raises(CalibrationError, match="stale cache"):
        make_calibrator(make_fake_trt("10.3.0"), cache_file, expected_sha256="0" * 64)


def test_unrecorded_cache_refused(cache_file):
    from deploy.trt.calibrator import make_calibrator

    with pytest.raises(CalibrationError, match="not recorded in the bundle manifest"):
        make_calibrator(make_fake_trt("10.3.0"), cache_file, expected_sha256=None)


def test_cache_of_another_model_refused(cache_file):
    from deploy.trt.calibrator import make_calibrator

    with pytest.raises(CalibrationError, match="belongs to another model"):
        make_calibrator(make_fake_trt("10.3.0"), cache_file,
                        expected_sha256=sha256_bytes(cache_file.read_bytes()), known_tensors={"x", "y"})


def test_live_calibration_feeds_full_batches_and_writes_the_cache(tmp_path):
    from deploy.trt.calibrator import make_calibrator

    cuda = FakeCuda()
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 3), dtype=np.float32) for _ in range(3)] + [np.zeros((2, 3), np.float32)]
    cache_path = tmp_path / "calibration" / "trt.cache"
    calibrator = make_calibrator(make_fake_trt("10.3.0"), cache_path, batches=batches, batch_size=4, cuda=cuda)
    assert calibrator.get_batch_size() == 4 and calibrator.read_calibration_cache() is None
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    try:
        for expected in batches[:3]:
            (ptr,) = calibrator.get_batch(["input"])
            got = cuda.memory[ptr][: expected.nbytes].view(np.float32).reshape(expected.shape)
            np.testing.assert_array_equal(got, expected)
        assert calibrator.get_batch(["input"]) is None  # the short last batch is dropped
        calibrator.write_calibration_cache(memoryview(b"TRT-100300-EntropyCalibration2\ninput: 3c23d70a\n"))
        calibrator.raise_pending()
        calibrator.close()
    finally:
        cuda.Context.pop()
    assert cache_path.read_bytes().startswith(b"TRT-100300-EntropyCalibration2")
    assert calibrator.batches_served == 3 and not cuda.memory


def test_live_calibration_errors_surface_after_the_build(tmp_path):
    from deploy.trt.calibrator import make_calibrator

    cuda = FakeCuda()
    calibrator = make_calibrator(make_fake_trt("10.3.0"), tmp_path / "c", batches=[{"other": np.zeros((2, 3))}],
                                 batch_size=2, cuda=cuda)
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    try:
        assert calibrator.get_batch(["input"]) is None  # TensorRT would swallow an exception here
    finally:
        cuda.Context.pop()
    with pytest.raises(DataError, match="lacks inputs \\['input'\\]"):
        calibrator.raise_pending()


def test_live_calibration_without_full_batches_is_an_error(tmp_path):
    from deploy.trt.calibrator import make_calibrator

    calibrator = make_calibrator(make_fake_trt("10.3.0"), tmp_path / "c", batches=[np.zeros((1, 3))],
                                 batch_size=2, cuda=FakeCuda())
    assert calibrator.get_batch(["input"]) is None
    with pytest.raises(DataError, match="no full calibration batch of 2"):
        calibrator.raise_pending()


def test_calibrator_module_imports_without_tensorrt():
    import deploy.trt.calibrator as module

    assert isinstance(module, types.ModuleType) and "tensorrt" not in sys.modules


# ------------------------------------------------------------------ build progress
class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_build_progress_reports_top_phases_tenths_and_nesting(caplog):
    import logging

    from deploy.trt.logger import BuildProgress

    clock = _Clock()
    progress = BuildProgress(clock=clock)
    with caplog.at_level(logging.DEBUG, logger="trtdeploy.trt.build"):
        progress.phase_start("Building engine", None, 20)
        progress.phase_start("Tactic selection", "Building engine", 3)
        for step in range(20):
            clock.t += 1.0
            assert progress.step_complete("Building engine", step) is True  # never cancels
        progress.phase_finish("Tactic selection")
        progress.phase_finish("Building engine")
        progress.step_complete("unknown phase", 0)  # TensorRT may report a phase we never saw
        progress.phase_finish("unknown phase")
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert records[0] == ("INFO", "TensorRT build: Building engine (20 steps)")
    assert records[1] == ("DEBUG", "TensorRT build:   Tactic selection (3 steps)")
    steps = [m for lvl, m in records if "/20 steps" in m]
    assert steps[0] == "TensorRT build: Building engine: 2/20 steps, 2 s" and len(steps) == 10
    assert steps[-1].endswith("20/20 steps, 20 s")
    assert records[-2][0] == "DEBUG" and "Tactic selection done" in records[-2][1]
    assert records[-1] == ("INFO", "TensorRT build: Building engine done in 20.0 s")


def test_progress_monitor_subclass_delegates():
    import types

    from deploy.trt.logger import BuildProgress, make_progress_monitor

    class IProgressMonitor:
        def __init__(self):
            self.base_initialised = True

    calls = []

    class Recording(BuildProgress):
        def phase_start(self, *a):
            calls.append(("start", *a))

        def step_complete(self, *a):
            calls.append(("step", *a))
            return True

        def phase_finish(self, *a):
            calls.append(("finish", *a))

    monitor = make_progress_monitor(types.SimpleNamespace(IProgressMonitor=IProgressMonitor), Recording())
    assert monitor.base_initialised
    monitor.phase_start("p", "", 2)
    assert monitor.step_complete("p", 0) is True
    monitor.phase_finish("p")
    assert calls == [("start", "p", "", 2), ("step", "p", 0), ("finish", "p")]
