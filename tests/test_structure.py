"""Issue 9's structural rules, kept: no module in deploy/, calibration/ or tools/ over 500 lines,
no function over 80, and no import cycle among the project's modules, counting imports inside
functions too (a lazy import hides a cycle from Python, not from the reader)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("deploy", "calibration", "tools")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__)."""
    found = {}
    for d in PACKAGES:
        for path in sorted((ROOT / d).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def _imported(name: str, is_pkg: bool, node: ast.Import | ast.ImportFrom, modules) -> set[str]:
    """The project modules an import statement loads (a submodule loads its packages too)."""
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    else:
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    out = set()
    for t in targets:
        parts = t.split(".")
        out |= {".".join(parts[:k]) for k in range(1, len(parts) + 1) if ".".join(parts[:k]) in modules}
    # A module's own packages are loaded before it: not an edge back.
    return {m for m in out if m != name and not name.startswith(m + ".")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, (path, is_pkg) in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported(name, is_pkg, node, modules)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    graph = _graph()
    assert len(graph) > 50 and "deploy.slim.conv_layers" in graph["deploy.slim.resnet"]
    assert _cycles(graph) == []


def test_the_cycle_check_sees_lazy_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from .conv_layers import conv2d\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert _imported("deploy.slim.resnet", False, node, _modules()) == {"deploy.slim.conv_layers"}


def test_module_and_function_sizes():
    too_long = []
    for path, _ in _modules().values():
        text = path.read_text()
        rel = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert too_long == []


# The packages from the bottom up (issue 16): a module may import its own layer and the ones
# below, never one above, function-level imports counted. The device side (bundle, data,
# runners, trt) sits low, the benchmarks above everything they measure, the CLI and tools on top.
LAYERS = (
    ("deploy.errors", "deploy.interrupts", "deploy.progress", "deploy.env", "deploy.int8"),
    ("deploy.fsutil",),
    ("deploy.bundle",),
    ("deploy.data", "deploy.onnx_graph", "deploy.digits"),
    ("deploy.runners", "deploy.slim"),
    ("deploy.trt", "deploy.fp16", "deploy.train"),
    ("deploy.parity",),
    ("deploy.export", "calibration"),
    ("deploy.serving", "deploy.bench"),
    ("deploy.cli", "deploy.__main__", "tools"),
)


def _layer(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    return None


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, edges in graph.items() for b in edges
                  if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a))


def test_every_package_has_a_layer():
    assert [m for m in _graph() if m not in ("deploy", "calibration", "tools") and _layer(m) is None] == []


def test_no_package_imports_a_higher_one():
    assert _upward(_graph()) == []


def test_the_layering_check_sees_lazy_imports():
    tree = ast.parse("def f():\n    from ..bench.forward import forward_benchmark\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    graph = {"deploy.trt.runtime": _imported("deploy.trt.runtime", False, node, _modules())}
    assert _upward(graph) == ["deploy.trt.runtime -> deploy.bench", "deploy.trt.runtime -> deploy.bench.forward"]
