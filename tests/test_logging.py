"""One logger hierarchy: every module logs under `trtdeploy.<area>`, so `-v`, a test's caplog
or an application embedding the package sees (and silences) all of it through one name."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _logger_names(path: Path) -> list[str]:
    """The first argument of every `logging.getLogger(...)` call that assigns a module logger."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                and ast.unparse(node.value.func) == "logging.getLogger":
            names.append(ast.unparse(node.value.args[0]) if node.value.args else "<root>")
    return names


def test_every_module_logs_under_trtdeploy():
    files = [p for d in ("deploy", "calibration", "tools") for p in sorted((ROOT / d).rglob("*.py"))]
    found = {str(p.relative_to(ROOT)): _logger_names(p) for p in files}
    assert sum(map(len, found.values())) >= 10
    wrong = {f: names for f, names in found.items() if any(not (n.startswith("'trtdeploy") and n.endswith("'")) for n in names)}
    assert wrong == {}
