"""What parity compares on: the bundle's `reference.npz` (inputs, stored TF outputs, labels)
or an input set read through `deploy.data` (image folder, list file, .npy/.npz), as batches
every backend sees alike. Needs only numpy at import.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..bundle import REFERENCE_NPZ, Bundle
from ..errors import BundleError, DataError


@dataclass(frozen=True)
class Batch:
    feed: dict[str, np.ndarray]
    labels: np.ndarray | None
    reference: dict[str, np.ndarray] | None  # stored TF outputs (reference.npz), else None


def _npz_feeds(bundle: Bundle, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for i, info in enumerate(bundle.inputs):
        key = f"input:{info.name}" if f"input:{info.name}" in arrays else ("input" if i == 0 else None)
        if key is None or key not in arrays:
            raise BundleError(f"{bundle.path(REFERENCE_NPZ)}: no inputs for {info.name!r} (key 'input'); "
                              "re-run `trtdeploy export`")
        feeds[info.name] = np.asarray(arrays[key], dtype=np.dtype(info.dtype))
    return feeds


def npz_batches(bundle: Bundle, arrays: Mapping[str, np.ndarray], batch_size: int,
                num_images: int | None = None) -> tuple[int, Iterator[Batch]]:
    """Batches of reference.npz: `input` (or `input:<name>` per input), `output:<name>`, `labels`."""
    feeds = _npz_feeds(bundle, arrays)
    outs = {}
    for o in bundle.outputs:
        if f"output:{o.name}" not in arrays:
            raise BundleError(f"{bundle.path(REFERENCE_NPZ)}: no 'output:{o.name}'; re-run `trtdeploy export`")
        outs[o.name] = arrays[f"output:{o.name}"]
    labels = arrays.get("labels")
    total = len(next(iter(feeds.values())))
    if num_images is not None:
        total = min(total, num_images)
    if total == 0:
        raise DataError(f"{bundle.path(REFERENCE_NPZ)}: holds no inputs; re-run `trtdeploy export`")

    def gen() -> Iterator[Batch]:
        for s in range(0, total, batch_size):
            sl = slice(s, min(s + batch_size, total))
            yield Batch({k: np.ascontiguousarray(v[sl]) for k, v in feeds.items()},
                        None if labels is None else np.asarray(labels[sl]),
                        {k: v[sl] for k, v in outs.items()})
    return total, gen()


def folder_batches(bundle: Bundle, data: str | Path, batch_size: int, num_images: int | None,
                   seed: int, skip_bad: bool = False) -> tuple[list[str], Iterator[Batch]]:
    """The unreadable images skipped (with `skip_bad`), and the batches of an image folder (class
    folders give labels), a .txt list or a .npy/.npz, through the input-set loader."""
    from ..data.inputs import InputSet
    from ..data.preprocess import Preprocess

    # num/seed pick the subset before images are decoded (the same choice as .subset(num, seed)).
    dataset = InputSet.from_path(data, input=bundle.inputs[0],
                                       preprocess=Preprocess.from_json(bundle.preprocessing),
                                       skip_bad=skip_bad, skip_option="--skip-bad", num=num_images, seed=seed)
    if bundle.class_outputs:
        dataset.check_labels(bundle.num_classes - bundle.label_offset)

    def gen() -> Iterator[Batch]:
        for feed, labels in dataset.batches_with_labels(batch_size, desc="parity"):
            yield Batch(dict(feed), None if labels is None else np.asarray(labels), None)
    return dataset.skipped, gen()
