"""Every TensorRT and pycuda name deploy/trt uses, checked against the REAL bindings.

The bindings are the PyPI wheels tensorrt-cu12-bindings==10.16.1.11 (TensorRT 10) and
tensorrt-cu13-bindings==11.4.0.106 (TensorRT 11), loaded against generated stand-in
libnvinfer/libnvonnxparser/libnvinfer_plugin (every symbol a stub), and pycuda 2026.1
built against a stand-in libcuda; `python tools/trt_standin.py [--pycuda]` prepares them
under .cache/. They are imported in subprocesses only, so no importable `tensorrt` leaks
into this process (the gpu-skip logic looks for one).

This checks names, kinds (class, enum member, property, method) and call signatures from
the bindings' docstrings, not behaviour: nothing can run without the real libraries.
The list of names is collected from the source (deploy/trt/api_surface.py), so it
cannot drift from the code.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.trt.api_surface import OVERRIDES, TRT10_ONLY_FUNCTIONS, Usage, collect
from deploy.trt.build import BuildConfig, plan_network
from deploy.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
VERSIONS = {"10": "10.16.1.11", "11": "11.4.0.106"}
PREPARE = "run `python tools/trt_standin.py --pycuda` (needs pip, gcc, binutils; CI's .ci/run does it)"

PROBE = r"""
import inspect, json, sys
which = sys.argv[1]
if which == "trt":
    import tensorrt_bindings as module
else:
    import pycuda.driver as module
out = {}
for chain in json.loads(sys.stdin.read()):
    obj, found = module, True
    for name in chain:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            found = False
            break
    info = {"exists": found}
    if found:
        info["is_class"] = isinstance(obj, type)
        info["is_property"] = isinstance(obj, property)
        info["settable"] = isinstance(obj, property) and obj.fset is not None
        target = obj.__init__ if isinstance(obj, type) else obj
        if inspect.isfunction(target):  # pure-Python helpers (trt.nptype)
            info["doc"] = chain[-1] + str(inspect.signature(target))
        else:
            info["doc"] = getattr(target, "__doc__", None) or ""
        info["value"] = str(obj) if not callable(obj) else None
    out[".".join(chain)] = info
