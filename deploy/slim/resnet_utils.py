"""What ResNet v1 and v2 share, as in `tf_slim/nets/resnet_utils.py`: the one block stacker
(`stack_blocks_dense`, with atrous `output_stride`) and the generator around it (root block,
global pool, logits, spatial squeeze, predictions). Inputs are `[batch, height, width, 3]` (NHWC).
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from .layers import Context, VariableStore, batch_norm, conv2d, conv2d_same, scope
from .spec import LAYOUTS, Block


def stack_blocks_dense(ctx: Context, net: tf.Tensor, blocks: list[Block],
                       output_stride: int | None = None) -> tf.Tensor:
    """Stack blocks; with `output_stride`, switch to atrous convolution once it is reached.

    Raises ValueError if the target output_stride cannot be reached, as tf-slim does.
    """
    current_stride = 1
    rate = 1
    for block in blocks:
        with scope(ctx, block.scope) as sc:
            for i, unit in enumerate(block.args):
                if output_stride is not None and current_stride > output_stride:
                    raise ValueError("The target output_stride cannot be reached.")
                with scope(ctx, f"unit_{i + 1}"):
                    if output_stride is not None and current_stride == output_stride:
                        net = block.unit_fn(ctx, net, rate=rate, **dict(unit, stride=1))
                        rate *= unit.get("stride", 1)
                    else:
                        net = block.unit_fn(ctx, net, rate=1, **unit)
                        current_stride *= unit.get("stride", 1)
            ctx.collect(sc, net)
    if output_stride is not None and current_stride != output_stride:
        raise ValueError("The target output_stride cannot be reached.")
    return net


def resnet(inputs: tf.Tensor, blocks: list[Block], version: int, num_classes: int | None = None,
           is_training: bool = False, global_pool: bool = True, output_stride: int | None = None,
           include_root_block: bool = True, spatial_squeeze: bool = True, scope_name: str = "resnet",
           store: VariableStore | None = None, **bn_args: Any) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """tf-slim's `resnet_v1` (version 1) or `resnet_v2` (version 2) generator: `(net, end_points)`.

    The two differ in two places only: v1's root `conv1` has BatchNorm and ReLU (v2's is a
    plain conv, the first unit's `preact` normalizes it), and v2 ends in `postnorm` (BN + ReLU)
    because its units leave their sum un-normalized. `bn_args` are `batch_norm_decay`,
    `batch_norm_epsilon`, `batch_norm_scale` as in `resnet_arg_scope`.
    """
    ctx = Context(store=store if store is not None else VariableStore(), is_training=is_training, **bn_args)
    with scope(ctx, scope_name) as sc:
        net = inputs
        if include_root_block:
            if output_stride is not None:
                if output_stride % 4 != 0:
                    raise ValueError("The output_stride needs to be a multiple of 4.")
                output_stride //= 4
            if version == 1:
                net = conv2d_same(ctx, net, 64, 7, stride=2, name="conv1")
            else:
                net = conv2d_same(ctx, net, 64, 7, stride=2, name="conv1", normalizer=False, activation_fn=None)
            net = tf.nn.max_pool2d(net, ksize=3, strides=2, padding="SAME", name="pool1")
        net = stack_blocks_dense(ctx, net, blocks, output_stride)
        if version == 2:
            net = batch_norm(ctx, net, "postnorm", activation_fn=tf.nn.relu)
        if global_pool:
            net = tf.reduce_mean(net, [1, 2], name="pool5", keepdims=True)
        if num_classes is not None:
            net = conv2d(ctx, net, num_classes, 1, name="logits", normalizer=False, activation_fn=None)
            if spatial_squeeze and global_pool:
                net = tf.squeeze(net, [1, 2], name="SpatialSqueeze")
                ctx.end_points[f"{sc}/spatial_squeeze"] = net
            ctx.end_points["predictions"] = tf.nn.softmax(net, name="predictions")
    return net, ctx.end_points


def named_resnet(name: str, generator, make_block):
    """`resnet_v1_50(inputs, num_classes, ...)` and friends: a zoo layout bound to its generator
    and its family's block maker (`resnet_v1_block`, `resnet_v2_block`)."""

    def build(inputs, num_classes=None, is_training=False, global_pool=True, output_stride=None,
              spatial_squeeze=True, store=None, scope_name=name, **bn_args):
        blocks = [make_block(*b) for b in LAYOUTS[name]]
        return generator(inputs, blocks, num_classes, is_training, global_pool,
                         output_stride, include_root_block=True, spatial_squeeze=spatial_squeeze,
                         scope_name=scope_name, store=store, **bn_args)
    build.__name__ = name
    build.__doc__ = f"{name} as in tf-slim. See `{generator.__name__}` for arguments and return values."
    return build
