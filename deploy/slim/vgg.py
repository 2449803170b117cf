"""VGG in TF2, the tf-slim way: same layers, same variable names (`vgg_16/conv1/conv1_1/weights`).

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
2014 (arXiv:1409.1556), as `tf_slim/nets/vgg.py` builds it: 3x3 SAME convolutions with biases
and ReLU, 2x2 VALID max-pools, and the fully connected layers as convolutions (fc6 7x7 VALID,
fc7 and fc8 1x1), so a 224x224 input gives 1x1 logits. Inputs are `[batch, height, width, 3]`
(NHWC), 0..255 RGB minus the ImageNet means (`vgg` preprocessing).
"""
from __future__ import annotations

import tensorflow as tf

from .layers import Context, VariableStore, conv2d, scope
from .netspec import VGG_FC6_KERNEL, VggBlock
from .spec import VGG_LAYOUTS


def vgg(inputs: tf.Tensor, blocks: list[VggBlock], num_classes: int = 1000, is_training: bool = False,
        dropout_keep_prob: float = 0.5, spatial_squeeze: bool = True, scope_name: str = "vgg_16",
        fc_depth: int = 4096, store: VariableStore | None = None) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The VGG generator. Returns `(net, end_points)` like tf-slim.

    End points are every conv (`vgg_16/conv1/conv1_1`), pool (`vgg_16/pool1`) and fc layer
    (`vgg_16/fc6`); with `spatial_squeeze` the logits are `[batch, num_classes]` and
    `vgg_16/fc8` is the squeezed tensor, as in tf-slim. `predictions` (softmax) is ours: tf-slim's
    VGG has no such end point. Dropout runs only when `is_training`.
    """
    ctx = Context(store=store if store is not None else VariableStore(), is_training=is_training)

    def dropout(net: tf.Tensor) -> tf.Tensor:
        return tf.nn.dropout(net, rate=1 - dropout_keep_prob) if is_training else net

    with scope(ctx, scope_name) as sc:
        net = inputs
        for i, block in enumerate(blocks):
            with scope(ctx, block.scope):
                for j in range(block.num_convs):
                    net = conv2d(ctx, net, block.depth, 3, name=f"{block.scope}_{j + 1}", normalizer=False)
            with scope(ctx, f"pool{i + 1}") as pool:
                net = ctx.collect(pool, tf.nn.max_pool2d(net, ksize=2, strides=2, padding="VALID"))
        net = conv2d(ctx, net, fc_depth, VGG_FC6_KERNEL, padding="VALID", name="fc6", normalizer=False)
        net = dropout(net)
        net = conv2d(ctx, net, fc_depth, 1, name="fc7", normalizer=False)
        net = dropout(net)
        net = conv2d(ctx, net, num_classes, 1, name="fc8", normalizer=False, activation_fn=None)
        if spatial_squeeze:
            net = tf.squeeze(net, [1, 2], name="fc8/squeezed")
            ctx.end_points[f"{sc}/fc8"] = net
        ctx.end_points["predictions"] = tf.nn.softmax(net, name="predictions")
    return net, ctx.end_points


def _named(name: str):
    def build(inputs, num_classes=1000, is_training=False, dropout_keep_prob=0.5, spatial_squeeze=True,
              scope_name=name, store=None):
        blocks = [VggBlock(*b) for b in VGG_LAYOUTS[name]]
        return vgg(inputs, blocks, num_classes, is_training, dropout_keep_prob, spatial_squeeze, scope_name,
                   store=store)
    build.__name__ = name
    build.__doc__ = f"{name} as in tf-slim. See `vgg` for arguments and return values."
    return build


vgg_16 = _named("vgg_16")
vgg_19 = _named("vgg_19")
