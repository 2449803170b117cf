"""The bundle: one directory that travels from the workstation to the device.

Layout (deploy.bundle.layout): everything the device needs, each file hashed in the
manifest::

    manifest.json  model.onnx  model.fp16.onnx  model.int8.onnx  reference.npz
    saved_model/   calibration/  engines/  reports/

One truth at a time:

- A writer holds the bundle's lock (deploy.bundle.lock) from reading the manifest to
  committing, so two commands never interleave their updates.
- An update (`Bundle.update`) stages its files beside their final names and commits them
  with the manifest as one unit (`deploy.fsutil.commit_files`); a killed writer's update is
  completed, or its temporaries swept, by the next command that opens the bundle.
- Every reader takes its files through `Bundle.file(rel)`, which checks them against the
  manifest: size and modification time first, the sha256 when those differ (always with
  `verify=True`).

Standard library only, so the device side can read bundles.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from ..errors import BundleError
from ..fsutil import (atomic_write_json, commit_files, file_stat, json_text, recover, remove_path, sha256_file,
                      sha256_tree, sweep_temps, temp_name, write_bytes_to, write_error)
from .layout import (CALIBRATION_FILES, DATASET_JSON, ENGINES_DIR, JOURNAL, MANIFEST, ONNX_FILES, PRECISIONS,
                     REFERENCE_NPZ, REPORTS_DIR, SAVED_MODEL, SCALES_JSON, TOP_LEVEL, TRT_CACHE, remake_command)
from .lock import bundle_lock, holds
from .manifest import (FORMAT_VERSION, Fp16Record, Int8Record, ModelRecord, TensorInfo, check_manifest,
                       manifest_problem, model_warnings)

__all__ = ["Bundle", "BundleUpdate", "open_bundle", "TensorInfo", "ModelRecord", "Fp16Record", "Int8Record", "check_manifest", "manifest_problem",
           "model_warnings", "FORMAT_VERSION", "MANIFEST", "PRECISIONS", "ONNX_FILES", "REFERENCE_NPZ",
           "SAVED_MODEL", "SCALES_JSON", "TRT_CACHE", "DATASET_JSON", "CALIBRATION_FILES", "TOP_LEVEL",
           "recover_bundle"]

log = logging.getLogger("trtdeploy.bundle")

# Where temporaries of an update can be left behind by a killed writer.
_SWEPT = ("", "calibration", ENGINES_DIR, REPORTS_DIR)


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root}: not a bundle (no {MANIFEST}); create one with `trtdeploy export --out {root}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable manifest ({e}); re-run `trtdeploy export`") from None
    check_manifest(manifest, path)
    return manifest


def recover_bundle(root: Path) -> None:
    """Complete an update a killed writer left pending, then remove its temporaries (and any
    other writer's that is gone). Call with the bundle's lock held exclusively."""
    what = recover(root / JOURNAL)
    for sub in (ENGINES_DIR, REPORTS_DIR):  # their sets (an engine and its sidecar; a report pair)
        recover(root / sub / JOURNAL)
    if what:
        log.warning("%s: completed an update that %s did not finish (it was interrupted)", root, what)
    for sub in _SWEPT:
        for p in sweep_temps(root / sub):
            log.info("removed %s, left by an interrupted command", p)


class Bundle:
    """A bundle directory and its manifest.

    `verify=True` hashes every file it reads (the CLI's `--verify`); otherwise a file whose
    size and modification time are the ones recorded is taken as recorded.
    """

    def __init__(self, root: str | Path, manifest: dict[str, Any] | None = None, verify: bool = False):
        self.root = Path(root)
        self.manifest = _read_manifest(self.root) if manifest is None else manifest
        self.verify = verify
        self._checked: dict[str, list[int]] = {}  # rel -> stat at which it matched
        self._update: BundleUpdate | None = None

    def reload(self) -> None:
        """The manifest as committed now (another writer may have committed since we read it)."""
        self.manifest = _read_manifest(self.root)
        self._checked.clear()

    # --- paths -----------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / rel

    def file(self, rel: str) -> Path:
        """The path of bundle file `rel`, after checking it against the manifest; BundleError
        naming the file and the command that rewrites it when it is missing, unrecorded or
        changed."""
        p = self.root / rel
        remake = remake_command(rel, self.root)
        if not p.exists():
            raise BundleError(f"{p}: missing; make it with `{remake}`")
        want = self.file_hash(rel)
        if want is None:
            raise BundleError(f"{p}: not recorded in {self.root / MANIFEST}, so it cannot be trusted; "
                              f"write it again with `{remake}`")
        stat = file_stat(p)
        if self._checked.get(rel) == stat:
            return p
        if self.verify or self.manifest.get("file_stats", {}).get(rel) != stat:
            got = sha256_tree(p) if p.is_dir() else sha256_file(p)
            if got != want:
                raise BundleError(f"{p}: does not match {MANIFEST} (sha256 {got[:12]}, recorded {want[:12]}): "
                                  f"changed or cut short since it was written; write it again with `{remake}`")
        self._checked[rel] = stat
        return p

    def onnx_path(self, precision: str = "fp32") -> Path:
        """The ONNX of `precision`, checked against the manifest."""
        try:
            rel = ONNX_FILES[precision]
        except KeyError:
            raise BundleError(f"unknown precision {precision!r}; use one of {', '.join(ONNX_FILES)}") from None
        return self.file(rel)

    def has(self, rel: str) -> bool:
        """Whether the bundle holds `rel` (as the manifest records it)."""
        return self.file_hash(rel) is not None and (self.root / rel).exists()

    @property
    def engines_dir(self) -> Path:
        return self.root / ENGINES_DIR

    def engine_path(self, precision: str) -> Path:
        """engines/NAME.PRECISION.plan (deploy.bundle.engines names it)."""
        from .engines import engine_file

        return self.root / engine_file(self.model_name, precision)

    def engines(self) -> list[Path]:
        """The plans in engines/, sorted."""
        from .engines import bundle_engines

        return bundle_engines(self)

    def choose_engine(self, engine: str | Path | None = None) -> Path:
        """--engine PLAN, else the bundle's only engine (usage errors otherwise)."""
        from .engines import choose_engine

        return choose_engine(self, engine)

    @property
    def reports_dir(self) -> Path:
        return self.root / REPORTS_DIR

    # --- manifest views --------------------------------------------------
    @property
    def model(self) -> ModelRecord:
        return ModelRecord.from_json(self.manifest["model"])

    @property
    def model_name(self) -> str:
        return self.manifest["model"]["name"]

    @property
    def fp16(self) -> Fp16Record | None:
        """How model.fp16.onnx was made (None: not yet)."""
        d = (self.manifest.get("precision") or {}).get("fp16")
        return Fp16Record.from_json(d) if isinstance(d, dict) else None

    @property
    def int8(self) -> Int8Record | None:
        """How model.int8.onnx and trt.cache were made (None: not calibrated)."""
        d = (self.manifest.get("precision") or {}).get("int8")
        return Int8Record.from_json(d) if isinstance(d, dict) else None

    @property
    def export_parity(self) -> dict[str, Any]:
        """Export's TF-vs-ONNX-Runtime check: {"outputs": {name: metrics}, "pass": ..., ...}."""
        return self.manifest.get("export_parity") or {}

    @property
    def end_points(self) -> dict[str, str]:
        """tf-slim end point name -> the ONNX tensor it became."""
        return dict(self.manifest.get("end_points") or {})

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
    def record_file(self, rel: str, written: Path | None = None) -> str:
        """Hash a file or directory of the bundle (or `written`, its temporary) into the
        manifest, with the size and time readers check first; return the hash."""
        p = written if written is not None else self.root / rel
        digest = sha256_tree(p) if p.is_dir() else sha256_file(p)
        self.manifest.setdefault("files", {})[rel] = digest
        self.manifest.setdefault("file_stats", {})[rel] = file_stat(p)
        self._checked.pop(rel, None)
        return digest

    def file_hash(self, rel: str) -> str | None:
        return self.manifest.get("files", {}).get(rel)

    def save(self) -> None:
        """Write the manifest of a bundle nobody else can see yet (export's temporary)."""
        atomic_write_json(self.root / MANIFEST, self.manifest)

    # --- locking and updates ------------------------------------------------
    @contextlib.contextmanager
    def reading(self, command: str) -> Iterator[Bundle]:
        """Hold the bundle shared for the block: no writer commits while it reads."""
        if (self.root / JOURNAL).exists() and not holds(self.root, exclusive=False):
            with bundle_lock(self.root, exclusive=True, command=command):
                recover_bundle(self.root)
        with bundle_lock(self.root, exclusive=False, command=command):
            if not holds(self.root):
                self.reload()
            yield self

    @contextlib.contextmanager
    def update(self, command: str) -> Iterator[BundleUpdate]:
        """Hold the bundle exclusively for the block, with the manifest as committed now; the
        block stages files on the update it gets and commits them. Staged files not committed
        (an error, an interrupt) are removed, and the manifest read back."""
        with bundle_lock(self.root, exclusive=True, command=command):
            outer = self._update
            if outer is not None:  # the CLI holds the update already: one unit, committed once
                yield outer
                return
            recover_bundle(self.root)
            self.reload()
            up = BundleUpdate(self, command)
            self._update = up
            try:
                yield up
            except BaseException:
                up.discard()
                with contextlib.suppress(BundleError):
                    self.reload()
                raise
            finally:
                self._update = None
            up.discard()


class BundleUpdate:
    """Files staged beside their final names, committed with the manifest as one unit."""

    def __init__(self, bundle: Bundle, command: str):
        self.bundle = bundle
        self.command = command
        self._staged: dict[str, tuple[Path, bool]] = {}  # rel -> (temporary, recorded in the manifest)

    def path(self, rel: str, recorded: bool = True) -> Path:
        """A temporary to write `rel` into (`recorded`: hashed into the manifest on commit)."""
        if rel in self._staged:
            return self._staged[rel][0]
        final = self.bundle.root / rel
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(final.parent, e) from None
        tmp = temp_name(final)
        self._staged[rel] = (tmp, recorded)
        return tmp

    def write_bytes(self, rel: str, data: bytes, recorded: bool = True) -> None:
        tmp = self.path(rel, recorded)
        try:
            write_bytes_to(tmp, data)
        except OSError as e:
            raise write_error(self.bundle.root / rel, e) from None

    def write_json(self, rel: str, obj: Any, recorded: bool = True) -> None:
        self.write_bytes(rel, json_text(obj).encode("utf-8"), recorded)

    def commit(self, manifest: bool = True) -> dict[str, str]:
        """Rename every staged file into place, the manifest last (`manifest=False`: files the
        manifest does not record, e.g. an engine and its sidecar); return the recorded hashes."""
        hashes = {rel: self.bundle.record_file(rel, tmp) for rel, (tmp, recorded) in self._staged.items() if recorded}
        moves = [(tmp, self.bundle.root / rel) for rel, (tmp, _) in self._staged.items()]
        if manifest:
            self.write_json(MANIFEST, self.bundle.manifest, recorded=False)
            moves.append((self._staged[MANIFEST][0], self.bundle.root / MANIFEST))
        commit_files(moves, self.bundle.root / JOURNAL, f"`trtdeploy {self.command}`")
        self._staged.clear()
        self.bundle._checked.clear()
        return hashes

    def discard(self) -> None:
        for tmp, _ in self._staged.values():
            remove_path(tmp)
        self._staged.clear()


def open_bundle(root: str | Path, verify: bool = False) -> Bundle:
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory; create one with `trtdeploy export --out {root}`")
    if (root / JOURNAL).exists():  # a writer was killed mid-commit: complete its update first
        if not os.access(root, os.W_OK):
            raise BundleError(f"{root}: holds an interrupted update ({JOURNAL}) that this read-only copy cannot "
                              "complete; open it once where it is writable")
        with bundle_lock(root, exclusive=True, command="open"):
            recover_bundle(root)
    return Bundle(root, verify=verify)
