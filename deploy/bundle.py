"""The bundle: one directory that travels from the workstation to the device.

Layout: everything the device needs, each file hashed in the manifest and written
atomically (a temporary beside it, then a rename), so no half-written file ever has its
final name::

    manifest.json  model.onnx  model.fp16.onnx  model.int8.onnx  reference.npz
    saved_model/   calibration/  engines/  reports/

This module needs only the standard library, so the device side can read bundles.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError
from .fsutil import atomic_write_json, sha256_file, sha256_tree

MANIFEST = "manifest.json"
FORMAT_VERSION = 1

# The bundle's layout and precisions, named once: every stage finds its files through these.
PRECISIONS = ("fp32", "fp16", "int8")
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
REFERENCE_NPZ = "reference.npz"
SCALES_JSON = "calibration/scales.json"
TRT_CACHE = "calibration/trt.cache"
DATASET_JSON = "calibration/dataset.json"


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
    for key in ("preprocessing", "files", "end_points"):
        if key in m and not isinstance(m[key], dict):
            return f"{key!r} must be an object"
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


class Bundle:
    """A bundle directory and its manifest."""

    def __init__(self, root: str | Path, manifest: dict[str, Any] | None = None):
        self.root = Path(root)
        if manifest is None:
            path = self.root / MANIFEST
            if not path.is_file():
                raise BundleError(
                    f"{self.root}: not a bundle (no {MANIFEST}); create one with `trtdeploy export --out {self.root}`"
                )
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise BundleError(f"{path}: unreadable manifest ({e}); re-run `trtdeploy export`") from None
            check_manifest(manifest, path)
        self.manifest = manifest

    # --- paths -----------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def onnx_path(self, precision: str = "fp32") -> Path:
        try:
            rel = ONNX_FILES[precision]
        except KeyError:
            raise BundleError(f"unknown precision {precision!r}; use one of {', '.join(ONNX_FILES)}") from None
        p = self.root / rel
        if not p.is_file():
            hint = {"fp32": "trtdeploy export", "fp16": f"trtdeploy fp16 {self.root}",
                    "int8": f"trtdeploy calibrate {self.root} --data DIR"}[precision]
            raise BundleError(f"{p}: missing; make it with `{hint}`")
        return p

    @property
    def engines_dir(self) -> Path:
        return self.root / "engines"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    # --- manifest views --------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.manifest["model"]["name"]

    @property
    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo.from_json(d) for d in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo.from_json(d) for d in self.manifest["outputs"]]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.manifest["preprocessing"]

    @property
    def label_offset(self) -> int:
        return int(self.manifest.get("label_offset", 0))

    @property
    def num_classes(self) -> int | None:
        n = self.manifest["model"].get("num_classes")
        return None if n is None else int(n)

    @property
    def class_outputs(self) -> list[str]:
        """Outputs with one score per class, `[N, num_classes]` (logits, predictions); none for a
        backbone whose outputs are feature maps (`--outputs resnet_v2_50/block3`)."""
        n = self.num_classes
        return [o.name for o in self.outputs if n is not None and tuple(o.shape[1:]) == (n,)]

    @property
    def warnings(self) -> list[str]:
        return model_warnings(self.manifest["model"])

    # --- writing -----------------------------------------------------------
    def record_file(self, rel: str) -> str:
        """Hash a file or directory of the bundle into the manifest and return the hash."""
        p = self.root / rel
        digest = sha256_tree(p) if p.is_dir() else sha256_file(p)
        self.manifest.setdefault("files", {})[rel] = digest
        return digest

    def file_hash(self, rel: str) -> str | None:
        return self.manifest.get("files", {}).get(rel)

    def verify_file(self, rel: str) -> None:
        """Refuse a file that changed since the manifest recorded it."""
        want = self.file_hash(rel)
        p = self.root / rel
        if want is None or not p.exists():
            return
        got = sha256_tree(p) if p.is_dir() else sha256_file(p)
        if got != want:
            raise BundleError(
                f"{p}: changed since the manifest recorded it (sha256 {got[:12]} != {want[:12]}); "
                "re-run the step that makes it"
            )

    def save(self) -> None:
        atomic_write_json(self.root / MANIFEST, self.manifest)


def open_bundle(root: str | Path) -> Bundle:
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory; create one with `trtdeploy export --out {root}`")
    return Bundle(root)