print(json.dumps(out))
"""


def env_for(which: str) -> dict[str, str] | None:
    target = CACHE / which
    standin = target / "standin"
    if not standin.is_dir() or not any(standin.glob("*.so*")):
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = str(target)
    env["LD_LIBRARY_PATH"] = str(standin)
    return env


def probe(which: str, chains: list[tuple[str, ...]]) -> dict[str, dict]:
    env = env_for(which)
    if env is None:
        pytest.skip(f"{CACHE / which}: no bindings with stand-in libraries; {PREPARE}")
    module = "trt" if which.startswith("trt") else "cuda"
    proc = subprocess.run([sys.executable, "-c", PROBE, module], input=json.dumps([list(c) for c in chains]),
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


# ------------------------------------------------------------------- signature parsing
def _matching_paren(text: str, start: int) -> int:
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced: {text}")


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur] if p.strip()]


def overloads(doc: str, name: str) -> list[list[tuple[str, bool]]]:
    """[(parameter, has_default), ...] per signature in a pybind11 or Boost.Python docstring."""
    sigs = []
    boost = "C++ signature" in doc
    for line in doc.splitlines():
        line = line.strip()
        head = line.split(". ", 1)[1] if line[:1].isdigit() and ". " in line else line
        if not head.startswith(name + "("):
            continue
        open_at = len(name)
        inner = head[open_at + 1:_matching_paren(head, open_at)]
        if "*args" in inner:
            continue  # pybind11's "Overloaded function." header; the numbered lines follow
        params = []
        if boost:  # ( (object)dest, (object)src [, (object)stream=None])
            optional = False
            # "[" opens the optional tail: move it past the comma onto the parameter it starts
            for token in inner.replace("]", "").replace("[,", ",[").split(","):
                if "[" in token:
                    optional = True
                token = token.replace("[", "").strip()
                if token:
                    pname = token.split(")", 1)[1] if ")" in token else token
                    params.append((pname.split("=")[0].strip(), optional or "=" in pname))
        else:  # (self: T, a: X, b: Y = 0)
            for p in _split_top(inner):
                params.append((p.split(":")[0].split("=")[0].strip(), " = " in p or "=" in p.split(":")[0]))
        sigs.append(params)
    return sigs


def accepts(params: list[tuple[str, bool]], nargs: int | None, keywords: tuple[str, ...], bound: bool) -> bool:
    if bound:
        params = params[1:]  # self
    if nargs is None:
        return True
    if nargs > len(params):
        return False
    rest = params[nargs:]
    names = {n for n, _ in rest}
    return all(k in names for k in keywords) and all(has_default or n in keywords for n, has_default in rest)


def test_signature_parsing_on_known_docstrings():
    pybind = ("set_timing_cache(self: tensorrt.IBuilderConfig, cache: tensorrt.ITimingCache, "
              "ignore_mismatch: bool) -> bool")
    (sig,) = overloads(pybind, "set_timing_cache")
    assert accepts(sig, 1, ("ignore_mismatch",), bound=True)
    assert not accepts(sig, 1, (), bound=True)  # ignore_mismatch has no default
    assert not accepts(sig, 1, ("ignore",), bound=True)
    boost = "memcpy_htod_async( (object)dest, (object)src [, (object)stream=None]) -> None :\n  C++ signature :"
    (sig,) = overloads(boost, "memcpy_htod_async")
    assert accepts(sig, 2, (), bound=False) and accepts(sig, 3, (), bound=False)
    assert not accepts(sig, 1, (), bound=False) and not accepts(sig, 4, (), bound=False)
    assert overloads("init([  (int)flags=0]) -> None :\n C++ signature :", "init") == [[("flags", True)]]


# ------------------------------------------------------------------- what the code uses
USAGES, OVERRIDDEN = collect()


def chains_of(module: str) -> list[tuple[str, ...]]:
    chains = {u.chain for u in USAGES if u.module == module}
    chains |= {c[:i] for c in chains for i in range(1, len(c))}
    return sorted(chains)


def test_collector_sees_the_calls_that_matter():
    seen = {(u.module, ".".join(u.chain), u.kind) for u in USAGES}
    for anchor in [
        ("trt", "Builder.build_serialized_network", "call"), ("trt", "OnnxParser.parse_from_file", "call"),
        ("trt", "IBuilderConfig.set_memory_pool_limit", "call"), ("trt", "IOptimizationProfile.set_shape", "call"),
        ("trt", "IExecutionContext.execute_async_v3", "call"), ("trt", "IExecutionContext.set_tensor_address", "call"),
        ("trt", "ICudaEngine.get_tensor_profile_shape", "call"), ("trt", "IBuilderConfig.int8_calibrator", "write"),
        ("trt", "BuilderFlag.INT8", "read"), ("trt", "IInt8EntropyCalibrator2", "subclass"),
        ("cuda", "memcpy_htod_async", "call"), ("cuda", "Device.retain_primary_context", "call"),
        ("cuda", "Context.pop", "call"), ("cuda", "Event.time_till", "call"), ("cuda", "Stream.handle", "read"),
        ("trt", "IProfiler", "subclass"), ("trt", "IExecutionContext.profiler", "write"),
        ("trt", "IExecutionContext.enqueue_emits_profile", "write"),
        ("trt", "IExecutionContext.report_to_profiler", "call"), ("cuda", "Device.get_attribute", "call"),
        ("cuda", "device_attribute.CLOCK_RATE", "read"), ("cuda", "get_driver_version", "call"),
        # a context of its own per CUDA graph, sharing user-managed activation memory
        ("trt", "ICudaEngine.create_execution_context", "call"), ("trt", "ICudaEngine.device_memory_size_v2", "read"),
        ("trt", "ExecutionContextAllocationStrategy.USER_MANAGED", "read"),
        ("trt", "IExecutionContext.set_device_memory", "call"), ("cuda", "device_attribute.INTEGRATED", "read"),
        ("trt", "BuilderFlag.FP16", "read"),
    ]:
        assert anchor in seen, f"{anchor} not collected: is the receiver-naming convention followed?"


def _problems(usages: list[Usage], info: dict[str, dict]) -> list[str]:
    problems = []
    for u in usages:
        key = ".".join(u.chain)
        got = info[key]
        if not got["exists"]:
            problems.append(f"{u.where}: {key} does not exist")
        elif u.kind == "write" and not got["settable"]:
            problems.append(f"{u.where}: {key} is not a settable property")
        elif u.kind == "call":
            bound = u.on_receiver or got["is_class"]
            sigs = overloads(got["doc"], "__init__" if got["is_class"] else u.chain[-1])
            if not sigs:
                problems.append(f"{u.where}: {key}: no signature in its docstring: {got['doc'][:200]!r}")
            elif not any(accepts(s, u.nargs, u.keywords, bound) for s in sigs):
                problems.append(f"{u.where}: {key} called with {u.nargs} positional and keywords {u.keywords}; "
                                f"signatures: {sigs}")
        elif u.kind == "read" and got["is_class"] is False and u.on_receiver and not got["is_property"]:
            if got["value"] is None:  # a method read as if it were a property
                problems.append(f"{u.where}: {key} is a method, used without calling it")
    return problems


@pytest.mark.parametrize("major", sorted(VERSIONS))
def test_bindings_are_the_real_ones(major):
    assert probe(f"trt{major}", [("__version__",)])["__version__"]["value"] == VERSIONS[major]


@pytest.mark.parametrize("major", sorted(VERSIONS))
def test_every_trt_name_exists_with_a_compatible_signature(major):
    info = probe(f"trt{major}", chains_of("trt"))
    usages = [u for u in USAGES if u.module == "trt" and u.chain != ("__version__",)]
    if major == "11":
        usages = [u for u in usages if u.function not in TRT10_ONLY_FUNCTIONS]
    assert _problems(usages, info) == []


def test_names_gone_in_11_are_used_only_on_the_10_path():
    info10 = probe("trt10", chains_of("trt"))
    info11 = probe("trt11", chains_of("trt"))
    gone = {k for k in info10 if info10[k]["exists"] and not info11[k]["exists"]}
    # What TensorRT 11 removed (its migration guide), as the real bindings show it.
    assert {"BuilderFlag.INT8", "BuilderFlag.FP16", "IBuilderConfig.int8_calibrator",
            "IBuilderConfig.set_calibration_profile", "IInt8EntropyCalibrator2"} <= gone
    outside = [f"{u.where}: {'.'.join(u.chain)}" for u in USAGES
               if u.module == "trt" and ".".join(u.chain) in gone and u.function not in TRT10_ONLY_FUNCTIONS]
    assert outside == []
    # ...and that path is refused on the real TensorRT 11 version string before any of it runs.
    version11 = probe("trt11", [("__version__",)])["__version__"]["value"]
    with pytest.raises(UsageError, match="TensorRT 11 removed"):
        plan_network(BuildConfig(precision="int8", int8_mode="implicit"), version11)
    assert plan_network(BuildConfig(precision="int8", int8_mode="implicit"), VERSIONS["10"]).implicit_int8


def test_trt10_only_functions_are_reached_only_behind_the_guard():
    """`_configure_implicit_int8` runs only under `if plan.implicit_int8`, `make_calibrator`
    only from it, and `_set_precision_flags` only under `if plan.precision_flags`, which
    plan_network leaves empty on TensorRT 11 (next test)."""
    source = (ROOT / "deploy" / "trt" / "build.py").read_text()
    tree = ast.parse(source)
    parents = {id(c): p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id in TRT10_ONLY_FUNCTIONS]
    assert calls, "no call sites found"
    for call in calls:
        node, guarded = call, False
        while id(node) in parents:
            node = parents[id(node)]
            if isinstance(node, ast.If) and any(g in ast.unparse(node.test) for g in ("implicit_int8",
                                                                                     "precision_flags")):
                guarded = True
            if isinstance(node, ast.FunctionDef) and node.name in TRT10_ONLY_FUNCTIONS:
                guarded = True
        assert guarded, f"build.py:{call.lineno}: {call.func.id} called outside the implicit-INT8 guard"


def test_precision_flags_are_planned_on_tensorrt_10_only():
    """Every build plan_network accepts on a TensorRT 11 release sets no BuilderFlag.FP16/INT8
    (gone there); on 10.x, implicit INT8 and DLA builds do."""
    configs = [BuildConfig(precision=p, **extra) for p in ("fp32", "fp16", "int8")
               for extra in ({}, {"dla_core": 0}, {"dla_core": 0, "gpu_fallback": True}) if not (p == "fp32" and extra)]
    configs.append(BuildConfig(precision="int8", int8_mode="implicit"))
    for version in ("11.4.0.106", "11.4.1.3", "11.5.0"):
        for config in configs:
            try:
                plan = plan_network(config, version)
            except UsageError:
                continue  # implicit INT8 on 11.x, DLA on 11.4.0
            assert plan.precision_flags == () and plan.strongly_typed, (version, config)
    flagged = {(c.precision, c.mode, c.dla_core): plan_network(c, "10.3.0.30").precision_flags for c in configs}
    assert flagged[("int8", "implicit", None)] == ("FP16", "INT8") and flagged[("fp16", "explicit", 0)] == ("FP16",)
    assert flagged[("fp16", "explicit", None)] == ()


@pytest.mark.parametrize("major", sorted(VERSIONS))
def test_overridden_methods_exist_on_the_tensorrt_bases(major):
    bases = [b for b in OVERRIDES if major == "10" or b not in ("IInt8EntropyCalibrator2",)]
    info = probe(f"trt{major}", [(b, m) for b in bases for m in OVERRIDES[b]])
    for base in bases:
        for method in OVERRIDES[base]:
            assert method in OVERRIDDEN.get(base, set()), f"our {base} subclass does not define {method}"
            assert info[f"{base}.{method}"]["exists"], f"TensorRT {major}: {base}.{method} missing"


# ------------------------------------------------------------------- pycuda
def test_every_pycuda_name_exists_with_a_compatible_signature():
    info = probe("pycuda", chains_of("cuda"))
    assert _problems([u for u in USAGES if u.module == "cuda"], info) == []


def test_pycuda_without_a_driver_is_a_tool_missing_error():
    env = env_for("pycuda")
    if env is None:
        pytest.skip(f"{CACHE / 'pycuda'}: no pycuda build; {PREPARE}")
    env["PYTHONPATH"] = os.pathsep.join([str(CACHE / "pycuda"), str(ROOT)])
    env.pop("LD_LIBRARY_PATH")  # no libcuda.so.1 at all, as in a container started without --gpus
    code = ("from deploy.trt.cuda import import_cuda\n"
            "from deploy.errors import ToolMissingError\n"
            "try:\n    import_cuda()\nexcept ToolMissingError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("no CUDA driver: pycuda cannot load it (libcuda.so.1"), proc.stdout
