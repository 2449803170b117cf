"""ResNet v2 (pre-activation) in TF2, the tf-slim way: same spec, same variable names.

He et al., "Identity Mappings in Deep Residual Networks", 2016 (arXiv:1603.05027), as
`tf_slim/nets/resnet_v2.py` builds it. Inputs are `[batch, height, width, 3]` (NHWC).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from .layers import Context, VariableStore, batch_norm, conv2d, conv2d_same, scope, subsample
from .resnet_utils import named_resnet, resnet
from .spec import Block, resnet_block


def bottleneck(ctx: Context, inputs: tf.Tensor, depth: int, depth_bottleneck: int, stride: int,
               rate: int = 1) -> tf.Tensor:
    """Bottleneck residual unit with BN before the convolutions (Fig. 1(b) of the paper)."""
    with scope(ctx, "bottleneck_v2") as sc:
        depth_in = int(inputs.shape[-1])
        preact = batch_norm(ctx, inputs, "preact", activation_fn=tf.nn.relu)
        if depth == depth_in:
            shortcut = subsample(inputs, stride, name="shortcut")
        else:
            shortcut = conv2d(ctx, preact, depth, 1, stride=stride, name="shortcut",
                              normalizer=False, activation_fn=None)
        residual = conv2d(ctx, preact, depth_bottleneck, 1, name="conv1")
        residual = conv2d_same(ctx, residual, depth_bottleneck, 3, stride, rate=rate, name="conv2")
        residual = conv2d(ctx, residual, depth, 1, name="conv3", normalizer=False, activation_fn=None)
        output = tf.add(shortcut, residual, name="add")
        return ctx.collect(sc, output)


def resnet_v2_block(scope: str, base_depth: int, num_units: int, stride: int) -> Block:
    """tf-slim's `resnet_v2_block`: `num_units` v2 bottlenecks, depth 4 x `base_depth`, the stride
    in the last unit."""
    return resnet_block(scope, base_depth, num_units, stride, bottleneck)


def resnet_v2(inputs: tf.Tensor, blocks: list[Block], num_classes: int | None = None,
              is_training: bool = False, global_pool: bool = True, output_stride: int | None = None,
              include_root_block: bool = True, spatial_squeeze: bool = True, scope_name: str = "resnet_v2",
              store: VariableStore | None = None, **bn_args: Any) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The v2 ResNet generator. Returns `(net, end_points)` like tf-slim.

    `store` holds the variables by tf-slim name (a new one is made when None); `bn_args` are
    `batch_norm_decay`, `batch_norm_epsilon`, `batch_norm_scale` as in `resnet_arg_scope`.
    With `spatial_squeeze` and `global_pool`, logits are `[batch, num_classes]` (later slim);
    tf-slim 1.1.0 returns `[batch, 1, 1, num_classes]` (pass `spatial_squeeze=False`). Without
    global pooling the logits stay `[batch, h, w, num_classes]`.
    """
    return resnet(inputs, blocks, 2, num_classes, is_training, global_pool, output_stride,
                  include_root_block, spatial_squeeze, scope_name, store, **bn_args)


resnet_v2_50 = named_resnet("resnet_v2_50", resnet_v2, resnet_v2_block)
resnet_v2_101 = named_resnet("resnet_v2_101", resnet_v2, resnet_v2_block)
resnet_v2_152 = named_resnet("resnet_v2_152", resnet_v2, resnet_v2_block)
resnet_v2_200 = named_resnet("resnet_v2_200", resnet_v2, resnet_v2_block)
