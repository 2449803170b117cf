"""`trtdeploy doctor`: is this device set up to build and run engines, and which of a bundle's
engines can it load?

It reports what it finds even when TensorRT, pycuda, the driver or the GPU are missing (each
absence is a problem with the fix, not a traceback): TensorRT's version and where it loads from,
the CUDA driver, every GPU (compute capability, memory), the DLA cores, pycuda and numpy, what
this TensorRT can build (explicit and implicit INT8, version- and hardware-compatible engines,
DLA), and for a bundle, each engine checked against its sidecar as the runtime would.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from ..env import tool_versions
from ..errors import DeployError
from .cuda import import_cuda, primary_context
from .dla import check_engine_dla, dla_refusal
from .logger import make_logger
from .machine import driver_version, gpu_device, integrated_gpu
from .versions import import_tensorrt, supports_implicit_int8


def check_tensorrt() -> tuple[ModuleType | None, dict[str, Any], list[str]]:
    """The TensorRT module (or None), what to report about it, and its problems. A release
    this package cannot drive (before 10) or an unreadable version fails the import itself."""
    try:
        trt = import_tensorrt()
    except DeployError as e:
        return None, {"version": None, "path": None, "error": str(e)}, [str(e)]
    return trt, {"version": str(trt.__version__), "path": getattr(trt, "__file__", None), "error": None}, []


def check_cuda() -> tuple[ModuleType | None, dict[str, Any], list[dict[str, Any]], list[str]]:
    """pycuda's driver module (or None), the driver (and whether GPU 0, the one builds use, is a
    Jetson's integrated GPU), every GPU, and the problems found."""
    try:
        cuda = import_cuda()
    except DeployError as e:
        return None, {"driver_version": None, "jetson": None, "error": str(e)}, [], [str(e)]
    jetson = integrated_gpu(cuda) if cuda.Device.count() else None
    info = {"driver_version": driver_version(cuda), "jetson": jetson, "error": None}
    gpus = [gpu_device(cuda, i).to_json() for i in range(cuda.Device.count())]
    problems = [] if gpus else ["pycuda sees no CUDA device: check `nvidia-smi` (containers: --gpus all or "
                                "--runtime nvidia)"]
    return cuda, info, gpus, problems


def count_dla_cores(trt: ModuleType, cuda: ModuleType) -> tuple[int | None, list[str]]:
    """DLA cores as TensorRT's builder counts them; None (and the problem) when no builder can be made."""
    try:
        with primary_context(cuda):
            builder = trt.Builder(make_logger(trt))
            return int(builder.num_DLA_cores), []
    except (TypeError, cuda.Error) as e:  # "factory function returned nullptr": TensorRT cannot use this GPU
        return None, [f"TensorRT cannot create a builder on GPU 0 ({e}): check the driver against TensorRT's "
                      "support matrix and `nvidia-smi`"]


def supported(version: str | None, dla_cores: int | None, jetson: bool | None) -> dict[str, bool | None]:
    """What this TensorRT can build here; None where it cannot be told (no TensorRT; for the
    portable engines, no GPU to tell a Jetson by)."""
    if version is None:
        return dict.fromkeys(("fp16", "explicit_int8", "implicit_int8", "version_compatible", "hardware_compat",
                              "dla"))
    # Every TensorRT that imports (10.x, 11.x) builds version- and hardware-compatible engines, but
    # not on a Jetson: hardware compatibility "is not supported on NVIDIA DRIVE OS or JetPack"
    # (developer guide, "Hardware Compatibility"), and version compatibility is refused there as
    # with --dla-core (see dla.py).
    portable = None if jetson is None else not jetson
    return {"fp16": True, "explicit_int8": True, "implicit_int8": supports_implicit_int8(version),
            "version_compatible": portable, "hardware_compat": portable,
            "dla": dla_refusal(version) is None and bool(dla_cores)}


def _inspection_lines(plan: Path) -> list[str] | None:
    """What the engine runs, from its layers file (a damaged one does not stop the engine loading)."""
    from .inspection import load_summary

    try:
        summary = load_summary(plan)
    except DeployError as e:
        return [str(e)]
    return summary.lines() if summary is not None else None


