"""`trtdeploy doctor` with and without TensorRT, pycuda, a driver and a GPU (stand-ins patched
into its import helpers), its JSON shape, the bundle's engines, and exit codes through the CLI;
and once for real here, where neither TensorRT nor pycuda can be imported."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from deploy.cli import main
from deploy.env import tool_versions
from deploy.errors import ToolMissingError
from deploy.trt import doctor

from . import inspector_fixtures as fx
from .fake_cuda import FakeCuda
from .fakes import make_fake_builder_trt
from .test_inspection import MANIFEST, write_engine

NO_TRT = "TensorRT is not importable (ModuleNotFoundError: No module named 'tensorrt'): install it from JetPack or " \
         "`pip install tensorrt`"
NO_DRIVER = "no CUDA driver: pycuda cannot load it (libcuda.so.1: cannot open shared object file); install the " \
            "NVIDIA driver, or run the container with --gpus all / --runtime nvidia"


def _missing(message):
    def raise_it():
        raise ToolMissingError(message)
    return raise_it


@pytest.fixture
def device(monkeypatch):
    """Install stand-ins: `device(trt_version or None, gpu=True, dla_cores=0)`."""
    def install(trt_version="10.16.1.11", gpu=True, dla_cores=0, capability=(8, 7), devices=1, jetson=True):
        cuda = FakeCuda(name="Orin", capability=capability, devices=devices, driver_version=12060,
                        total_memory=30 << 30, integrated=jetson)
        trt = make_fake_builder_trt(trt_version, cuda, {}, dla_cores=dla_cores) if trt_version else None
        if trt is not None:  # imported by the real import_tensorrt, which checks the release
            trt.__file__ = "/usr/lib/python3/dist-packages/tensorrt/__init__.py"
            monkeypatch.setitem(sys.modules, "tensorrt", trt)
        else:
            monkeypatch.setattr(doctor, "import_tensorrt", _missing(NO_TRT))
        monkeypatch.setattr(doctor, "import_cuda", (lambda: cuda) if gpu else _missing(NO_DRIVER))
        return trt, cuda

    return install


def test_ready_device_reports_everything(device):
    device("10.3.0.30", dla_cores=2)
    report = doctor.diagnose()
    assert report["ready"] is True and report["problems"] == []
    assert report["tensorrt"] == {"version": "10.3.0.30", "path": "/usr/lib/python3/dist-packages/tensorrt/__init__.py",
                                  "error": None, "dla_cores": 2}
    assert report["cuda"] == {"driver_version": "12.6", "jetson": True, "error": None}
    # the same GPU facts as bench and profile record (deploy.trt.machine)
    assert report["gpus"] == [{"index": 0, "name": "Orin", "compute_capability": "sm_87", "memory_mib": 30720,
                               "cuda_driver": "12.6", "clock_mhz": 1300, "memory_clock_mhz": 3200}]
    # A Jetson builds neither portable engine (hardware compatibility is not supported on JetPack)
    assert report["supports"] == {"fp16": True, "explicit_int8": True, "implicit_int8": True,
                                  "version_compatible": False, "hardware_compat": False, "dla": True}
    assert report["packages"] == {"numpy": np.__version__, "pycuda": tool_versions().get("pycuda")}
    assert report["bundle"] is None
    lines = doctor.format_report(report)
    assert lines[0] == "TensorRT     10.3.0.30 (/usr/lib/python3/dist-packages/tensorrt/__init__.py)"
    assert "GPU 0        Orin (sm_87), 30720 MiB" in lines and "DLA cores    2" in lines and lines[-1] == "ready"


def test_portable_engines_are_reported_for_discrete_gpus_only(device, capsys):
    device("10.16.1.11", capability=(9, 0), jetson=False)
    s = doctor.diagnose()["supports"]
    assert (s["version_compatible"], s["hardware_compat"]) == (True, True)
    device("10.3.0.30", dla_cores=2, jetson=True)  # Jetson AGX Orin
    assert main(["doctor", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["supports"]
    assert (s["version_compatible"], s["hardware_compat"], s["dla"]) == (False, False, True)
    device("10.3.0.30", gpu=False)  # no GPU to tell a Jetson by
    s = doctor.diagnose()["supports"]
    assert (s["version_compatible"], s["hardware_compat"]) == (None, None)


def test_json_shape_is_stable(device):
    device()
    report = json.loads(json.dumps(doctor.diagnose()))
    assert list(report) == ["tensorrt", "cuda", "gpus", "packages", "supports", "bundle", "problems", "ready"]


def test_tensorrt_11_has_no_implicit_int8_and_no_dla(device):
    device("11.4.0.106", dla_cores=0)
    s = doctor.diagnose()["supports"]
    assert (s["implicit_int8"], s["explicit_int8"], s["dla"]) == (False, True, False)


def test_without_tensorrt_or_gpu_it_says_so(device):
    device(None, gpu=False)
    report = doctor.diagnose()
    assert report["ready"] is False and report["problems"] == [NO_TRT, NO_DRIVER]
    assert report["tensorrt"]["version"] is None and report["gpus"] == []
    assert set(report["supports"].values()) == {None}
    lines = doctor.format_report(report)
    assert lines[0] == f"TensorRT     not usable: {NO_TRT}" and "GPU          none" in lines
    assert lines[-1] == "not ready: 2 problems (below)"


def test_tensorrt_without_a_gpu(device):
    device("10.16.1.11", gpu=False)
    report = doctor.diagnose()
    assert report["tensorrt"]["version"] == "10.16.1.11" and report["tensorrt"]["dla_cores"] is None
    assert report["problems"] == [NO_DRIVER] and report["supports"]["implicit_int8"] is True


def test_driver_without_devices(device):
    device("10.16.1.11", devices=0)
    assert doctor.diagnose()["problems"] == [
        "pycuda sees no CUDA device: check `nvidia-smi` (containers: --gpus all or --runtime nvidia)"]


def test_tensorrt_older_than_10_is_a_problem(device):
    # Refused on import (versions.check_supported), as everywhere else in the package.
    device("8.6.1.6")
    report = doctor.diagnose()
    (problem,) = report["problems"]
    assert problem.startswith("TensorRT 8.6.1.6 found; trtdeploy supports TensorRT 10.x and 11.x")
    assert report["tensorrt"]["version"] is None and report["ready"] is False


def test_builder_refused_by_tensorrt_is_a_problem(device):
    trt, _ = device()

    def no_builder(logger):
        raise TypeError("pybind11::init(): factory function returned nullptr")

    trt.Builder = no_builder
    (problem,) = doctor.diagnose()["problems"]
    assert problem.startswith("TensorRT cannot create a builder on GPU 0 (pybind11::init(): factory function")


# --------------------------------------------------------------------------- a bundle's engines
@pytest.fixture
def bundle(tmp_path):
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps(MANIFEST))
    from deploy.trt.inspection import layers_document

    doc = layers_document(fx.INT8_TRT10, plan="m.int8.plan", tensorrt="10.16.1.11", precision="int8",
                          mode="explicit", convolutions=fx.CONVS)
    write_engine(root, "int8", doc)  # loads: same TensorRT, same GPU
    write_engine(root, "fp16", compute_capability="sm_90")  # another GPU
    write_engine(root, "fp32", dla_core=1)  # a DLA engine, on a device without one
    return root


def test_bundle_engines_checked_like_the_runtime(device, bundle):
    device("10.16.1.11", dla_cores=0)
    report = doctor.diagnose(bundle)
    engines = {e["plan"]: e for e in report["bundle"]["engines"]}
    assert engines["m.int8.plan"]["loadable"] is True and engines["m.int8.plan"]["reason"] is None
    assert engines["m.int8.plan"]["inspection"][0].startswith("4 of 6 convolutions run in INT8")
    assert engines["m.fp16.plan"]["loadable"] is False
    assert "built with TensorRT 10.16.1.11 for sm_90; this is TensorRT 10.16.1.11 on sm_87" in \
        engines["m.fp16.plan"]["reason"]
    assert engines["m.fp32.plan"]["loadable"] is False and "built for DLA core 1" in engines["m.fp32.plan"]["reason"]
    assert report["problems"] == [engines["m.fp16.plan"]["reason"], engines["m.fp32.plan"]["reason"]]
    lines = doctor.format_report(report)
    assert f"bundle       {bundle}: 3 engine(s)" in lines and "  m.int8.plan: loads here" in lines
    assert "  m.fp16.plan: cannot load here" in lines


def test_swapped_plan_is_a_problem(device, bundle):
    device()
    (bundle / "engines" / "m.int8.plan").write_bytes(b"something else")
    report = doctor.diagnose(bundle)
    assert any("does not match its sidecar" in p for p in report["problems"])


def test_bundle_engines_not_checked_without_tensorrt(device, bundle):
    device(None)
    engines = doctor.diagnose(bundle)["bundle"]["engines"]
    assert {e["reason"] for e in engines} == {"not checked: no TensorRT"} and {e["loadable"] for e in engines} == {None}


def test_not_a_bundle_is_a_problem(device, tmp_path):
    device()
    report = doctor.diagnose(tmp_path / "nope")
    assert report["problems"] == [f"{tmp_path / 'nope'}: no such bundle directory; create one with "
                                  f"`trtdeploy export --out {tmp_path / 'nope'}`"]


def test_bundle_without_engines_is_ready(device, tmp_path):
    device()
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    report = doctor.diagnose(tmp_path)
    assert report["ready"] and report["bundle"]["engines"] == []
    assert f"bundle       {tmp_path}: 0 engine(s); build one with `trtdeploy build`" in doctor.format_report(report)


# --------------------------------------------------------------------------- the CLI
def test_cli_ready_exits_0(device, capsys):
    device()
    assert main(["doctor"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("ready") and captured.err == ""


def test_cli_prints_the_report_then_one_line_per_problem_and_exits_2(device, bundle, capsys):
    device()
    assert main(["doctor", str(bundle)]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("TensorRT     10.16.1.11") and "not ready: 2 problems (below)" in captured.out
    errors = captured.err.splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)


def test_cli_json(device, bundle, capsys):
    device(None, gpu=False)
    assert main(["doctor", str(bundle), "--json"]) == 2
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ready"] is False and len(report["bundle"]["engines"]) == 3
    assert captured.err.splitlines() == [f"error: {NO_TRT}", f"error: {NO_DRIVER}"]


def test_doctor_really_runs_here_without_tensorrt_or_pycuda():
    """No stand-ins: this machine has neither (and the blocker makes sure of it)."""
    from tests.test_light_imports import BLOCKER

    code = BLOCKER + "from deploy.cli import main\nimport sys\nsys.exit(main(['doctor']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stdout.startswith("TensorRT     not usable: TensorRT is not importable")
    assert "not ready: 2 problems (below)" in r.stdout
    errors = r.stderr.splitlines()
    assert len(errors) == 2 and errors[0].startswith("error: TensorRT is not importable")
    assert errors[1].startswith("error: ") and "pycuda" in errors[1]  # the blocker's ImportError reads as no driver


def test_unreadable_tensorrt_version_is_a_problem_not_a_crash(device):
    device("garbage")
    report = doctor.diagnose()
    assert report["tensorrt"]["version"] is None and len(report["problems"]) == 1
    assert "garbage" in report["problems"][0] and report["ready"] is False
