"""Input sets: where the images or arrays of calibration, accuracy, parity, infer and the
implicit-INT8 build come from (every command's `--data`).

Messages speak of input data, whatever the command uses it for. A set yields a plain
iterable of `dict[str, np.ndarray]` batches (`InputSet.batches()`). It is read from one of:

- an image folder: JPEG/PNG files found recursively (hidden files and folders skipped),
  sorted by relative path. Images in class subfolders (`DIR/<class>/...`) are labelled:
  integer folder names are the labels, other names are numbered in sorted order;
- a `.txt` list: one image per line, relative to the list's folder or absolute, with an
  optional integer label as a second column; blank lines and `#` comments are ignored;
- a `.npy` array of already preprocessed inputs, shaped (N, *per-sample shape of the
  input) in its layout, memory-mapped; or a `.npz` with the array under the input's name
  (or as its only array) and optional integer `labels` (read into memory whole).
  Any floating dtype is accepted and cast to float32 per batch (float64 and float16
  included); integer arrays are refused, since they are not preprocessed.

Every image is decoded once up front, so a corrupt file stops the run before any model
work; batches decode and preprocess images again lazily, one batch at a time.

numpy only (PIL is needed for image sets, imported when an image is decoded).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploy.bundle import TensorInfo
from deploy.errors import DataError, UsageError
from deploy.fsutil import sha256_bytes, sha256_file
from deploy.progress import progress

from .preprocess import Preprocess, decode_image

log = logging.getLogger("trtdeploy.data")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_MAX_NAMED = 10  # bad files named in one error message
_SOURCES = "an image folder, a .txt list of images, or a .npy/.npz array"


@dataclass(frozen=True)
class Sample:
    """One image of a set: its path relative to the set's root (posix), and its label.

    For list files the path is the entry as written (relative to the list's folder, or
    absolute)."""

    path: str
    label: int | None


class InputSet:
    """A validated input set; build one with `InputSet.from_path`."""

    def __init__(self, *, source: Path, kind: str, input: TensorInfo, preprocess: Preprocess,
                 root: Path | None = None, samples: list[Sample] | None = None,
                 hashes: dict[str, str] | None = None, array: np.ndarray | None = None,
                 array_labels: np.ndarray | None = None, indices: np.ndarray | None = None,
                 class_names: list[str] | None = None,
                 skipped: list[tuple[str, str]] | None = None):
        self.source = source
        self.kind = kind
        self.input = input
        self.preprocess = preprocess
        self._root = root if root is not None else source.parent
        self._samples = samples or []
        self._hashes = hashes or {}
        self._array = array
        self._array_labels = array_labels
        self._indices = indices  # rows of the array in use, ascending; None: all of them
        self._class_names = class_names
        self._skipped = skipped or []
        self._file_sha: str | None = None

    # --- construction ----------------------------------------------------------
    @classmethod
    def from_path(cls, path: str | os.PathLike, *, input: TensorInfo, preprocess: Preprocess,
                  skip_bad: bool = False, skip_option: str | None = None, num: int | None = None,
                  seed: int = 0) -> InputSet:
        """Read and validate a set (see the module docstring for the sources).

        `skip_option`: the caller's command-line option that sets `skip_bad` (e.g. "--skip-bad"),
        suggested when images are unreadable; None where the command has no such option, so an
        error never points a user at an option their command rejects.

        `num`/`seed` choose a subset before images are decoded, so only the chosen ones
        are checked: the same choice as `.subset(num, seed)` when no image is bad (with
        skip_bad, bad chosen images are dropped, leaving fewer than num).
        """
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: no such file or directory; input data is {_SOURCES}")
        source = p.resolve()
        if p.is_dir():
            samples, class_names = _scan_folder(p)
            kind, root = "images", source
        elif p.suffix.lower() == ".txt":
            samples, class_names = _read_list(p), None
            kind, root = "list", source.parent
        elif p.suffix.lower() in (".npy", ".npz"):
            array, labels = _load_array(p, input)
            made = cls(source=source, kind=p.suffix.lower()[1:], input=input, preprocess=preprocess,
                       array=array, array_labels=labels)
            return made.subset(num, seed)
        else:
            raise DataError(f"{p}: unsupported input data ({p.suffix or 'no suffix'}); use {_SOURCES}")
        if not samples:
            what = "no JPEG/PNG images (searched recursively for " + ", ".join(IMAGE_SUFFIXES) + ")" \
                if kind == "images" else "no images listed"
            raise DataError(f"{p}: {what}; input data is {_SOURCES}")
        _check_preprocess_fits(preprocess, input)
        chosen = cls(source=source, kind=kind, input=input, preprocess=preprocess, root=root,
                     samples=samples, class_names=class_names).subset(num, seed)
        hashes, bad = _validate_images(root, chosen._samples)
        if bad:
            if not skip_bad:
                hint = f", or pass {skip_option} to go on without them" if skip_option else ""
                raise DataError(f"{p}: {len(bad)} unreadable image(s): {_name_some(bad)}; fix or remove them{hint}")
            log.warning("skipping %d unreadable image(s): %s", len(bad), _name_some(bad))
            bad_paths = {b for b, _ in bad}
            samples = [s for s in chosen._samples if s.path not in bad_paths]
            if not samples:
                raise DataError(f"{p}: all {len(bad)} image(s) were unreadable and skipped; no images left")
            return chosen._replace(samples=samples, hashes=hashes, skipped=bad)
        return chosen._replace(hashes=hashes)

    def _replace(self, **changes: Any) -> InputSet:
        state = dict(source=self.source, kind=self.kind, input=self.input, preprocess=self.preprocess,
                     root=self._root, samples=self._samples, hashes=self._hashes, array=self._array,
                     array_labels=self._array_labels, indices=self._indices,
                     class_names=self._class_names, skipped=self._skipped)
        state.update(changes)
        return InputSet(**state)

    # --- views -------------------------------------------------------------------
    def __len__(self) -> int:
        if self._array is None:
            return len(self._samples)
        return len(self._indices) if self._indices is not None else int(self._array.shape[0])

    def __repr__(self) -> str:
        return f"InputSet({self.kind}, {len(self)} inputs from {self.source})"

    @property
    def samples(self) -> list[Sample]:
        """The images of an image or list set (empty for arrays)."""
        return list(self._samples)

    @property
    def labels(self) -> np.ndarray | None:
        """int64 labels in set order, or None when the source has none."""
        if self._array is not None:
            if self._array_labels is None:
                return None
            return self._array_labels if self._indices is None else self._array_labels[self._indices]
        if not self._samples or self._samples[0].label is None:
            return None
        return np.array([s.label for s in self._samples], dtype=np.int64)

    def check_labels(self, num_labels: int) -> None:
        """Refuse, naming the source and the first such entry, a label outside 0..num_labels-1
        (the classes of the model that scores them); called before any work is done."""
        labels = self.labels
        if labels is None:
            return
        bad = np.flatnonzero((labels < 0) | (labels >= num_labels))
        if not len(bad):
            return
        i = int(bad[0])
        if self._array is not None:
            row = i if self._indices is None else int(self._indices[i])
            where = f"row {row} of 'labels'"
        else:
            where = f"entry {self._samples[i].path!r}"
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{self.source}: label {int(labels[i])} of {where}{more} is outside 0..{num_labels - 1}, "
                        f"the model's {num_labels} classes; fix the labels")

    @property
    def class_names(self) -> list[str] | None:
        return None if self._class_names is None else list(self._class_names)

    @property
    def skipped(self) -> list[str]:
        """Paths of the unreadable images skipped with skip_bad (reasons in the manifest)."""
        return [path for path, _ in self._skipped]

    # --- choosing ----------------------------------------------------------------
    def subset(self, num: int | None, seed: int = 0) -> InputSet:
        """`num` inputs chosen by `seed`, in set order.

        The choice ranks every input by sha256(seed, its path or row index), so it depends
        on neither the filesystem's listing order nor the numpy version. None, or more
        than the set holds (with a warning), keeps them all.
        """
        if num is None:
            return self
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num <= 0:
            raise UsageError(f"the number of inputs must be a positive integer, got {num!r}")
        if num >= len(self):
            if num > len(self):
                log.warning("asked for %d inputs but %s holds %d; using all of them",
                            num, self.source, len(self))
            return self
        if self._array is None:
            chosen = _choose(num, seed, [s.path for s in self._samples])
            return self._replace(samples=[self._samples[i] for i in chosen])
        rows = np.arange(int(self._array.shape[0])) if self._indices is None else self._indices
        chosen = _choose(num, seed, [str(int(r)) for r in rows])
        return self._replace(indices=rows[chosen])

    def split(self, num: int, seed: int = 0) -> tuple[InputSet, InputSet]:
        """(the rest, `num` held-out inputs), both in set order: a held-out part that
        calibration does not see. Chosen like `subset` but under its own key ("held-out",
        seed), so the held-out part is not the subset `subset(num, seed)` would pick."""
        if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or not 0 < num < len(self):
            raise UsageError(f"cannot hold out {num!r} of {len(self)} inputs; hold out at least one and keep one")
        if self._array is None:
            held = set(_choose(num, f"held-out/{seed}", [s.path for s in self._samples]))
            return (self._replace(samples=[s for i, s in enumerate(self._samples) if i not in held]),
                    self._replace(samples=[s for i, s in enumerate(self._samples) if i in held]))
        rows = np.arange(int(self._array.shape[0])) if self._indices is None else self._indices
        mask = np.zeros(len(rows), dtype=bool)
        mask[_choose(num, f"held-out/{seed}", [str(int(r)) for r in rows])] = True
        return self._replace(indices=rows[~mask]), self._replace(indices=rows[mask])

    # --- batches -----------------------------------------------------------------
    def batches(self, batch_size: int, desc: str | None = "inputs") -> Iterator[dict[str, np.ndarray]]:
        """{input name: float32 batch in the input's layout}; the last batch may be smaller."""
        return (feed for feed, _ in self.batches_with_labels(batch_size, desc=desc))

    def batches_with_labels(self, batch_size: int, desc: str | None = "inputs"
                            ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        """Like `batches`, with each batch's int64 labels (None when the set has none)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")
        starts = range(0, len(self), int(batch_size))
        if desc:
            starts = progress(starts, desc, total=len(starts), unit="batch")  # type: ignore[assignment]
        return self._iter_batches(starts, int(batch_size))

    def _iter_batches(self, starts: Any, batch_size: int
                      ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        labels = self.labels
        for start in starts:
            stop = min(start + batch_size, len(self))
            if self._array is None:
                data = np.stack([self.preprocess.load(self._root / s.path)
                                 for s in self._samples[start:stop]])
            elif self._indices is None:
                data = np.asarray(self._array[start:stop], dtype=np.float32)
            else:
                data = np.asarray(self._array[self._indices[start:stop]], dtype=np.float32)
            yield {self.input.name: data}, None if labels is None else labels[start:stop]

    # --- identity ----------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """What the set is (calibration/dataset.json records it): the items with their hashes and
        one sha256 over them that does not depend on where the data lives."""
        if self._array is None:
            items = [{"path": s.path, "sha256": self._hashes[s.path], "label": s.label} for s in self._samples]
            indices = None
        else:
            if self._file_sha is None:
                self._file_sha = sha256_file(self.source)
            items = [{"path": self.source.name, "sha256": self._file_sha, "label": None}]
            indices = None if self._indices is None else [int(i) for i in self._indices]
        ordered = sorted(items, key=lambda it: (it["path"], it["sha256"]))
        identity = {"items": ordered, "indices": indices}
        digest = sha256_bytes(json.dumps(identity, sort_keys=True, separators=(",", ":")).encode())
        out: dict[str, Any] = {"source": str(self.source), "kind": self.kind, "count": len(self),
                               "items": items}
        if indices is not None:
            out["indices"] = indices
        if self._class_names is not None:
            out["class_names"] = list(self._class_names)
        out["skipped"] = [{"path": path, "reason": reason} for path, reason in self._skipped]
        out["sha256"] = digest
        return out

    @property
    def sha256(self) -> str:
        return self.manifest()["sha256"]


# --- sources -----------------------------------------------------------------------


def _scan_folder(folder: Path) -> tuple[list[Sample], list[str] | None]:
    rel_paths = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    classes = {r.split("/", 1)[0] for r in rel_paths if "/" in r}
    all_in_folders = bool(rel_paths) and all("/" in r for r in rel_paths)
    integer_names = bool(classes) and all(re.fullmatch(r"\d+", c) for c in classes)
    # One plain subfolder (DIR/images/*.jpg) is a layout, not a class: label only when
    # there are several class folders or the folder names are class ids.
    if not all_in_folders or not (len(classes) > 1 or integer_names):
        return [Sample(r, None) for r in rel_paths], None
    if integer_names:
        names = sorted(classes, key=int)
        label_of = {c: int(c) for c in classes}
    else:
        names = sorted(classes)
        label_of = {c: i for i, c in enumerate(names)}
    log.info("%s: labels from %d class folders", folder, len(names))
    return [Sample(r, label_of[r.split("/", 1)[0]]) for r in rel_paths], names


def _read_list(list_file: Path) -> list[Sample]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{list_file}: cannot read the image list ({e})") from None
    samples: list[Sample] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) > 2 or (len(parts) == 2 and not re.fullmatch(r"[+-]?\d+", parts[1])):
            raise DataError(f"{list_file}:{number}: expected 'PATH [INTEGER_LABEL]', got {line[:80]!r}")
        samples.append(Sample(Path(parts[0]).as_posix(), int(parts[1]) if len(parts) == 2 else None))
    labelled = [s.label is not None for s in samples]
    if any(labelled) and not all(labelled):
        first = next(i for i, has in enumerate(labelled) if not has)
        raise DataError(f"{list_file}: entry {samples[first].path!r} has no label but others do; "
                        "label every line or none")
    return samples


def _validate_images(root: Path, samples: list[Sample]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Decode every image once; return their sha256 and the (path, reason) of bad ones."""
    hashes: dict[str, str] = {}
    bad: list[tuple[str, str]] = []
    for s in progress(samples, "checking images", total=len(samples), unit="img"):
        if s.path in hashes:
            continue
        try:
            with open(root / s.path, "rb") as f:
                data = f.read()
        except OSError as e:
            bad.append((s.path, e.strerror or str(e)))
            continue
        try:
            decode_image(data, s.path)
        except DataError as e:
            bad.append((s.path, str(e).removeprefix(f"{s.path}: ")))
            continue
        hashes[s.path] = sha256_bytes(data)
    return hashes, bad


def _name_some(bad: list[tuple[str, str]]) -> str:
    named = ", ".join(f"{path} [{reason}]" for path, reason in bad[:_MAX_NAMED])
    return named + (f" and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED else "")


def _check_preprocess_fits(preprocess: Preprocess, input: TensorInfo) -> None:
    want = tuple(input.shape[1:])
    got = preprocess.sample_shape
    fits = len(want) == len(got) and all(w in (-1, g) for w, g in zip(want, got, strict=True))
    if not fits or (input.layout and input.layout != preprocess.layout):
        raise UsageError(
            f"preprocessing {preprocess.preset} {preprocess.height}x{preprocess.width} {preprocess.layout} "
            f"makes {got} per image, but input {input.name!r} takes {want} ({input.layout or 'no layout'}); "
            "fix the preprocessing in the bundle's manifest"
        )


def _expected(input: TensorInfo) -> str:
    dims = ", ".join("N" if i == 0 else ("?" if d == -1 else str(d)) for i, d in enumerate(input.shape))
    return f"({dims}) float32 (input {input.name!r}{', ' + input.layout if input.layout else ''})"


def _load_array(path: Path, input: TensorInfo) -> tuple[np.ndarray, np.ndarray | None]:
    labels = None
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            with np.load(path, allow_pickle=False) as npz:
                keys = list(npz.files)
                data_keys = [k for k in keys if k != "labels"]
                if input.name in keys:
                    key = input.name
                elif len(data_keys) == 1:
                    key = data_keys[0]
                else:
                    raise DataError(f"{path}: no array named {input.name!r} and not a single array "
                                    f"(found {', '.join(keys) or 'none'}); store the inputs under {input.name!r}")
                array = npz[key]
                if "labels" in keys:
                    labels = npz["labels"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable {path.suffix.lower()} file ({e})") from None
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: array of dtype {array.dtype}; expected {_expected(input)} — "
                        "preprocessed inputs, not raw pixels")
    want = tuple(input.shape)
    if array.ndim != len(want) or not all(w in (-1, a) for w, a in zip(want[1:], array.shape[1:], strict=True)):
        raise DataError(f"{path}: array of shape {tuple(array.shape)}; expected {_expected(input)}")
    if array.shape[0] == 0:
        raise DataError(f"{path}: the array holds no inputs (shape {tuple(array.shape)})")
    _check_finite(path, array)
    if labels is not None:
        if labels.ndim != 1 or len(labels) != array.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: 'labels' of shape {labels.shape} {labels.dtype}; expected "
                            f"({array.shape[0]},) integers, one per input")
        labels = labels.astype(np.int64)
    return array, labels


_FINITE_CHUNK_BYTES = 64 << 20  # a memory-mapped .npy is scanned this much at a time


def _check_finite(path: Path, array: np.ndarray) -> None:
    """Refuse NaN or inf inputs, naming the file and the rows: a model fed them answers NaN,
    which parity would blame on a backend and calibration on a tensor."""
    step = max(1, _FINITE_CHUNK_BYTES // max(1, array[:1].nbytes))
    bad: list[int] = []
    for start in range(0, array.shape[0], step):
        block = np.asarray(array[start:start + step])
        bad += (start + np.flatnonzero(~np.isfinite(block.reshape(len(block), -1)).all(axis=1))).tolist()
    if bad:
        rows = ", ".join(map(str, bad[:_MAX_NAMED])) + (f" and {len(bad) - _MAX_NAMED} more" if len(bad) > _MAX_NAMED
                                                       else "")
        raise DataError(f"{path}: NaN or inf values in row(s) {rows}; inputs must be finite (fix or drop those rows)")


def _choose(num: int, seed: int | str, keys: list[str]) -> list[int]:
    """Positions of the `num` keys ranked first by sha256(seed, key), ascending."""
    rank = sorted(range(len(keys)),
                  key=lambda i: (hashlib.sha256(f"{seed}\0{keys[i]}".encode()).digest(), i))
    return sorted(rank[:num])


