"""deploy.env: the machine and tool versions every JSON we write records."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np

from deploy import __version__
from deploy.env import TOOLS, GpuDevice, machine_info


def test_machine_info_keys():
    info = machine_info().to_json()
    assert set(info) >= {"python", "numpy", "platform", "cpu", "cpu_count", "tools"}
    assert info["numpy"] == np.__version__
    json.dumps(info, allow_nan=False)


def test_tool_versions_name_trtdeploy_and_installed_tools_without_importing_them():
    code = ("import sys, json\nfrom deploy.env import tool_versions\nv = tool_versions()\n"
            "print(json.dumps([v, sorted(m for m in ('tensorflow', 'onnx', 'onnxruntime') if m in sys.modules)]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    versions, imported = json.loads(r.stdout)
    assert imported == []  # looked up by metadata: importing TensorFlow alone takes seconds
    assert versions["trtdeploy"] == __version__ and versions["numpy"] == np.__version__
    assert set(versions) <= {"trtdeploy", "python", "numpy", *TOOLS}


def test_machine_info_names_each_version_once():
    info = machine_info()
    assert info.tools["trtdeploy"] == __version__
    assert "python" not in info.tools and "numpy" not in info.tools  # fields of their own


def test_gpu_only_where_a_device_side_result_ran_on_one():
    info = machine_info()
    assert info.gpu is None and "gpu" not in info.to_json()
    gpu = GpuDevice(0, "Orin", "sm_87", 30720, "12.6")  # a driver that reports no clocks
    out = replace(info, gpu=gpu).to_json()
    assert out["gpu"] == {"index": 0, "name": "Orin", "compute_capability": "sm_87", "memory_mib": 30720,
                          "cuda_driver": "12.6"}
    assert replace(gpu, clock_mhz=1300).to_json()["clock_mhz"] == 1300
