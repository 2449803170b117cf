"""Start and stop a real Triton server for the tests, from the `nvidia-pytriton` wheel.

The wheel ships `pytriton/tritonserver` (Triton 2.51 with the python backend only) and a python
backend stub per Python version. Started as issue 18 found it works on CPU: a private copy of
that folder with the stub for the stub environment's Python at
`backends/python/triton_python_backend_stub`, the wheel's `nvidia_pytriton.libs` and the
interpreter's libpython on LD_LIBRARY_PATH, and the stub environment's `bin` first on PATH (the
stub finds its packages through the `python3` there). That environment needs numpy<2: Triton
2.51's stub is built with pybind11 2.10, which predates numpy 2 (python_backend commit 09c3537
moved to pybind11 2.12 in November 2024) and sends zero-filled, zero-sized tensors with numpy 2
(seen here: every output came back empty). `tools/setup.sh --test` makes it at
`.venv/triton-stub` (numpy 1.26.4, Pillow, ONNX Runtime); TRTDEPLOY_TRITON_STUB_ENV names another.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def _stub_env() -> Path:
    return Path(os.environ.get("TRTDEPLOY_TRITON_STUB_ENV") or Path(sys.prefix) / "triton-stub")


def unavailable_reason() -> str | None:
    """Why a server cannot be started here (None: it can)."""
    if importlib.util.find_spec("tritonclient") is None:
        return "tritonclient is not installed (`tools/setup.sh --test` installs the test extra)"
    if importlib.util.find_spec("pytriton") is None:
        return "the nvidia-pytriton wheel (a tritonserver binary) is not installed (`tools/setup.sh --test`)"
    env = _stub_env()
    if not (env / "bin" / "python3").exists():
        return f"{env}: no Python environment for the python backend stub (`tools/setup.sh --test` makes it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stub_python_version(env: Path) -> str:
    out = subprocess.run([str(env / "bin" / "python3"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _libpython_dir(env: Path) -> str:
    out = subprocess.run([str(env / "bin" / "python3"), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@dataclass
class Server:
    url: str  # host:port
    process: subprocess.Popen
    log: Path
    startup_s: float

    def stop(self) -> int:
        """SIGTERM to the server's own pid; its return code (0: it stopped cleanly)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                return self.process.wait()
        return self.process.returncode


def start(repository: Path, workdir: Path, timeout_s: float = 120.0) -> Server:
    """tritonserver on a free loopback port, HTTP only, ready (every model loaded) or an error with its log."""
    # The package's folder, not the package: importing pytriton needs its own dependencies.
    wheel = Path(importlib.util.find_spec("pytriton").submodule_search_locations[0]).resolve()
    env = _stub_env()
    copy = workdir / "tritonserver"
    if not copy.exists():
        shutil.copytree(wheel / "tritonserver", copy)
        stub = wheel / "tritonserver" / "python_backend_stubs" / _stub_python_version(env) / "triton_python_backend_stub"
        shutil.copy2(stub, copy / "backends" / "python" / "triton_python_backend_stub")
    libs = [str(wheel.parent / "nvidia_pytriton.libs"), _libpython_dir(env)]
    environ = dict(os.environ, LD_LIBRARY_PATH=":".join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]),
                   PATH=f"{env / 'bin'}:{os.environ.get('PATH', '')}")
    port = _free_port()
    log = workdir / f"tritonserver-{port}.log"
    cmd = [str(copy / "bin" / "tritonserver"), f"--model-repository={repository}",
           f"--backend-directory={copy / 'backends'}", "--http-address=127.0.0.1", f"--http-port={port}",
           "--allow-grpc=false", "--allow-metrics=false", "--exit-on-error=false"]
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=environ, cwd=workdir)
    server = Server(f"127.0.0.1:{port}", process, log, 0.0)
    while time.perf_counter() - t0 < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"tritonserver exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://{server.url}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    server.startup_s = time.perf_counter() - t0
                    return server
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"tritonserver not ready after {timeout_s} s:\n{log.read_text()[-4000:]}")
