"""TensorFlow in a process that also runs TensorRT, and quietly: `import_tf` lets TensorFlow take
GPU memory on demand; TensorFlow's C++ start-up lines stay off stderr unless -v."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from deploy.runners import tf as tf_runner

ROOT = Path(__file__).resolve().parent.parent

# What TensorFlow 2.21 printed on every TF command of this CLI (issue 8), and the notes of GPU builds.
NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795698272.732359    7202 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.",
    "I0000 00:00:1795698272.780441    7202 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1795698272.780441    7202 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.",
    "E0000 00:00:1795698272.812345    7202 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting to "
    "register factory for plugin cuDNN when one has already been registered",
)
MARKERS = ("absl::InitializeLog", "cudart_stub", "oneDNN", "cpu_feature_guard", "To enable the following",
           "Unable to register")


# --- GPU memory ------------------------------------------------------------------------------


def fake_tensorflow(calls: list, gpus: list[str], growth_error: Exception | None = None) -> types.ModuleType:
    """A `tensorflow` module recording the tf.config calls import_tf makes, in order."""
    def set_memory_growth(device, enable):
        calls.append(("set_memory_growth", device, enable))
        if growth_error is not None:
            raise growth_error

    def list_physical_devices(kind):
        calls.append(("list_physical_devices", kind))
        return list(gpus) if kind == "GPU" else []

    tf = types.ModuleType("tensorflow")
    tf.config = types.SimpleNamespace(
        list_physical_devices=list_physical_devices,
        experimental=types.SimpleNamespace(
            set_memory_growth=set_memory_growth,
            enable_tensor_float_32_execution=lambda enabled: calls.append(("tf32", enabled))))
    return tf


@pytest.fixture
def fresh_import_tf(monkeypatch):
    monkeypatch.setattr(tf_runner, "_tf_configured", False)

    def install(tf):
        monkeypatch.setitem(sys.modules, "tensorflow", tf)
        return tf
    return install


def test_import_tf_lets_tensorflow_grow_gpu_memory(fresh_import_tf):
    calls: list = []
    tf = fresh_import_tf(fake_tensorflow(calls, ["GPU:0", "GPU:1"]))
    assert tf_runner.import_tf() is tf
    # Before anything else touches TensorFlow's devices.
    assert calls == [("list_physical_devices", "GPU"), ("set_memory_growth", "GPU:0", True),
                     ("set_memory_growth", "GPU:1", True), ("tf32", False)]
    tf_runner.import_tf()
    assert calls[4:] == [("tf32", False)]  # the devices are set up once per process


def test_import_tf_after_tensorflow_initialised_its_gpus_goes_on(fresh_import_tf, caplog):
    calls: list = []
    late = RuntimeError("Physical devices cannot be modified after being initialized")
    tf = fresh_import_tf(fake_tensorflow(calls, ["GPU:0", "GPU:1"], growth_error=late))
    with caplog.at_level(logging.WARNING):
        assert tf_runner.import_tf() is tf
    assert ("set_memory_growth", "GPU:0", True) in calls and ("tf32", False) in calls
    assert "TensorFlow already holds its GPU memory" in caplog.text and "cannot be modified" in caplog.text


def test_import_tf_without_a_gpu_changes_nothing(fresh_import_tf):
    calls: list = []
    fresh_import_tf(fake_tensorflow(calls, []))
    tf_runner.import_tf()
    assert calls == [("list_physical_devices", "GPU"), ("tf32", False)]


# --- quiet start-up -------------------------------------------------------------------------


@pytest.fixture
def noisy_tensorflow(tmp_path) -> dict[str, str]:
    """Environment whose `tensorflow` writes TensorFlow's start-up lines, one real error and one
    other line to file descriptor 2 (as its C++ libraries do), then fails to import."""
    package = tmp_path / "fake_site" / "tensorflow"
    package.mkdir(parents=True)
    text = "\n".join(NOISE + ("E0000 00:00:1795698272.9 7202 loader.cc:42] a real error", "real trouble")) + "\n"
    package.joinpath("__init__.py").write_text(
        f"import os\nos.write(2, {text.encode()!r})\nraise ImportError('fake tensorflow')\n")
    return {**os.environ, "PYTHONPATH": f"{package.parent}{os.pathsep}{ROOT}"}


def run(argv: list[str], env: dict[str, str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)


def test_startup_noise_is_filtered_and_real_errors_shown(noisy_tensorflow):
    code = ("from deploy.runners.tf import quiet_tensorflow_startup\nquiet_tensorflow_startup()\n"
            "try:\n    import tensorflow\nexcept ImportError as e:\n    print(e)\n")
    quiet = run(["-c", code], noisy_tensorflow)
    assert quiet.stdout == "fake tensorflow\n"
    assert quiet.stderr.splitlines() == ["E0000 00:00:1795698272.9 7202 loader.cc:42] a real error", "real trouble"]
    loud = run(["-c", "import tensorflow"], noisy_tensorflow)
    for line in NOISE:
        assert line in loud.stderr  # the fake does print them


def test_noise_is_filtered_after_a_module_probe(noisy_tensorflow):
    """Parity asks `importlib.util.find_spec("tensorflow")` before it imports TensorFlow (to
    list a backend as skipped): the probe must not use up the filter."""
    code = ("import importlib.util\nfrom deploy.runners.tf import quiet_tensorflow_startup\n"
            "quiet_tensorflow_startup()\nassert importlib.util.find_spec('tensorflow') is not None\n"
            "try:\n    import tensorflow\nexcept ImportError as e:\n    print(e)\n")
    quiet = run(["-c", code], noisy_tensorflow)
    assert quiet.stdout == "fake tensorflow\n", quiet.stderr
    assert not [m for m in MARKERS if m in quiet.stderr], quiet.stderr
    assert "real trouble" in quiet.stderr


def test_benchmark_tool_starts_tensorflow_quietly(noisy_tensorflow):
    argv = [str(ROOT / "tools" / "benchmark.py"), "forward", "--backends", "tf", "--model", "resnet_v2_digits",
            "--image-size", "32", "--batch", "1", "--warmup", "0", "--iters", "1"]
    proc = run(argv, noisy_tensorflow)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"]["tf"]["status"] == "skipped"
    assert "real trouble" in proc.stderr and "a real error" in proc.stderr
    assert not [m for m in MARKERS if m in proc.stderr], proc.stderr
    verbose = run([argv[0], "-v", *argv[1:]], noisy_tensorflow)
    assert all(m in verbose.stderr for m in MARKERS)  # -v keeps TensorFlow's own start-up logging


def test_cli_export_prints_no_tensorflow_startup_lines(tmp_path):
    """The real TensorFlow, through the CLI as a user runs it."""
    pytest.importorskip("tensorflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["PYTHONPATH"] = str(ROOT)
    proc = run(["-m", "deploy", "export", "--model", "default", "--out", str(tmp_path / "b")], env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [m for m in MARKERS + ("cuda drivers",) if m in proc.stderr], proc.stderr
    assert "[1/5] building default" in proc.stderr  # our own progress still shows