def check_engine(plan: Path, trt_version: str | None, gpu_cc: str | None, dla_cores: int | None) -> dict[str, Any]:
    """One engine as the runtime would check it: sidecar, TensorRT version, GPU, DLA core, plan hash."""
    from .sidecar import check_compatible, load_plan, read_sidecar

    entry: dict[str, Any] = {"plan": plan.name, "loadable": None, "reason": None}
    try:
        sidecar = read_sidecar(plan)
        entry.update(precision=sidecar.precision, mode=sidecar.mode, tensorrt=sidecar.tensorrt,
                     compute_capability=sidecar.compute_capability, dla_core=sidecar.dla_core)
        entry["inspection"] = _inspection_lines(plan)
        load_plan(plan, sidecar)
        if trt_version is None or gpu_cc is None:
            entry["reason"] = "not checked: " + ("no TensorRT" if trt_version is None else "no GPU")
            return entry
        check_compatible(sidecar, trt_version, gpu_cc, plan)
        if sidecar.dla_core is not None and dla_cores is not None:
            check_engine_dla(sidecar, dla_cores, plan)
    except DeployError as e:
        entry.update(loadable=False, reason=str(e))
        return entry
    entry["loadable"] = True
    return entry


def check_bundle(path: Path, trt_version: str | None, gpu_cc: str | None, dla_cores: int | None
                 ) -> tuple[dict[str, Any], list[str]]:
    from ..bundle import open_bundle

    try:
        bundle = open_bundle(path)
    except DeployError as e:
        return {"path": str(path), "engines": [], "error": str(e)}, [str(e)]
    engines = [check_engine(p, trt_version, gpu_cc, dla_cores) for p in bundle.engines()]
    problems = [e["reason"] for e in engines if e["loadable"] is False]
    return {"path": str(path), "model": bundle.model_name, "engines": engines, "error": None}, problems


def diagnose(bundle: str | Path | None = None) -> dict[str, Any]:
    """The doctor's report: every finding, `problems` (one line each) and `ready`."""
    trt, tensorrt, problems = check_tensorrt()
    cuda, driver, gpus, cuda_problems = check_cuda()
    problems += cuda_problems
    dla_cores = None
    if trt is not None and cuda is not None and gpus and not problems:
        dla_cores, builder_problems = count_dla_cores(trt, cuda)
        problems += builder_problems
    tensorrt["dla_cores"] = dla_cores
    versions = tool_versions()  # installed, as every JSON we write records them; importable is checked above
    report: dict[str, Any] = {
        "tensorrt": tensorrt, "cuda": driver, "gpus": gpus,
        "packages": {name: versions.get(name) for name in ("numpy", "pycuda")},
        "supports": supported(tensorrt["version"], dla_cores, driver["jetson"]), "bundle": None,
    }
    if bundle is not None:
        gpu_cc = gpus[0]["compute_capability"] if gpus else None
        report["bundle"], bundle_problems = check_bundle(Path(bundle), tensorrt["version"], gpu_cc, dla_cores)
        problems += bundle_problems
    report.update(problems=problems, ready=not problems)
    return report


def _yes(flag: bool | None) -> str:
    return {True: "yes", False: "no", None: "unknown"}[flag]


def format_report(report: dict[str, Any]) -> list[str]:
    """The report as lines for people."""
    t, c = report["tensorrt"], report["cuda"]
    lines = [f"TensorRT     {t['version']} ({t['path']})" if t["version"] else f"TensorRT     not usable: {t['error']}",
             f"CUDA driver  {c['driver_version']}" if c["driver_version"] else f"CUDA driver  not usable: {c['error']}"]
    lines += [f"GPU {g['index']}        {g['name']} ({g['compute_capability']}), {g['memory_mib']} MiB"
              for g in report["gpus"]] or ["GPU          none"]
    dla = t["dla_cores"] if t["dla_cores"] is not None else "unknown (needs TensorRT and a GPU)"
    lines.append(f"DLA cores    {dla}")
    p = report["packages"]
    lines.append(f"packages     numpy {p['numpy'] or 'missing'}, pycuda {p['pycuda'] or 'missing'}")
    s = report["supports"]
    lines.append(f"can build    FP16 {_yes(s['fp16'])}; INT8 explicit (Q/DQ) {_yes(s['explicit_int8'])}; INT8 implicit "
                 f"(calibration cache) {_yes(s['implicit_int8'])}; version-compatible {_yes(s['version_compatible'])}; "
                 f"hardware-compatible {_yes(s['hardware_compat'])} (not on Jetson); DLA {_yes(s['dla'])}")
    b = report["bundle"]
    if b is not None:
        lines.append(f"bundle       {b['path']}: " + (b["error"] or f"{len(b['engines'])} engine(s)"
                                                     + ("" if b["engines"] else "; build one with `trtdeploy build`")))
        for e in b["engines"]:
            state = {True: "loads here", False: "cannot load here", None: e["reason"]}[e["loadable"]]
            lines.append(f"  {e['plan']}: {state}")
            lines += [f"    {line}" for line in e.get("inspection") or ()]
    n = len(report["problems"])
    lines.append("ready" if report["ready"] else f"not ready: {n} problem{'s' if n > 1 else ''} (below)")
    return lines
