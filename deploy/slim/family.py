"""What a net family module gives the rest of the package: one `Family` record.

A family module (`resnet.py`, `vgg.py`, ...) holds its spec (block types, the zoo's layouts,
the checks of its blocks and fields), its builder and its end points; `registry.py` lists the
families. The spec half needs only the standard library; `build` imports TensorFlow when called.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from .spec_checks import Problems


@dataclass(frozen=True)
class ZooModel:
    """A registry model of the family: `--model NAME`, its defaults and the spec fields it sets."""

    name: str
    num_classes: int
    image_size: tuple[int, int]
    preprocessing: str
    label_offset: int
    fields: Mapping[str, Any]  # NetSpec fields beyond the defaults above (blocks, ...)


@dataclass(frozen=True)
class Family:
    """One family of nets (`NetSpec.family`).

    fields: the NetSpec fields only this family takes (beyond name, family, blocks and the head),
      with its defaults.
    parse_blocks(blocks_json, problems): the JSON `blocks` list as block objects (None after a
      mistake, which it records); None for a family whose layers are fixed (Inception).
    default_blocks: the blocks of a spec that gives none (slim's `conv_defs`); None: required.
    check(spec, problems): the family's checks of a whole spec (blocks, strides, sizes).
    build(spec, images, store, is_training, batch_norm_decay): `(net, end_points)` like tf-slim.
    logits_scope(spec): the layer whose biases are the class count.
    probe_size(spec): an input size at which one eager pass creates every variable.
    cost(spec): (parameters, activation values of one image), counted from the spec (cost.py);
      `shrink` says how to ask for less.
    checkpoint_mark: a variable-name fragment only this family's checkpoints hold.
    field_hints: the message for a field this family does not take, when a generic one would not
      say what to do.
    skipped_variables: checkpoint variables (under the scope) the net does not use and a loaded
      checkpoint may carry (Inception v3's training-only `AuxLogits/`).
    """

    name: str
    slim_name: str
    fields: Mapping[str, Any]
    parse_blocks: Callable[[list, Problems], tuple | None] | None
    check: Callable[[Any, Problems], None]
    build: Callable[..., tuple]
    logits_scope: Callable[[Any], str]
    probe_size: Callable[[Any], tuple[int, int]]
    cost: Callable[[Any], tuple[int, int]]
    shrink: str
    checkpoint_mark: str
    default_blocks: tuple | None = None
    zoo: tuple[ZooModel, ...] = ()
    field_hints: Mapping[str, str] = field(default_factory=dict)
    skipped_variables: tuple[str, ...] = ()
