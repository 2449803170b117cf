"""The JSON written beside every engine, and the checks made before TensorRT sees a plan.

A serialized engine runs only on the TensorRT release and GPU it was built for, and
TensorRT's own refusal is a `None` plus a log line. So `trtdeploy build` records what the
engine needs in `engines/NAME.PRECISION.json`, and the runtime checks it first:

- TensorRT version. A default engine needs exactly the version that built it (TensorRT
  compares the full version). A version-compatible engine (`--version-compatible`) is
  accepted by a runtime of the same major version that is newer or equal; that is the
  rule we enforce, stricter than nothing and never looser than NVIDIA documents.
- GPU. A default engine needs the same compute capability (sm_87 engines run on sm_87
  only). A hardware-compatible engine (`--hardware-compat ampere+`) runs on any GPU with
  compute capability 8.0 or higher. (TensorRT does not support hardware compatibility on
  Jetson/JetPack; the builder refuses there, so no such sidecar exists.)
- The plan's sha256 must match the sidecar: a swapped or half-copied plan is refused.

Pure logic: no TensorRT, no pycuda.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..bundle.engines import sidecar_path  # the layout is named once, there
from ..errors import EngineError
from ..fsutil import sha256_bytes
from .cuda import parse_sm
from .versions import parse_release

FORMAT_VERSION = 1
HARDWARE_COMPAT_MIN_SM = {"ampere+": 80}


@dataclass(frozen=True)
class IOTensor:
    """One engine input or output, as the engine reports it."""

    name: str
    mode: str  # "input" | "output"
    dtype: str  # numpy dtype name
    shape: tuple[int, ...]  # -1 marks a dynamic dimension
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None  # inputs: (min, opt, max)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "IOTensor":
        profile = d.get("profile")
        return cls(
            d["name"], d["mode"], d["dtype"], tuple(int(x) for x in d["shape"]),
            tuple(tuple(int(x) for x in s) for s in profile) if profile else None,  # type: ignore[arg-type]
        )

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "mode": self.mode, "dtype": self.dtype, "shape": list(self.shape)}
        if self.profile is not None:
            d["profile"] = [list(s) for s in self.profile]
        return d


@dataclass(frozen=True)
class Sidecar:
    plan: str  # file name of the plan, beside this JSON
    plan_sha256: str
    model: str
    tensorrt: str  # trt.__version__ of the builder
    gpu_name: str
    compute_capability: str  # "sm_87"
    precision: str  # fp32 | fp16 | int8
    mode: str  # "explicit": precision from the ONNX (FP16, Q/DQ); "implicit": builder flags + calibrator
    version_compatible: bool
    hardware_compat: str | None  # None | "ampere+"
    batch: tuple[int, int, int]  # (min, opt, max) of the optimization profile
    io: tuple[IOTensor, ...]
    onnx: str  # bundle-relative path of the ONNX the engine was built from
    onnx_sha256: str
    calibration_cache_sha256: str | None = None
    build_seconds: float = 0.0
    timing_cache: dict[str, Any] = field(default_factory=dict)
    builder: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION
    # Added after format 1 shipped, so optional: sidecars without them still load.
    dla_core: int | None = None  # the DLA core the engine runs on (Jetson); None: GPU only
    gpu_fallback: bool = False  # DLA build that lets unsupported layers run on the GPU
    layers: str | None = None  # file name of the engine's layer information, beside the plan

    @property
    def inputs(self) -> tuple[IOTensor, ...]:
        return tuple(t for t in self.io if t.mode == "input")

    @property
    def outputs(self) -> tuple[IOTensor, ...]:
        return tuple(t for t in self.io if t.mode == "output")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["batch"] = list(self.batch)
        d["io"] = [t.to_json() for t in self.io]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "sidecar") -> "Sidecar":
        if not isinstance(d, dict):  # a JSON list or number: AttributeError further down, before
            raise EngineError(f"{source}: not an engine sidecar (a JSON {type(d).__name__}, not an object); rebuild "
                              "the engine with `trtdeploy build`")
        try:
            if int(d.get("format", 0)) != FORMAT_VERSION:
                raise EngineError(
                    f"{source}: sidecar format {d.get('format')!r}, this trtdeploy reads {FORMAT_VERSION}; "
                    "rebuild the engine with `trtdeploy build`"
                )
            return cls(
                plan=d["plan"], plan_sha256=d["plan_sha256"], model=d["model"], tensorrt=d["tensorrt"],
                gpu_name=d["gpu_name"], compute_capability=d["compute_capability"], precision=d["precision"],
                mode=d["mode"], version_compatible=bool(d["version_compatible"]),
                hardware_compat=d.get("hardware_compat"),
                batch=tuple(int(x) for x in d["batch"]),  # type: ignore[arg-type]
                io=tuple(IOTensor.from_json(t) for t in d["io"]),
                onnx=d["onnx"], onnx_sha256=d["onnx_sha256"],
                calibration_cache_sha256=d.get("calibration_cache_sha256"),
                build_seconds=float(d.get("build_seconds", 0.0)),
                timing_cache=dict(d.get("timing_cache") or {}), builder=dict(d.get("builder") or {}),
                dla_core=None if d.get("dla_core") is None else int(d["dla_core"]),
                gpu_fallback=bool(d.get("gpu_fallback", False)), layers=d.get("layers"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise EngineError(
                f"{source}: not a valid engine sidecar ({type(e).__name__}: {e}); rebuild the engine with "
                "`trtdeploy build`"
            ) from None


def bundle_of(plan_path: str | Path) -> str:
    """The bundle directory a plan lives in (BUNDLE/engines/x.plan), for messages."""
    p = Path(plan_path)
    return str(p.parent.parent) if p.parent.name == "engines" else "BUNDLE"


def rebuild_command(sidecar: Sidecar, bundle: str) -> str:
    """The `trtdeploy build` line that makes an engine like this one again."""
    parts = ["trtdeploy build", bundle, "--precision", sidecar.precision]
    if sidecar.mode == "implicit":
        parts += ["--int8-mode", "implicit"]
    parts += ["--batch", *(str(b) for b in sidecar.batch)]
    if sidecar.version_compatible:
        parts.append("--version-compatible")
    if sidecar.hardware_compat:
        parts += ["--hardware-compat", sidecar.hardware_compat]
    if sidecar.builder.get("tf32"):
        parts.append("--tf32")
    if sidecar.dla_core is not None:
        parts += ["--dla-core", str(sidecar.dla_core)] + (["--gpu-fallback"] if sidecar.gpu_fallback else [])
    return " ".join(parts)


def read_sidecar(plan_path: str | Path) -> Sidecar:
    plan = Path(plan_path)
    path = sidecar_path(plan)
    if not plan.is_file():
        raise EngineError(
            f"{plan}: no such engine file; build one with `trtdeploy build {bundle_of(plan)} --precision PRECISION`"
        )
    if not path.is_file():
        raise EngineError(
            f"{plan}: no sidecar {path.name} beside it; engines are loaded only with the JSON "
            f"`trtdeploy build` writes (TensorRT version, GPU, hashes): rebuild with "
            f"`trtdeploy build {bundle_of(plan)} --precision PRECISION`"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"{path}: unreadable sidecar ({e}); rebuild the engine with `trtdeploy build`") from None
    return Sidecar.from_json(data, source=str(path))


def version_accepts(sidecar: Sidecar, runtime_version: str) -> bool:
    """Whether a TensorRT runtime of `runtime_version` loads this engine (see module doc)."""
    try:
        built, here = parse_release(sidecar.tensorrt), parse_release(runtime_version)
    except ValueError:
        return False
    if sidecar.version_compatible:
        return here.major == built.major and here >= built
    return here == built


def gpu_accepts(sidecar: Sidecar, gpu_cc: str) -> bool:
    """Whether a GPU of compute capability `gpu_cc` ("sm_90") runs this engine."""
    if sidecar.hardware_compat:
        return parse_sm(gpu_cc) >= HARDWARE_COMPAT_MIN_SM[sidecar.hardware_compat]
    return parse_sm(gpu_cc) == parse_sm(sidecar.compute_capability)


def check_compatible(sidecar: Sidecar, trt_version: str, gpu_cc: str, plan_path: str | Path | None = None) -> None:
    """Raise EngineError, naming the plan and the rebuild command, unless this TensorRT
    and this GPU can run the engine."""
    plan = Path(plan_path) if plan_path is not None else Path(sidecar.plan)
    if sidecar.hardware_compat is not None and sidecar.hardware_compat not in HARDWARE_COMPAT_MIN_SM:
        raise EngineError(
            f"{plan}: sidecar names hardware compatibility {sidecar.hardware_compat!r}, known: "
            f"{', '.join(HARDWARE_COMPAT_MIN_SM)}; rebuild with `{rebuild_command(sidecar, bundle_of(plan))}`"
        )
    reasons = []
    if not version_accepts(sidecar, trt_version):
        reasons.append(
            f"a version-compatible engine needs TensorRT {sidecar.tensorrt.split('.')[0]}.x >= {sidecar.tensorrt}"
            if sidecar.version_compatible else "the engine needs the exact TensorRT version that built it"
        )
    if not gpu_accepts(sidecar, gpu_cc):
        reasons.append(
            f"a hardware-compatible ({sidecar.hardware_compat}) engine needs "
            f"sm_{HARDWARE_COMPAT_MIN_SM[sidecar.hardware_compat]} or newer"
            if sidecar.hardware_compat else "the engine needs the compute capability it was built for"
        )
    if reasons:
        raise EngineError(
            f"{plan}: built with TensorRT {sidecar.tensorrt} for {sidecar.compute_capability}; "
            f"this is TensorRT {trt_version} on {gpu_cc} ({'; '.join(reasons)}): "
            f"rebuild with `{rebuild_command(sidecar, bundle_of(plan))}`"
        )


def load_plan(plan_path: str | Path, sidecar: Sidecar) -> bytes:
    """The plan's bytes, refused unless their sha256 is the one the sidecar recorded."""
    plan = Path(plan_path)
    try:
        data = plan.read_bytes()
    except OSError as e:
        raise EngineError(f"{plan}: cannot read the engine ({e.strerror})") from None
    got = sha256_bytes(data)
    if got != sidecar.plan_sha256:
        raise EngineError(
            f"{plan}: sha256 {got[:12]} does not match its sidecar ({sidecar.plan_sha256[:12]}): the plan was "
            f"swapped or half-copied; copy it again together with its .json, or rebuild with "
            f"`{rebuild_command(sidecar, bundle_of(plan))}`"
        )
    return data
