"""DLA builds (Jetson Orin) without a Jetson: which TensorRT releases are refused, the options
checked before anything loads, the builder and runtime settings on stand-ins, the sidecar
fields (old sidecars without them still load), and the CLI's one-line refusals."""
from __future__ import annotations

import json
import sys

import pytest

from deploy.cli import main
from deploy.errors import EngineError, ToolMissingError, UsageError
from deploy.trt import runtime as runtime_module
from deploy.trt.build import BuildConfig, build_engine, plan_network
from deploy.trt.dla import check_engine_dla, configure_dla, dla_refusal
from deploy.trt.inspection import load_summary
from deploy.trt.runtime import TrtRunner
from deploy.trt.sidecar import Sidecar, read_sidecar, rebuild_command

from . import inspector_fixtures as fx
from .fake_builder import FakeBuilderConfig
from .fake_cuda import FakeCuda
from .fakes import make_fake_builder_trt
from .test_inspection import MANIFEST, fake_device, write_engine  # noqa: F401  (fixture)


@pytest.mark.parametrize("version, ok", [
    ("8.6.2", True), ("10.3.0.30", True), ("10.7.0", True), ("10.8.0", False), ("10.16.1.11", False),
    ("11.0.0", False), ("11.3.0", False), ("11.4.0.106", False), ("11.4.1.3", True), ("11.5.0", True),
])
def test_dla_releases(version, ok):
    # "10.16" > "10.7" only as numbers: versions are compared as tuples.
    reason = dla_refusal(version)
    assert (reason is None) is ok
    if not ok:
        assert "\n" not in reason and f"TensorRT {version} has no DLA support on Jetson" in reason


def test_dla_refusal_reads_versions_with_the_package_parser():
    # versions.parse_version: two-part releases compare as x.y.0, garbage is one clear error.
    assert dla_refusal("10.7") is None and dla_refusal("11.4.1") is None and dla_refusal("11.4")
    with pytest.raises(ToolMissingError, match="cannot parse the TensorRT version 'unknown'"):
        dla_refusal("unknown")


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "fp16", "gpu_fallback": True}, "--gpu-fallback applies to DLA builds: add --dla-core N"),
    ({"precision": "fp32", "dla_core": 0}, "the DLA runs FP16 and INT8 only"),
    ({"precision": "fp16", "dla_core": -1}, "--dla-core -1: give the DLA core number"),
])
def test_dla_options_checked_first(kwargs, match):
    with pytest.raises(UsageError, match=match):
        BuildConfig(**kwargs)


def test_plan_refuses_dla_on_a_release_without_it():
    config = BuildConfig(precision="int8", dla_core=1, gpu_fallback=True)
    with pytest.raises(UsageError, match="TensorRT 11.4.0.106 has no DLA support"):
        plan_network(config, "11.4.0.106")
    plan = plan_network(config, "10.3.0.30")
    assert (plan.dla_core, plan.gpu_fallback) == (1, True)


# --------------------------------------------------------------------------- one batch size
def test_a_dla_build_takes_one_batch_size():
    assert BuildConfig(precision="fp16", dla_core=0).batch == (1, 1, 1)  # not the GPU's 1 8 32
    assert BuildConfig(precision="fp16", dla_core=0, batch=4).batch == (4, 4, 4)
    assert BuildConfig(precision="fp16", dla_core=0, batch=(8, 8, 8)).batch == (8, 8, 8)
    assert BuildConfig(precision="fp16", batch=(4,)).batch == (4, 4, 4) and BuildConfig().batch == (1, 8, 32)
    with pytest.raises(UsageError) as e:
        BuildConfig(precision="fp16", dla_core=0, batch=(1, 8, 32))
    assert str(e.value) == ("--batch 1 8 32 with --dla-core: the DLA has no dynamic shapes (its profile's min, opt "
                            "and max must be equal); give one batch size, e.g. --batch 8")
    with pytest.raises(UsageError, match="at most 4096"):
        BuildConfig(precision="int8", dla_core=0, batch=4097)
    with pytest.raises(UsageError, match="one integer N or three integers MIN OPT MAX"):
        BuildConfig(precision="fp16", batch=(1, 2))


