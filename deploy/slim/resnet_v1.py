"""ResNet v1 (BN after each convolution) in TF2, the tf-slim way: same spec, same variable names.

He et al., "Deep Residual Learning for Image Recognition", 2015 (arXiv:1512.03385), as
`tf_slim/nets/resnet_v1.py` builds it: the bottleneck variant, conv1 with stride 1 and the
stride in the 3x3 conv2 (as in fb.resnet.torch), the block's stride in its last unit.
Inputs are `[batch, height, width, 3]` (NHWC).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from .layers import Context, VariableStore, conv2d, conv2d_same, scope, subsample
from .resnet_utils import named_resnet, resnet
from .spec import Block, resnet_block


def bottleneck(ctx: Context, inputs: tf.Tensor, depth: int, depth_bottleneck: int, stride: int,
               rate: int = 1) -> tf.Tensor:
    """Bottleneck residual unit with BN after the convolutions (Fig. 1(a) of the v2 paper).

    The shortcut is the (subsampled) input when the depth stays, else a 1x1 conv + BN with the
    unit's stride and no activation; ReLU comes after the addition.
    """
    with scope(ctx, "bottleneck_v1") as sc:
        depth_in = int(inputs.shape[-1])
        if depth == depth_in:
            shortcut = subsample(inputs, stride, name="shortcut")
        else:
            shortcut = conv2d(ctx, inputs, depth, 1, stride=stride, name="shortcut", activation_fn=None)
        residual = conv2d(ctx, inputs, depth_bottleneck, 1, name="conv1")
        residual = conv2d_same(ctx, residual, depth_bottleneck, 3, stride, rate=rate, name="conv2")
        residual = conv2d(ctx, residual, depth, 1, name="conv3", activation_fn=None)
        output = tf.nn.relu(shortcut + residual)
        return ctx.collect(sc, output)


def resnet_v1_block(scope: str, base_depth: int, num_units: int, stride: int) -> Block:
    """tf-slim's `resnet_v1_block`: `num_units` v1 bottlenecks, depth 4 x `base_depth`, the stride
    in the last unit."""
    return resnet_block(scope, base_depth, num_units, stride, bottleneck)


def resnet_v1(inputs: tf.Tensor, blocks: list[Block], num_classes: int | None = None,
              is_training: bool = False, global_pool: bool = True, output_stride: int | None = None,
              include_root_block: bool = True, spatial_squeeze: bool = True, scope_name: str = "resnet_v1",
              store: VariableStore | None = None, **bn_args: Any) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The v1 ResNet generator. Returns `(net, end_points)` like tf-slim.

    Arguments as `resnet_v2`. tf-slim 1.1.0 has no spatial squeeze and returns
    `[batch, 1, 1, num_classes]` logits (pass `spatial_squeeze=False` for that).
    """
    return resnet(inputs, blocks, 1, num_classes, is_training, global_pool, output_stride,
                  include_root_block, spatial_squeeze, scope_name, store, **bn_args)


resnet_v1_50 = named_resnet("resnet_v1_50", resnet_v1, resnet_v1_block)
resnet_v1_101 = named_resnet("resnet_v1_101", resnet_v1, resnet_v1_block)
resnet_v1_152 = named_resnet("resnet_v1_152", resnet_v1, resnet_v1_block)
resnet_v1_200 = named_resnet("resnet_v1_200", resnet_v1, resnet_v1_block)
