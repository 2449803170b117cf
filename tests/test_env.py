"""deploy.env: the machine and tool versions every JSON we write records."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from deploy import __version__
from deploy.env import TOOLS, machine_info


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
