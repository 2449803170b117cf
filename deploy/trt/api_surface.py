"""The TensorRT and pycuda names deploy/trt uses, collected from its source with `ast`.

Nothing here imports TensorRT or pycuda. tests/trt/test_bindings_api.py checks every
collected name against the real TensorRT 10 and 11 bindings (and a pycuda build), so the
list cannot drift from the code.

What is collected, in deploy/trt/*.py:
- attribute chains on the modules `trt` and `cuda` (`trt.BuilderFlag.INT8`, `cuda.Context.pop()`),
  with how they are used (read, written, called with how many positional and which keyword arguments);
- attributes of objects held in variables named by the convention below
  (`builder_config.set_memory_pool_limit(...)`, `self._context.execute_async_v3(...)`);
- the methods our subclasses of TensorRT classes define for TensorRT to call.

The convention: in deploy/trt a variable (or `self._name`) called one of `TRT_RECEIVERS` /
`CUDA_RECEIVERS` holds an object of that class, and only such variables hold them.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

TRT_RECEIVERS = {
    "builder": "Builder",
    "network": "INetworkDefinition",
    "network_input": "ITensor",
    "layer": "ILayer",
    "layer_output": "ITensor",
    "parser": "OnnxParser",
    "parser_error": "ParserError",
    "builder_config": "IBuilderConfig",
    "profile": "IOptimizationProfile",
    "calibration_profile": "IOptimizationProfile",
    "timing_cache": "ITimingCache",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "inspector": "EngineInspector",
}
CUDA_RECEIVERS = {
    "dev": "Device",
    "ctx": "Context",
    "stream": "Stream",
    "allocation": "DeviceAllocation",
    "pinned": "PagelockedHostAllocation",
}
CUDA_RECEIVER_PREFIXES = {"ev_": "Event"}

# Methods TensorRT calls on our subclasses; each must exist on the TensorRT base class.
OVERRIDES = {
    "ILogger": ("log",),
    "IInt8EntropyCalibrator2": ("get_batch_size", "get_batch", "read_calibration_cache", "write_calibration_cache"),
    "IProgressMonitor": ("phase_start", "step_complete", "phase_finish"),
    "IProfiler": ("report_layer_time",),
}

# Functions that run only on TensorRT <= 10 (implicit INT8, which `versions.supports_implicit_int8`
# gates, and the precision flags of a weakly typed network, which `plan_network` gives only there):
# the only places allowed to use names TensorRT 11 removed.
TRT10_ONLY_FUNCTIONS = frozenset({"_configure_implicit_int8", "make_calibrator", "_set_precision_flags"})

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Usage:
    module: str  # "trt" | "cuda"
    chain: tuple[str, ...]  # from the module: ("BuilderFlag", "INT8"); on a receiver: ("IBuilderConfig", "set_flag")
    on_receiver: bool  # True: an instance attribute (self implicit in calls)
    kind: str  # "read" | "write" | "call" | "subclass"
    nargs: int | None  # positional arguments of a call (None: *args used)
    keywords: tuple[str, ...]
    where: str  # "file.py:LINE in FUNCTION"
    function: str  # outermost enclosing function (or class) name, "" at module level


def _receiver(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
            and node.attr.startswith("_")):
        return node.attr[1:]
    return None


def _receiver_class(name: str) -> tuple[str, str] | None:
    if name in TRT_RECEIVERS:
        return "trt", TRT_RECEIVERS[name]
    if name in CUDA_RECEIVERS:
        return "cuda", CUDA_RECEIVERS[name]
    for prefix, cls in CUDA_RECEIVER_PREFIXES.items():
        if name.startswith(prefix):
            return "cuda", cls
    return None


def _chain(node: ast.Attribute) -> tuple[ast.expr, tuple[str, ...]]:
    attrs = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute) and _receiver(cur) is None:
        attrs.append(cur.attr)
        cur = cur.value
    return cur, tuple(reversed(attrs))


class _Collector(ast.NodeVisitor):
    def __init__(self, filename: str):
        self.filename = filename
        self.usages: list[Usage] = []
        self.overrides: dict[str, set[str]] = {}
        self._scope: list[str] = []
        self._parents: dict[int, ast.AST] = {}

    def collect(self, tree: ast.AST) -> None:
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self._parents[id(child)] = parent
        self.visit(tree)

    def _add(self, module, chain, on_receiver, kind, node, call=None):
        nargs = None
        keywords: tuple[str, ...] = ()
        if call is not None:
            nargs = None if any(isinstance(a, ast.Starred) for a in call.args) else len(call.args)
            keywords = tuple(k.arg for k in call.keywords if k.arg)
        where = f"{self.filename}:{node.lineno} in {'.'.join(self._scope) or '<module>'}"
        self.usages.append(Usage(module, chain, on_receiver, kind, nargs, keywords, where,
                                 self._scope[0] if self._scope else ""))

    def visit_FunctionDef(self, node):
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        for base in node.bases:
            if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "trt":
                self._add("trt", (base.attr,), False, "subclass", node)
                methods = {b.name for b in node.body if isinstance(b, ast.FunctionDef)}
                self.overrides.setdefault(base.attr, set()).update(methods)
        self._scope.append(node.name)
        self.generic_visit(node)
        self._scope.pop()

    def visit_Attribute(self, node):
        parent = self._parents.get(id(node))
        if isinstance(parent, ast.Attribute) and parent.value is node and _receiver(parent) is None:
            self.generic_visit(node)  # not the whole chain: the parent is
            return
        root, attrs = _chain(node)
        kind, call = "read", None
        if isinstance(parent, ast.Call) and parent.func is node:
            kind, call = "call", parent
        elif isinstance(node.ctx, ast.Store):
            kind = "write"
        if isinstance(root, ast.Name) and root.id in ("trt", "cuda") and attrs:
            self._add(root.id, attrs, False, kind, node, call)
        else:
            name = _receiver(root)
            typed = _receiver_class(name) if name else None
            if typed and attrs:
                # only the first attribute is the receiver's; what follows belongs to its result
                sub_kind = kind if len(attrs) == 1 else ("call" if isinstance(
                    self._parents.get(id(self._attr_of(node, len(attrs) - 1))), ast.Call) else "read")
                first_call = call if len(attrs) == 1 else None
                self._add(typed[0], (typed[1], attrs[0]), True, sub_kind, node, first_call)
        self.generic_visit(node)

    @staticmethod
    def _attr_of(node: ast.Attribute, depth: int) -> ast.AST:
        cur: ast.AST = node
        for _ in range(depth):
            cur = cur.value  # type: ignore[attr-defined]
        return cur


def collect(paths: list[Path] | None = None) -> tuple[list[Usage], dict[str, set[str]]]:
    """Usages and subclass overrides in `paths` (default: every module of deploy/trt)."""
    paths = paths or sorted(PACKAGE_DIR.glob("*.py"))
    usages: list[Usage] = []
    overrides: dict[str, set[str]] = {}
    for path in paths:
        collector = _Collector(path.name)
        collector.collect(ast.parse(path.read_text(), filename=str(path)))
        usages += collector.usages
        for base, methods in collector.overrides.items():
            overrides.setdefault(base, set()).update(methods)
    return usages, overrides
