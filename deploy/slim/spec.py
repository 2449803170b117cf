"""The slim-style model spec: a ResNet is data (`Block(scope, unit_fn, args)`).

Mirrors `tf_slim/nets/resnet_utils.py`, `resnet_v1.py` and `resnet_v2.py` (He et al., "Deep
Residual Learning for Image Recognition", 2015, arXiv:1512.03385, and "Identity Mappings in
Deep Residual Networks", 2016, arXiv:1603.05027) and `vgg.py` (Simonyan and Zisserman, 2014,
arXiv:1409.1556). Needs no TensorFlow: the spec can be recorded in a manifest and rebuilt anywhere.
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


def resnet_block(scope: str, base_depth: int, num_units: int, stride: int,
                 unit_fn: Callable[..., Any]) -> Block:
    """A bottleneck block; the stride is applied in the last unit, as tf-slim's
    `resnet_v1_block` and `resnet_v2_block` both do (they live beside their unit, in resnet_v1.py
    and resnet_v2.py, as in tf-slim: the unit needs TensorFlow, the spec does not)."""
    unit = {"depth": base_depth * 4, "depth_bottleneck": base_depth, "stride": 1}
    return Block(scope, unit_fn, [dict(unit)] * (num_units - 1) + [dict(unit, stride=stride)])


# ResNet depth -> [(block scope, base_depth, num_units, stride)], the same for v1 and v2 in tf-slim.
_RESNET_DEPTHS: dict[int, list[tuple[str, int, int, int]]] = {
    50: [("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 6, 2), ("block4", 512, 3, 1)],
    101: [("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 23, 2), ("block4", 512, 3, 1)],
    152: [("block1", 64, 3, 2), ("block2", 128, 8, 2), ("block3", 256, 36, 2), ("block4", 512, 3, 1)],
    200: [("block1", 64, 3, 2), ("block2", 128, 24, 2), ("block3", 256, 36, 2), ("block4", 512, 3, 1)],
}

# Name -> ResNet layout, as in tf-slim's resnet_v1_* and resnet_v2_* functions.
LAYOUTS: dict[str, list[tuple[str, int, int, int]]] = {
    **{f"resnet_{v}_{d}": layout for v in ("v1", "v2") for d, layout in _RESNET_DEPTHS.items()},
    # The embedded default: a small ResNet v2 for scikit-learn's digits at 32x32x3.
    "resnet_v2_digits": [("block1", 16, 2, 2), ("block2", 32, 2, 2), ("block3", 64, 2, 1)],
}

# Name -> [(scope, num_convs, depth)], as in tf-slim's vgg_16 and vgg_19.
VGG_LAYOUTS: dict[str, list[tuple[str, int, int]]] = {
    "vgg_16": [("conv1", 2, 64), ("conv2", 2, 128), ("conv3", 3, 256), ("conv4", 3, 512), ("conv5", 3, 512)],
    "vgg_19": [("conv1", 2, 64), ("conv2", 2, 128), ("conv3", 4, 256), ("conv4", 4, 512), ("conv5", 4, 512)],
}
