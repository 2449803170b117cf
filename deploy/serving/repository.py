"""`trtdeploy triton`: a Triton model repository for the bundle.

Three models (model_repository.md: `REPO/<model>/config.pbtxt`, numbered version directories,
`model.plan` / `model.onnx` / `model.py` by default):

- NAME: the classifier, on the platform asked for (`tensorrt_plan`, `onnxruntime_onnx`, or
  `python`, which runs trtdeploy's own runners inside Triton's python backend);
- NAME_preprocess: the bundle's preprocessing, from encoded image bytes (python backend);
- NAME_ensemble: image bytes -> class scores, the two above as ensemble steps.

Class outputs name their classes through `label_filename` (see `labels`). Each model directory
holds `.trtdeploy-model.json`: which bundle it came from and the sha256 of every file written,
so a later run knows the directory is its own and says what changed. A model directory without
it is the user's and is never replaced. The three are built in a temporary directory beside
REPO and then moved in, so no half-written model ever sits under its name. Standard library only.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundle import ONNX_FILES, Bundle
from ..errors import UsageError
from ..fsutil import sha256_bytes
from . import configs, engines as served, labels as names
from .pbtxt import render
from .vendor import VENDOR_DIR, vendored_files

MARKER = ".trtdeploy-model.json"
DEFAULT_ONNX_MAX_BATCH = 8  # ONNX and python models have no profile to take a batch limit from
# What each python-backend model imports from deploy (the vendor closure starts here).
PREPROCESS_MODULES = ("deploy.data.preprocess", "deploy.errors")
CLASSIFIER_MODULES = ("deploy.runners.ort", "deploy.trt.runtime", "deploy.errors")
_MODELS_DIR = Path(__file__).resolve().parent / "triton_models"
_TEXT = (".pbtxt", ".txt", ".json", ".py")


@dataclass(frozen=True)
class Model:
    name: str
    role: str  # what it is, for the summary
    files: dict[str, bytes]  # path relative to the model directory -> content


@dataclass(frozen=True)
class Written:
    root: Path
    models: tuple[Model, ...]
    precision: str
    max_batch: int
    changes: tuple[str, ...]  # one line per added, removed or changed file
    notes: tuple[str, ...]
    rewritten: bool  # the models were there before (a re-run)

    def summary(self) -> list[str]:
        lines = [f"wrote {self.root} ({self.precision}, max batch {self.max_batch}):"]
        lines += [f"  {m.name}: {m.role}" for m in self.models]
        if self.rewritten and not self.changes:
            lines.append("unchanged: the repository already held exactly these files")
        elif self.rewritten:
            lines += ["changed since the last run:"] + [f"  {c}" for c in self.changes]
        lines += [f"note: {n}" for n in self.notes]
        return lines


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def _template(name: str) -> bytes:
    return (_MODELS_DIR / name).read_bytes()


def _classifier_spec(bundle: Bundle) -> dict[str, Any]:
    (image,) = bundle.inputs
    return {"bundle": str(bundle.root), "model": bundle.model_name, "input": image.name,
            "outputs": [o.to_json() for o in bundle.outputs]}


def _onnx_bytes(bundle: Bundle, precision: str) -> bytes:
    return bundle.onnx_path(precision).read_bytes()  # checked against the manifest


def _classifier(bundle: Bundle, opts: configs.TritonOptions, name: str, label_text: bytes
                ) -> tuple[Model, str, int, list[str]]:
    """The classifier model, its precision, its max batch, and notes for the user."""
    notes: list[str] = []
    files = {configs.LABELS_FILE: label_text}
    if opts.platform == "tensorrt_plan" or (opts.platform == "python" and opts.engines):
        engines = served.load_engines(bundle, list(opts.engines), opts.precision)
        precision = engines[0].sidecar.precision
        max_batch = served.served_max_batch(engines, opts.max_batch)
        notes += [f"{e.plan.name} runs only where TensorRT {e.sidecar.tensorrt} serves it (the version that built it"
                  f"{', or a newer 10.x/11.x of the same major' if e.sidecar.version_compatible else ''})"
                  for e in engines]
    else:
        engines, precision = [], opts.precision or "fp32"
        max_batch = opts.max_batch or DEFAULT_ONNX_MAX_BATCH
    if opts.platform == "tensorrt_plan":
        opt = sorted({e.profile_batch[1] for e in engines if e.profile_batch[1] <= max_batch})
        config = configs.tensorrt_config(bundle, name, engines, opts, max_batch, opts.preferred_batch or opt)
        files.update({f"1/{f}": e.data for f, e in zip(configs.plan_file_names(engines), engines)})
        role = f"tensorrt_plan, {len(engines)} engine(s)"
    elif opts.platform == "onnxruntime_onnx":
        config = configs.onnx_config(bundle, name, opts, precision, max_batch)
        files["1/model.onnx"] = _onnx_bytes(bundle, precision)
        role = f"onnxruntime_onnx, {ONNX_FILES[precision]}"
    else:
        if len(engines) > 1:
            raise UsageError("--platform python serves one engine (its runner loads one plan); pass one --engine")
        runner, model_file = ("tensorrt", "model.plan") if engines else ("onnxruntime", "model.onnx")
        config = configs.python_config(bundle, name, opts, precision, max_batch, runner, model_file)
        if engines:
            files["1/model.plan"] = engines[0].data
            files["1/model.json"] = _json(engines[0].sidecar.to_json())  # the runner checks it first
        else:
            files["1/model.onnx"] = _onnx_bytes(bundle, precision)
        files.update({"1/model.py": _template("classifier.py"), "1/trtdeploy.json": _json(_classifier_spec(bundle)),
                      **{f"1/{k}": v for k, v in vendored_files(CLASSIFIER_MODULES).items()}})
        source = engines[0].plan.name if engines else ONNX_FILES[precision]
        role = f"python backend, trtdeploy's {runner} runner on {model_file} ({source})"
        notes.append("python-backend models need numpy and Pillow in the stub's Python (and onnxruntime for the "
                     "onnxruntime runner, tensorrt and pycuda for the tensorrt runner); Triton 24.10 (2.51) and "
                     "older build the stub with pybind11 2.10, which misreads numpy 2 arrays: give them numpy<2")
    files["config.pbtxt"] = render(config).encode()
    return Model(name, role, files), precision, max_batch, notes


def _preprocess(bundle: Bundle, opts: configs.TritonOptions, name: str, precision: str, max_batch: int) -> Model:
    (image,) = bundle.inputs
    spec = {"bundle": str(bundle.root), "preprocessing": bundle.preprocessing, "image_input": configs.IMAGE_INPUT,
            "input": image.name, "dtype": image.dtype}
    config = configs.preprocess_config(bundle, name, opts, precision, max_batch)
    files = {"config.pbtxt": render(config).encode(), "1/model.py": _template("preprocess.py"),
             "1/trtdeploy.json": _json(spec),
             **{f"1/{k}": v for k, v in vendored_files(PREPROCESS_MODULES).items()}}
    return Model(name, f"python backend, encoded images -> {image.name} ({bundle.preprocessing.get('preset')})", files)


def build_models(bundle: Bundle, opts: configs.TritonOptions) -> tuple[tuple[Model, ...], str, int, list[str]]:
    """Every model's files, checked, before anything is written."""
    name = opts.name or bundle.model_name
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"--name {name!r}: a model name is a plain directory name")
    label_text = names.triton_label_file(names.output_names(bundle, opts.labels)).encode()
    classifier, precision, max_batch, notes = _classifier(bundle, opts, name, label_text)
    preprocess = _preprocess(bundle, opts, f"{name}_preprocess", precision, max_batch)
    ensemble_config = configs.ensemble_config(bundle, f"{name}_ensemble", name, preprocess.name, precision, max_batch)
    ensemble = Model(f"{name}_ensemble", f"ensemble, {configs.IMAGE_INPUT} bytes -> "
                     f"{', '.join(o.name for o in bundle.outputs)}",
                     {"config.pbtxt": render(ensemble_config).encode(), configs.LABELS_FILE: label_text})
    return (classifier, preprocess, ensemble), precision, max_batch, notes


