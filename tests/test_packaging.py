"""The package's metadata builds without setuptools' deprecation warnings (it printed the
`project.license` TOML-table warning at every step of every install)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_an_spdx_expression_and_the_backend_reads_it():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    # SPDX strings need setuptools >= 77 (older ones refuse them); the pin must allow it too.
    assert "setuptools>=77" in [r.split("#")[0].strip() for r in PYPROJECT["build-system"]["requires"]]
    pins = [line for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
            if line.lower().startswith("setuptools==")]
    assert len(pins) == 1 and int(pins[0].split("==")[1].split(".")[0]) >= 77


def test_metadata_builds_without_warnings(tmp_path):
    """What pip runs for the metadata, offline, with the setuptools installed here."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} here is older than the build backend pip uses "
                    "(>= 77, build-system.requires); `tools/setup.sh --test` installs it")
    src = tmp_path / "src"
    for package in ("deploy", "calibration"):  # metadata needs the packages to exist, not their code
        (src / package).mkdir(parents=True)
        (src / package / "__init__.py").touch()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c",
         f"from setuptools import build_meta\nprint(build_meta.prepare_metadata_for_build_wheel({str(out)!r}))"],
        cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "Warning" not in log and "deprecated" not in log.lower(), log[-3000:]
    metadata = (out / proc.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