def test_a_batch_range_with_dla_is_refused_before_tensorrt_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # also on a machine without TensorRT
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    assert main(["build", str(tmp_path), "--precision", "fp16", "--dla-core", "0", "--batch", "1", "8", "32"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --batch 1 8 32 with --dla-core: the DLA has no dynamic shapes (its profile's min, opt and max must be "
        "equal); give one batch size, e.g. --batch 8"]


def test_the_fake_builder_rejects_a_dla_build_with_a_dynamic_profile():
    trt = make_fake_builder_trt("10.3.0.30", FakeCuda(), {}, dla_cores=1)
    builder = trt.Builder(trt.ILogger())
    builder.logger = type("L", (), {"log": lambda self, severity, msg: logged.append(msg)})()
    logged = []
    for shapes, built in ((((1, 3), (8, 3), (32, 3)), False), (((4, 3),) * 3, True)):
        config = FakeBuilderConfig(trt)
        profile = builder.create_optimization_profile()
        profile.set_shape("x", *shapes)
        config.add_optimization_profile(profile)
        config.set_flag(trt.BuilderFlag.FP16)
        configure_dla(trt, builder, config, 0, gpu_fallback=True)
        assert (builder.build_serialized_network(builder.create_network(0), config) is not None) is built
    assert logged == ["DLA: input x has a dynamic profile (1, 3)..(32, 3); DLA needs min == opt == max"]


def test_dla_build_without_batch_builds_a_static_profile(fake_device):
    """The old default, --batch 1 8 32, is a dynamic profile the DLA (and the fake builder) refuses."""
    root, install = fake_device
    trt = install(fx.DLA_TRT10, version="10.3.0.30", dla_cores=2)
    assert main(["build", str(root), "--precision", "fp16", "--dla-core", "0", "--gpu-fallback"]) == 0
    (profile,) = trt.built_with[1].profiles
    assert profile.shapes == {"x": ((1, 3), (1, 3), (1, 3))}
    sidecar = read_sidecar(root / "engines" / "m.fp16.plan")
    assert sidecar.batch == (1, 1, 1)
    assert rebuild_command(sidecar, "B") == ("trtdeploy build B --precision fp16 --batch 1 1 1 --dla-core 0 "
                                             "--gpu-fallback")


# --------------------------------------------------------------------------- typing and flags per release
@pytest.mark.parametrize("precision, mode, onnx, flags", [
    ("fp16", "explicit", "fp32", ("FP16",)),  # trtexec --onnx=model.onnx --useDLACore=N --fp16
    ("int8", "explicit", "int8", ("FP16", "INT8")),  # the Q/DQ model, weakly typed
    ("int8", "implicit", "fp32", ("FP16", "INT8")),  # the FP32 model and the served cache
])
def test_dla_on_tensorrt_10_is_weakly_typed_with_precision_flags(precision, mode, onnx, flags):
    plan = plan_network(BuildConfig(precision=precision, int8_mode=mode, dla_core=0), "10.3.0.30")
    assert (plan.onnx_precision, plan.strongly_typed, plan.precision_flags) == (onnx, False, flags)
    gpu = plan_network(BuildConfig(precision=precision, int8_mode=mode), "10.3.0.30")
    assert gpu.strongly_typed is (mode == "explicit")  # GPU builds keep the strongly typed path


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_dla_on_tensorrt_11_4_1_is_strongly_typed(precision):
    plan = plan_network(BuildConfig(precision=precision, dla_core=0, gpu_fallback=True), "11.4.1.3")
    assert (plan.onnx_precision, plan.strongly_typed, plan.precision_flags) == (precision, True, ())


def test_dla_build_on_tensorrt_10_sets_the_flags_on_a_weak_network(fake_device):
    """A strongly typed network without precision flags is what 10.x's DLA does not take (the
    fake builder refuses it, as the 11.4.1 release notes date strong typing for DLA)."""
    root, install = fake_device
    trt = install(fx.DLA_TRT10, version="10.3.0.30", dla_cores=1)
    assert main(["build", str(root), "--precision", "int8", "--dla-core", "0", "--batch", "4"]) == 0
    network, config = trt.built_with
    assert network.flags == 0 and {trt.BuilderFlag.FP16, trt.BuilderFlag.INT8} <= config.flags
    sidecar = read_sidecar(root / "engines" / "m.int8.plan")
    assert sidecar.onnx == "model.int8.onnx" and sidecar.builder["strongly_typed"] is False
    assert sidecar.builder["precision_flags"] == ["FP16", "INT8"]
    assert main(["build", str(root), "--precision", "fp16", "--dla-core", "0", "--out", str(root / "f.plan")]) == 0
    assert read_sidecar(root / "f.plan").onnx == "model.onnx"  # FP16 from the FP32 ONNX under kFP16, as trtexec


def test_strongly_typed_dla_build_of_fp32_io_needs_gpu_fallback(fake_device, capsys):
    root, install = fake_device
    trt = install(fx.DLA_TRT10, version="11.4.1.3", dla_cores=1)
    assert main(["build", str(root), "--precision", "fp16", "--dla-core", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --dla-core without --gpu-fallback: this TensorRT builds "
                                                   "the DLA engine strongly typed")
    assert trt.built_with is None
    assert main(["build", str(root), "--precision", "fp16", "--dla-core", "0", "--gpu-fallback"]) == 0
    network, config = trt.built_with
    assert network.flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert not hasattr(trt.BuilderFlag, "FP16") and config.flags == {trt.BuilderFlag.GPU_FALLBACK}
    assert read_sidecar(root / "engines" / "m.fp16.plan").onnx == "model.fp16.onnx"


@pytest.mark.parametrize("flag", [["--version-compatible"], ["--hardware-compat", "ampere+"]])
def test_portable_engines_are_refused_with_dla(tmp_path, monkeypatch, capsys, flag):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    assert main(["build", str(tmp_path), "--precision", "fp16", "--dla-core", "0", *flag]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {flag[0]} with --dla-core: a DLA engine runs on the Jetson that built it (hardware compatibility is "
        "not supported on JetPack; a version-compatible plan is restricted to the lean runtime's GPU operators); "
        f"drop {flag[0]}"]


def test_configure_dla_sets_the_default_device_and_core():
    trt = make_fake_builder_trt("10.3.0.30", FakeCuda(), {})
    builder, config = trt.Builder(None), FakeBuilderConfig()
    builder.num_DLA_cores = 2
    configure_dla(trt, builder, config, 1, gpu_fallback=True)
    assert (config.default_device_type, config.DLA_core) == (trt.DeviceType.DLA, 1)
    assert trt.BuilderFlag.GPU_FALLBACK in config.flags
    config = FakeBuilderConfig()
    configure_dla(trt, builder, config, 0, gpu_fallback=False)
    assert trt.BuilderFlag.GPU_FALLBACK not in config.flags


@pytest.mark.parametrize("cores, core, match", [
    (0, 0, "--dla-core 0: this device has no DLA"), (2, 2, r"--dla-core 2: this device has 2 DLA cores \(0..1\)"),
])
def test_configure_dla_refuses_a_core_the_device_lacks(cores, core, match):
    trt = make_fake_builder_trt("10.3.0.30", FakeCuda(), {})
    builder = trt.Builder(None)
    builder.num_DLA_cores = cores
    with pytest.raises(UsageError, match=match):
        configure_dla(trt, builder, FakeBuilderConfig(), core, gpu_fallback=False)


# --------------------------------------------------------------------------- sidecar
def test_old_sidecars_without_dla_fields_still_load(tmp_path):
    plan = write_engine(tmp_path, "fp16")
    data = json.loads(plan.with_suffix(".json").read_text())
    for key in ("dla_core", "gpu_fallback", "layers"):
        del data[key]
    plan.with_suffix(".json").write_text(json.dumps(data))
    sidecar = read_sidecar(plan)
    assert (sidecar.dla_core, sidecar.gpu_fallback, sidecar.layers) == (None, False, None)


def test_dla_fields_round_trip_and_reach_the_rebuild_command(tmp_path):
    plan = write_engine(tmp_path, "int8", dla_core=1, gpu_fallback=True)
    sidecar = read_sidecar(plan)
    assert Sidecar.from_json(sidecar.to_json()) == sidecar
    assert rebuild_command(sidecar, "B").endswith("--batch 1 4 8 --dla-core 1 --gpu-fallback")


def test_engine_for_a_missing_dla_core_refused_with_the_gpu_rebuild(tmp_path):
    sidecar = read_sidecar(write_engine(tmp_path, "int8", dla_core=1))
    check_engine_dla(sidecar, 2, "p.plan")
    with pytest.raises(EngineError) as e:
        check_engine_dla(sidecar, 0, "BUNDLE/engines/m.int8.plan")
    assert str(e.value) == ("BUNDLE/engines/m.int8.plan: built for DLA core 1, but this device has no DLA: rebuild it "
                            "for the GPU with `trtdeploy build BUNDLE --precision int8 --batch 1 4 8`")
    with pytest.raises(EngineError, match="has 1 DLA core: .* or with --dla-core 0..0"):
        check_engine_dla(sidecar, 1, "p.plan")


# --------------------------------------------------------------------------- runtime
@pytest.fixture
def fake_runtime(monkeypatch):
    def install(dla_cores):
        cuda = FakeCuda(capability=(8, 7))
        trt = make_fake_builder_trt("10.16.1.11", cuda, {}, dla_cores=dla_cores)
        monkeypatch.setattr(runtime_module, "import_cuda", lambda: cuda)
        monkeypatch.setattr(runtime_module, "import_tensorrt", lambda: trt)
        return trt

    return install


def test_runtime_sets_the_dla_core_before_deserializing(tmp_path, fake_runtime):
    trt = fake_runtime(dla_cores=2)
    with TrtRunner(write_engine(tmp_path, "int8", dla_core=1)) as runner:
        runner.activate()
    assert trt.runtime_dla_cores == [1]


def test_gpu_engine_leaves_the_runtime_core_alone(tmp_path, fake_runtime):
    trt = fake_runtime(dla_cores=2)
    with TrtRunner(write_engine(tmp_path, "int8")) as runner:
        runner.activate()
    assert trt.runtime_dla_cores == [-1]


def test_runtime_refuses_a_dla_engine_on_a_device_without_that_core(tmp_path, fake_runtime):
    trt = fake_runtime(dla_cores=0)
    with pytest.raises(EngineError, match="built for DLA core 1, but this device has no DLA"):
        TrtRunner(write_engine(tmp_path, "int8", dla_core=1)).activate()
    assert trt.deserialized == []


# --------------------------------------------------------------------------- build, end to end on stand-ins
def test_dla_build_configures_the_builder_and_lists_the_fallbacks(fake_device, capsys):
    root, install = fake_device
    trt = install(fx.DLA_TRT10, version="10.3.0.30", dla_cores=2)
    assert main(["build", str(root), "--precision", "fp16", "--batch", "4", "--dla-core", "0",
                 "--gpu-fallback"]) == 0
    config = trt.built_with[1]
    assert (config.default_device_type, config.DLA_core) == (trt.DeviceType.DLA, 0)
    assert trt.BuilderFlag.GPU_FALLBACK in config.flags
    assert trt.runtime_dla_cores == [0]  # the build loads its engine back on the same core
    plan = root / "engines" / "m.fp16.plan"
    assert (read_sidecar(plan).dla_core, read_sidecar(plan).gpu_fallback) == (0, True)
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == load_summary(plan).lines()
    assert out[2].startswith("DLA core 0: 1 layer on the DLA; these 3 fell back to the GPU: resnet_v2_digits/pool5")


def test_dla_build_on_a_device_without_dla_is_one_line(fake_device, capsys):
    root, install = fake_device
    install(fx.DLA_TRT10, version="10.3.0.30", dla_cores=0)
    assert main(["build", str(root), "--precision", "fp16", "--batch", "4", "--dla-core", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --dla-core 0: this device has no DLA")
    assert not (root / "engines" / "m.fp16.plan").exists()


def test_dla_build_on_tensorrt_11_4_0_is_one_line(fake_device, capsys):
    root, install = fake_device
    install(fx.DLA_TRT10, version="11.4.0.106", dla_cores=2)
    assert main(["build", str(root), "--precision", "int8", "--dla-core", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TensorRT 11.4.0.106 has no DLA support on Jetson" in err


def test_build_dla_without_tensorrt_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    assert main(["build", str(tmp_path), "--precision", "int8", "--dla-core", "0", "--gpu-fallback"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: TensorRT is not importable")


@pytest.mark.parametrize("argv, message", [
    (["--precision", "fp32", "--dla-core", "0"], "error: --dla-core: the DLA runs FP16 and INT8 only; build --precision fp16 or int8"),
    (["--precision", "fp16", "--gpu-fallback"], "error: --gpu-fallback applies to DLA builds: add --dla-core N"),
])
def test_build_dla_usage_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    assert main(["build", str(tmp_path), *argv]) == 2
    assert capsys.readouterr().err.strip() == message


def test_build_engine_refuses_before_building(fake_device):
    from deploy.bundle import open_bundle

    root, install = fake_device
    trt = install(fx.DLA_TRT10, version="10.3.0.30", dla_cores=1)
    with pytest.raises(UsageError, match="--dla-core 1: this device has 1 DLA core"):
        build_engine(open_bundle(root), BuildConfig(precision="int8", batch=4, dla_core=1))
    assert trt.built_with is None
