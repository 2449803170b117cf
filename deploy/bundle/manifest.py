"""The manifest: what a bundle holds, checked once when the bundle is opened, so every later
`manifest[...]` can trust its shape. Standard library only."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BundleError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TensorInfo:
    """An input or output of the exported model, as the manifest records it."""

    name: str
    shape: tuple[int, ...]  # -1 marks a dynamic dimension (the batch)
    dtype: str
    layout: str | None = None  # "NCHW" / "NHWC" for image inputs

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TensorInfo":
        return cls(d["name"], tuple(int(x) for x in d["shape"]), d["dtype"], d.get("layout"))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.layout:
            d["layout"] = self.layout
        return d


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _tensor_problem(where: str, d: Any) -> str | None:
    if not isinstance(d, dict):
        return f"{where} is {type(d).__name__}, not an object"
    if not isinstance(d.get("name"), str) or not isinstance(d.get("dtype"), str):
        return f"{where} needs a string 'name' and 'dtype'"
    shape = d.get("shape")
    if not isinstance(shape, list) or not all(_is_int(x) for x in shape):
        return f"{where}.shape must be a list of integers (-1 for the batch), got {shape!r}"
    if d.get("layout") is not None and not isinstance(d["layout"], str):
        return f"{where}.layout must be a string"
    return None


def manifest_problem(m: Any) -> str | None:
    """What makes `m` not a manifest this version reads (None: it is one).

    Checked once, when a bundle is opened, so every later `manifest[...]` can trust its shape.
    """
    if not isinstance(m, dict):
        return f"the manifest is a JSON {type(m).__name__}, not an object"
    missing = [k for k in ("format", "model", "inputs", "outputs", "preprocessing") if k not in m]
    if missing:
        return f"no {', '.join(repr(k) for k in missing)}"
    if not _is_int(m["format"]):
        return f"'format' must be an integer, got {m['format']!r}"
    if m["format"] != FORMAT_VERSION:
        return (f"manifest format {m['format']}, but this trtdeploy reads format {FORMAT_VERSION} "
                "(open it with the trtdeploy that wrote it)")
    model = m["model"]
    # num_classes null: a backbone exported with --outputs, whose outputs are feature maps.
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or "num_classes" not in model \
            or not (model["num_classes"] is None or _is_int(model["num_classes"])):
        return ("'model' must be an object with a string 'name' and an integer 'num_classes' "
                "(null for a backbone without classes)")
    if "family" in model and not isinstance(model["family"], str):
        return f"'model.family' must be a string, got {model['family']!r}"
    if "spec" in model and not isinstance(model["spec"], dict):
        return "'model.spec' must be an object (the net's spec, as `export --spec` reads it)"
    for key in ("inputs", "outputs"):
        if not isinstance(m[key], list) or not m[key]:
            return f"{key!r} must be a non-empty list of tensors"
        for i, d in enumerate(m[key]):
            problem = _tensor_problem(f"{key}[{i}]", d)
            if problem:
                return problem
    for key in ("preprocessing", "files", "file_stats", "end_points"):
        if key in m and not isinstance(m[key], dict):
            return f"{key!r} must be an object"
    if not all(isinstance(v, str) for v in m.get("files", {}).values()):
        return "'files' must map each file to its sha256"
    if "label_offset" in m and not _is_int(m["label_offset"]):
        return f"'label_offset' must be an integer, got {m['label_offset']!r}"
    return None


def check_manifest(m: Any, path: Path) -> None:
    problem = manifest_problem(m)
    if problem:
        raise BundleError(f"{path}: not a valid bundle manifest: {problem}; re-run `trtdeploy export`")


def model_warnings(model: dict[str, Any]) -> list[str]:
    """What to know before trusting any result of this model, from the manifest's `model`:
    shown by export, infer and parity (text, JSON and HTML) alike."""
    out = []
    if model.get("weights") == "random":
        out.append("seeded random weights, not a trained model: its classes and scores mean nothing "
                   "(export with --checkpoint)")
    trained, size = model.get("trained_image_size"), model.get("image_size")
    if trained and size and list(trained) != list(size):
        out.append(f"exported at {size[0]}x{size[1]}, but the weights were trained at {trained[0]}x{trained[1]}: "
                   f"expect poor accuracy (export at {trained[0]}x{trained[1]}, i.e. without --image-size)")
    return out


# --- typed readers of the manifest's sections -----------------------------------------------


@dataclass(frozen=True)
class ModelRecord:
    """The manifest's `model`: the net, its classes, where its weights came from."""

    name: str
    num_classes: int | None
    family: str | None = None
    weights: str | None = None  # "checkpoint" | "random" | ...
    image_size: list[int] | None = None
    trained_image_size: list[int] | None = None
    spec: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelRecord":
        return cls(name=d["name"], num_classes=d.get("num_classes"), family=d.get("family"), weights=d.get("weights"),
                   image_size=d.get("image_size"), trained_image_size=d.get("trained_image_size"), spec=d.get("spec"))


@dataclass(frozen=True)
class Fp16Record:
    """The manifest's `precision.fp16`: the nodes `trtdeploy fp16` kept in FP32, and why."""

    kept_fp32: tuple[str, ...]
    reasons: dict[str, str]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Fp16Record":
        return cls(kept_fp32=tuple(d.get("kept_fp32") or ()), reasons=dict(d.get("kept_fp32_reasons") or {}))


@dataclass(frozen=True)
class Int8Record:
    """The manifest's `precision.int8`: how model.int8.onnx and trt.cache were made; with
    evaluation images, how the method and the float layers were chosen (`evaluation`, `auto`,
    `budget`: calibration/selection.py writes them)."""

    method: str | None
    algorithm: str | None = None
    percentile: float | None = None
    num_images: int | None = None
    keep_fp32: tuple[str, ...] = ()
    requested_method: str | None = None
    evaluation: dict[str, Any] | None = None
    auto: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Int8Record":
        keep = d.get("keep_fp32", d.get("exclude"))  # `exclude`: the field's name before --keep-fp32
        return cls(method=d.get("method"), algorithm=d.get("algorithm"), percentile=d.get("percentile"),
                   num_images=d.get("num_images"), keep_fp32=tuple(keep or ()),
                   requested_method=d.get("requested_method"),
                   evaluation=d.get("evaluation") if isinstance(d.get("evaluation"), dict) else None,
                   auto=d.get("auto"), budget=d.get("budget"))
