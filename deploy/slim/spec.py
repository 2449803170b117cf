"""The slim-style model spec: a ResNet is data (`Block(scope, unit_fn, args)`).

Mirrors `tf_slim/nets/resnet_utils.py` and `resnet_v2.py` (He et al., "Identity Mappings in
Deep Residual Networks", 2016, arXiv:1603.05027). Needs no TensorFlow: the spec can be
recorded in a manifest and rebuilt anywhere.
"""
from __future__ import annotations

import collections
from typing import Any, Callable


class Block(collections.namedtuple("Block", ["scope", "unit_fn", "args"])):
    """A named tuple describing a ResNet block.

    scope: the block's variable scope (`block1`, ...).
    unit_fn: the unit function, called as `unit_fn(ctx, net, rate=..., **unit_args)`.
    args: one dict per unit, `{"depth", "depth_bottleneck", "stride"}`.
    """


def resnet_v2_block(scope: str, base_depth: int, num_units: int, stride: int,
                    unit_fn: Callable[..., Any] | None = None) -> Block:
    """A bottleneck block; the stride is applied in the last unit, as in tf-slim."""
    if unit_fn is None:
        from .resnet_v2 import bottleneck  # the unit needs TensorFlow; the spec does not
        unit_fn = bottleneck
    unit = {"depth": base_depth * 4, "depth_bottleneck": base_depth, "stride": 1}
    return Block(scope, unit_fn, [dict(unit)] * (num_units - 1) + [dict(unit, stride=stride)])


# Name -> [(block scope, base_depth, num_units, stride)], as in tf-slim's resnet_v2_* functions.
LAYOUTS: dict[str, list[tuple[str, int, int, int]]] = {
    "resnet_v2_50": [("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 6, 2), ("block4", 512, 3, 1)],
    "resnet_v2_101": [("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 23, 2), ("block4", 512, 3, 1)],
    "resnet_v2_152": [("block1", 64, 3, 2), ("block2", 128, 8, 2), ("block3", 256, 36, 2), ("block4", 512, 3, 1)],
    "resnet_v2_200": [("block1", 64, 3, 2), ("block2", 128, 24, 2), ("block3", 256, 36, 2), ("block4", 512, 3, 1)],
    # The embedded default: a small ResNet v2 for scikit-learn's digits at 32x32x3.
    "resnet_v2_digits": [("block1", 16, 2, 2), ("block2", 32, 2, 2), ("block3", 64, 2, 1)],
}


def blocks_from_layout(layout: list[tuple[str, int, int, int]] | list[list[Any]]) -> list[Block]:
    return [resnet_v2_block(scope, int(base), int(n), int(stride)) for scope, base, n, stride in layout]


def blocks_to_json(blocks: list[Block]) -> list[dict[str, Any]]:
    """The spec as JSON for the manifest (unit functions by name)."""
    return [
        {"scope": b.scope, "unit_fn": getattr(b.unit_fn, "__name__", str(b.unit_fn)),
         "args": [dict(u) for u in b.args]}
        for b in blocks
    ]