def _old_files(model_dir: Path) -> dict[str, str] | None:
    """sha256 of the files a previous run wrote there; None: not a directory trtdeploy wrote."""
    marker = model_dir / MARKER
    try:
        return dict(json.loads(marker.read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_ownership(root: Path, models: tuple[Model, ...]) -> None:
    if root.exists() and not root.is_dir():
        raise UsageError(f"--out {root}: exists and is not a directory; give a model repository directory")
    for m in models:
        d = root / m.name
        if d.exists() and _old_files(d) is None:
            raise UsageError(f"{d}: exists and was not written by `trtdeploy triton` (no {MARKER}); it is left "
                             "alone: choose another --name or --out")


def _diff(rel: str, old: bytes | None, new: bytes) -> str:
    if old is None or not rel.endswith(_TEXT):
        return f"changed: {rel} (sha256 {sha256_bytes(new)[:12]})"
    lines = [ln for ln in difflib.unified_diff(old.decode(errors="replace").splitlines(),
                                               new.decode(errors="replace").splitlines(), n=0, lineterm="")
             if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    shown = "; ".join(f"{ln[0]} {ln[1:].strip()}" for ln in lines[:6]) + (f"; ... {len(lines) - 6} more" if len(lines) > 6 else "")
    return f"changed: {rel}: {shown}"


def _changes(root: Path, models: tuple[Model, ...]) -> list[str]:
    out = []
    for m in models:
        old = _old_files(root / m.name)
        if old is None:
            out.append(f"added: {m.name}/")
            continue
        vendored = 0
        for rel, data in sorted(m.files.items()):
            if old.get(rel) == sha256_bytes(data):
                continue
            if rel.startswith(f"1/{VENDOR_DIR}/"):
                vendored += 1
            elif rel not in old:
                out.append(f"added: {m.name}/{rel}")
            else:
                previous = (root / m.name / rel).read_bytes() if (root / m.name / rel).is_file() else None
                out.append(_diff(f"{m.name}/{rel}", previous, data))
        out += [f"removed: {m.name}/{rel}" for rel in sorted(set(old) - set(m.files))]
        if vendored:
            out.append(f"changed: {m.name}: {vendored} file(s) of the bundled trtdeploy code")
    return out


def _materialize(model: Model, dest: Path, bundle: Bundle) -> None:
    (dest / "1").mkdir(parents=True)  # every model, an ensemble too, has a numbered version directory
    for rel, data in model.files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    marker = {"written_by": "trtdeploy triton", "bundle": str(bundle.root), "model": bundle.model_name,
              "files": {rel: sha256_bytes(data) for rel, data in sorted(model.files.items())}}
    (dest / MARKER).write_bytes(_json(marker))


def write_repository(bundle: Bundle, opts: configs.TritonOptions, out: str | os.PathLike) -> Written:
    """Build every model, then move each into `out`, replacing only what a previous run wrote."""
    root = Path(out)
    models, precision, max_batch, notes = build_models(bundle, opts)
    _check_ownership(root, models)
    rewritten = any((root / m.name).exists() for m in models)
    changes = _changes(root, models)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        for m in models:
            _materialize(m, staging / "new" / m.name, bundle)
        for m in models:
            final = root / m.name
            if final.exists():
                os.replace(final, staging / f"old-{m.name}")
            os.replace(staging / "new" / m.name, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Written(root, models, precision, max_batch, tuple(changes), tuple(notes), rewritten)
