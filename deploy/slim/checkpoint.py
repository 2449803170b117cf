"""tf-slim checkpoints, by name: every model variable maps to the checkpoint entry of the same name.

Reading uses `tf.train.load_checkpoint`, so checkpoints written by tf-slim's `Saver` (and the
published `resnet_v2_*.ckpt` files) load as they are; writing uses the raw `SaveV2` op with the
same names, so what we write tf-slim can restore.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..errors import CheckpointError
from .registry import FAMILIES

# Optimizer slots and bookkeeping that training leaves in checkpoints; not model weights.
_IGNORED_SUFFIXES = ("/Momentum", "/ExponentialMovingAverage", "/Adam", "/Adam_1", "/RMSProp", "/RMSProp_1")
_IGNORED_NAMES = {"global_step", "_CHECKPOINTABLE_OBJECT_GRAPH"}
_LOGITS = ("/logits/weights", "/logits/biases", "/fc8/weights", "/fc8/biases", "/Conv2d_1c_1x1/weights",
           "/Conv2d_1c_1x1/biases", "/Conv2d_0c_1x1/weights", "/Conv2d_0c_1x1/biases")


def _reader(path: str | Path):
    try:
        return tf.train.load_checkpoint(str(path))
    except (tf.errors.OpError, RuntimeError, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: not a readable TensorFlow checkpoint ({first[:160]}); pass the prefix, "
            "e.g. model.ckpt for model.ckpt.index + model.ckpt.data-*"
        ) from None


def _fmt(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def skipped_variables(path: str | Path, scope: str, skip: tuple[str, ...]) -> list[str]:
    """The checkpoint's variables under `scope/` + one of `skip` (Inception v3's `AuxLogits/`)."""
    prefixes = tuple(f"{scope}/{p}" for p in skip)
    return sorted(n for n in _reader(path).get_variable_to_shape_map() if prefixes and n.startswith(prefixes))


def load_slim_checkpoint(variables: dict[str, tf.Variable], path: str | Path, scope: str,
                         skip: tuple[str, ...] = ()) -> int:
    """Assign every variable from the checkpoint entry of the same name. Returns the count.

    A missing, extra (under `scope/`) or wrongly shaped variable is a CheckpointError naming it;
    variables under `scope/` + one of `skip` are ones the net does not build, and stay unread.
    """
    reader = _reader(path)
    shapes = reader.get_variable_to_shape_map()
    skipped = tuple(f"{scope}/{p}" for p in skip)
    in_scope = {n for n in shapes if n.startswith(scope + "/") and not n.endswith(_IGNORED_SUFFIXES)
                and not (skipped and n.startswith(skipped))}
    missing = sorted(n for n in variables if n not in shapes)
    if missing and not in_scope:
        scopes = sorted({n.split("/")[0] for n in shapes if n not in _IGNORED_NAMES})
        raise CheckpointError(
            f"{path}: has no variables under {scope}/ (it has {_fmt(scopes)}); "
            "pick the matching --model (or the spec's \"name\")"
        )
    have, need = _family(in_scope), _family(variables)
    if missing and have and need and have != need:
        raise CheckpointError(f"{path}: holds a {have} network under {scope}/, the model is {need}; "
                              "pick the matching --model (or the spec's \"family\")")
    if missing:
        raise CheckpointError(f"{path}: missing variable {_fmt(missing)} that {scope} needs")
    extra = sorted(in_scope - set(variables))
    if extra:
        raise CheckpointError(
            f"{path}: has variable {_fmt(extra)} that {scope} does not use "
            "(a different spec? check --output-stride/--no-global-pool/--num-classes)"
        )
    for name, var in variables.items():
        want, got = tuple(var.shape), tuple(shapes[name])
        if want != got:
            hint = " (pass --num-classes to match the checkpoint)" if name.endswith(_LOGITS) else ""
            raise CheckpointError(f"{path}: variable {name} has shape {list(got)}, the model needs {list(want)}{hint}")
    for name, var in variables.items():
        var.assign(reader.get_tensor(name).astype(np.float32))
    return len(variables)


def _family(names) -> str | None:
    """The family whose variable-name mark (`/bottleneck_v1/`, ...) the names carry, if one does."""
    found = {f.slim_name for f in FAMILIES.values() if any(f.checkpoint_mark in n for n in names)}
    return found.pop() if len(found) == 1 else None


def checkpoint_num_classes(path: str | Path, logits_scope: str) -> int | None:
    """The logits width stored in a checkpoint (`logits_scope/biases`), to default --num-classes from it."""
    shapes = _reader(path).get_variable_to_shape_map()
    shape = shapes.get(f"{logits_scope}/biases")
    return int(shape[0]) if shape else None


def save_slim_checkpoint(variables: dict[str, tf.Variable], prefix: str | Path) -> Path:
    """Write a name-based checkpoint (`prefix.index`, `prefix.data-00000-of-00001`).

    SaveV2 writes into a temporary directory beside the target; the data shard is moved into
    place first and the index last, so a reader never finds an index without its data.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(variables)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{prefix.name}.", dir=prefix.parent))
    try:
        tf.raw_ops.SaveV2(prefix=str(tmpdir / prefix.name), tensor_names=names,
                          shape_and_slices=[""] * len(names), tensors=[variables[n] for n in names])
        files = sorted(tmpdir.iterdir(), key=lambda f: f.suffix == ".index")
        for f in files:
            os.replace(f, prefix.parent / f.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return prefix
