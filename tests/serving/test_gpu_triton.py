"""The tensorrt_plan and onnxruntime_onnx repositories loaded by a Triton that has those backends
(an NGC tritonserver image on a GPU machine; the test server here has the python backend only).

Set TRTDEPLOY_TRITONSERVER to its `tritonserver` binary (and TRTDEPLOY_TRITON_BACKENDS to its
backend directory, default /opt/tritonserver/backends). Needs TensorRT and a GPU to build the
engine; skipped, saying why, elsewhere."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from deploy.cli import main

pytestmark = pytest.mark.gpu


@pytest.fixture
def full_triton():
    binary = os.environ.get("TRTDEPLOY_TRITONSERVER")
    if not binary or not Path(binary).is_file():
        pytest.skip("TRTDEPLOY_TRITONSERVER names no tritonserver with the tensorrt and onnxruntime backends")
    return Path(binary), Path(os.environ.get("TRTDEPLOY_TRITON_BACKENDS", "/opt/tritonserver/backends"))


@pytest.mark.parametrize("platform", ["tensorrt_plan", "onnxruntime_onnx"])
def test_the_repository_loads_and_passes_parity(full_triton, serving_bundle, digits_images, tmp_path, platform):
    import shutil

    bundle = shutil.copytree(serving_bundle, tmp_path / "bundle")
    if platform == "tensorrt_plan":
        assert main(["build", str(bundle), "--precision", "fp16", "--batch", "1", "8", "32"]) == 0
    repo = tmp_path / "repo"
    assert main(["triton", str(bundle), "--out", str(repo), "--platform", platform, "--precision", "fp16"]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    binary, backends = full_triton
    server = subprocess.Popen([str(binary), f"--model-repository={repo}", f"--backend-directory={backends}",
                               "--http-address=127.0.0.1", f"--http-port={port}", "--allow-grpc=false",
                               "--allow-metrics=false"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        out = tmp_path / "report"
        assert main(["parity", str(bundle), "--data", str(digits_images[1]), "--num-images", "64", "--backends",
                     "ort-fp16", "--triton", f"127.0.0.1:{port}", "--triton-model", "resnet_v2_digits_ensemble",
                     "--out", str(out)]) == 0
        assert json.loads((out / "parity.json").read_text())["backends"]["triton-fp16"]["pass"] is True
    finally:
        server.terminate()
        server.wait(timeout=60)
