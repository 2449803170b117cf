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
    assert (plan.dla_core, plan.gpu_fallback, plan.strongly_typed) == (1, True, True)


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
    assert main(["build", str(root), "--precision", "fp16", "--batch", "1", "4", "8", "--dla-core", "0",
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
    assert main(["build", str(root), "--precision", "fp16", "--batch", "1", "4", "8", "--dla-core", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --dla-core 0: this device has no DLA")
    assert not (root / "engines" / "m.fp16.plan").exists()


def test_dla_build_on_tensorrt_11_4_0_is_one_line(fake_device, capsys):
    root, install = fake_device
    install(fx.DLA_TRT10, version="11.4.0.106", dla_cores=2)
    assert main(["build", str(root), "--precision", "int8", "--batch", "1", "4", "8", "--dla-core", "0"]) == 2
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
        build_engine(open_bundle(root), BuildConfig(precision="int8", batch=(1, 4, 8), dla_core=1))
    assert trt.built_with is None
