"""The part of `deploy` a python-backend model imports, copied beside its model.py.

Triton's python backend runs model.py in its own stub interpreter, which has whatever packages
its Python environment has (python_backend README, "Managing Python Runtime and Libraries"),
and usually not trtdeploy. So each python model carries the modules it uses: the closure, over
every import (those inside functions too), of the modules it names, with their packages'
`__init__` files. The stub puts the model's version directory on `sys.path` (`pb_stub.cc`,
`StubSetup`); model.py puts `VENDOR_DIR` first, so the copy, not another trtdeploy installed
there, is the code that runs, the same code as `trtdeploy infer`. Standard library only.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

import deploy

VENDOR_DIR = "trtdeploy_lib"
_ROOT = Path(deploy.__file__).resolve().parent.parent  # the directory holding the deploy package


def _file(module: str) -> Path | None:
    base = _ROOT.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(module: str, path: Path) -> set[str]:
    is_pkg = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{a.name}" for a in node.names)
    found = set()
    for name in names:
        parts = name.split(".")
        found.update(".".join(parts[:k]) for k in range(1, len(parts) + 1)
                     if parts[0] == "deploy" and _file(".".join(parts[:k])))
    return found


def closure(modules: Iterable[str]) -> dict[str, Path]:
    """Module name -> source file, for `modules` and everything of deploy they import."""
    todo, seen = list(modules), {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _file(name)
        if path is None:
            raise ValueError(f"{name}: no such module in {_ROOT / 'deploy'}")
        seen[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # the packages above it
        todo += sorted(_imports(name, path))
    return seen


def vendored_files(modules: Iterable[str]) -> dict[str, bytes]:
    """`VENDOR_DIR/deploy/...` relative path -> bytes, for the closure of `modules`."""
    return {f"{VENDOR_DIR}/{path.relative_to(_ROOT).as_posix()}": path.read_bytes()
            for path in closure(modules).values()}
