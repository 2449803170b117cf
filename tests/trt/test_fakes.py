"""The stand-ins themselves: ../shared/gpu/runner_check.py (the runtime on a real GPU with an
emulated engine) imports fakes.py as a top-level module, with the project and tests/trt on
sys.path, for its enums and ILogger."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fakes_import_as_a_top_level_module():
    code = (f"import sys\nsys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests' / 'trt')!r}]\nimport fakes\n"
            "trt = fakes.make_fake_trt('10.16.1.11', fakes.FakeCuda())\n"
            "print(trt.TensorIOMode.INPUT.name, trt.nptype(trt.DataType.FLOAT).__name__, fakes.ILogger.__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["INPUT", "float32", "ILogger"]
