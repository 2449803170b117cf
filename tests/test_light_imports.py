"""The package, `trtdeploy --help` and every subcommand's `--help` work with none of the heavy
dependencies; the device side imports with neither TensorFlow nor ONNX (Runtime), nor `packaging`
(JetPack's Python lacks it, and the README's device recipe installs with `--no-deps`).

Each check runs in a fresh interpreter whose import system refuses the heavy modules, so an
accidental top-level import anywhere fails here."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from deploy.cli import COMMANDS

HEAVY = ["tensorflow", "tf2onnx", "onnx", "onnxruntime", "onnx_graphsurgeon", "tensorrt", "pycuda",
         "tf_keras", "keras", "sklearn", "matplotlib", "packaging"]

BLOCKER = textwrap.dedent(f"""
    import sys
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {HEAVY!r}:
                raise ImportError(f"blocked heavy import: {{name}}")
    sys.meta_path.insert(0, Blocker())
""")

DEVICE_MODULES = ["deploy", "deploy.bundle", "deploy.errors", "deploy.fsutil", "deploy.runners.base",
                  "deploy.trt", "deploy.trt.build", "deploy.trt.runtime", "deploy.trt.sidecar",
                  "deploy.trt.calibrator", "deploy.trt.calibration_cache", "deploy.int8", "deploy.data",
                  "deploy.data.preprocess", "deploy.data.inputs", "deploy.cli", "deploy.env", "deploy.bench",
                  "deploy.runners.timing", "deploy.bench.forward", "deploy.parity", "deploy.parity.metrics",
                  "deploy.parity.thresholds", "deploy.parity.backends", "deploy.parity.inputs",
                  "deploy.parity.per_layer", "deploy.parity.run", "deploy.parity.result", "deploy.parity.report",
                  "deploy.parity.layer_timing", "deploy.parity.engine_layers",
                  "deploy.trt.inspection", "deploy.trt.dla", "deploy.trt.doctor", "deploy.trt.graphs",
                  "deploy.trt.profiler", "deploy.trt.enginebench", "deploy.trt.machine", "deploy.cli.doctor",
                  "deploy.cli.profile", "deploy.cli.bench"]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=120)


def test_device_side_imports_without_heavy_dependencies():
    code = "import importlib\nfor m in %r: importlib.import_module(m)\nprint('ok')" % DEVICE_MODULES
    r = _run(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@pytest.mark.parametrize("argv", [["--help"]] + [[c, "--help"] for c in COMMANDS])
def test_help_without_heavy_dependencies(argv):
    r = _run(f"from deploy.cli import main\nmain({argv!r})")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage: trtdeploy" in r.stdout
    if len(argv) == 2:
        assert argv[0] in r.stdout


# What building the parser must not import: the modules behind the commands, which a device
# lacking one of their dependencies could not import; each runs only inside `run`.
NOT_FOR_PARSING = ("deploy.trt.build", "deploy.trt.runtime", "deploy.trt.calibrator", "deploy.trt.sidecar",
                   "deploy.trt.inspection", "deploy.trt.dla", "deploy.trt.doctor", "deploy.trt.graphs",
                   "deploy.trt.profiler", "deploy.trt.enginebench", "deploy.trt.machine",
                   "deploy.parity", "deploy.bench", "deploy.export", "deploy.fp16", "deploy.slim", "deploy.data.",
                   "deploy.onnx_graph", "calibration")


def test_building_the_parser_imports_no_command_module():
    r = _run("import sys\nfrom deploy.cli import build_parser\nbuild_parser()\n"
             f"print(sorted(m for m in sys.modules if m.startswith({NOT_FOR_PARSING!r})))")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_blocker_really_blocks():
    r = _run("import onnx")
    assert r.returncode != 0 and "blocked heavy import" in r.stderr


def test_parity_from_a_bundle_runs_with_only_numpy(default_bundle_dir, tmp_path):
    """On a device without TensorFlow, ONNX Runtime, TensorRT or matplotlib the report still
    runs from reference.npz, writes both files and says why nothing could be compared."""
    import json

    out = tmp_path / "report"
    r = _run(f"from deploy.cli import main\nimport sys\nsys.exit(main(['parity', {str(default_bundle_dir)!r}, "
             f"'--out', {str(out)!r}]))")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "FAIL: no backend ran here" in r.stdout
    result = json.loads((out / "parity.json").read_text())
    assert result["reference"]["name"] == "reference.npz" and result["pass"] is False
    reasons = {b: e["reason"] for b, e in result["backends"].items()}
    assert all(e["status"] == "skipped" for e in result["backends"].values())
    assert "TensorFlow is not installed" in reasons["tf"] and "ONNX Runtime is not installed" in reasons["ort-int8"]
    assert "no engine; build it with `trtdeploy build" in reasons["trt-fp16"]
    assert "no backend ran here" in (out / "parity.html").read_text()


def _imported_modules(path) -> set[str]:
    """Absolute module names a file imports, anywhere in it (lazy imports inside functions too)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_device_side_never_imports_calibration():
    """The engine build, its calibrator, the input sets and `infer` run on a device that has no
    calibration package: what they share with it (the cache format, the input sets) lives in deploy."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "deploy"
    files = [*sorted((root / "trt").glob("*.py")), *sorted((root / "data").glob("*.py")), root / "cli" / "infer.py",
             root / "cli" / "build.py"]
    assert len(files) > 10
    offenders = [f"{f.relative_to(root.parent)}: {m}" for f in files for m in sorted(_imported_modules(f))
                 if m == "calibration" or m.startswith("calibration.")]
    assert offenders == []
