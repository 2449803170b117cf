"""ResNet v2 (pre-activation) in TF2, the tf-slim way: same spec, same variable names.

He et al., "Identity Mappings in Deep Residual Networks", 2016 (arXiv:1603.05027), as
`tf_slim/nets/resnet_v2.py` builds it. Inputs are `[batch, height, width, 3]` (NHWC).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf

from .layers import Context, VariableStore, batch_norm, conv2d, conv2d_same, scope, subsample
from .spec import LAYOUTS, Block, blocks_from_layout


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
    ctx = Context(store=store if store is not None else VariableStore(), is_training=is_training, **bn_args)
    with scope(ctx, scope_name) as sc:
        net = inputs
        if include_root_block:
            if output_stride is not None:
                if output_stride % 4 != 0:
                    raise ValueError("The output_stride needs to be a multiple of 4.")
                output_stride //= 4
            net = conv2d_same(ctx, net, 64, 7, stride=2, name="conv1", normalizer=False, activation_fn=None)
            net = tf.nn.max_pool2d(net, ksize=3, strides=2, padding="SAME", name="pool1")
        net = stack_blocks_dense(ctx, net, blocks, output_stride)
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


@dataclass(frozen=True)
class ResNetConfig:
    """Everything needed to rebuild a model: recorded in the bundle's manifest."""

    name: str
    layout: tuple[tuple[str, int, int, int], ...]
    num_classes: int | None = 1001
    global_pool: bool = True
    output_stride: int | None = None
    include_root_block: bool = True
    spatial_squeeze: bool = True
    batch_norm_epsilon: float = 1e-5
    batch_norm_scale: bool = True

    @classmethod
    def for_name(cls, name: str, **overrides: Any) -> "ResNetConfig":
        return cls(name=name, layout=tuple(tuple(b) for b in LAYOUTS[name]), **overrides)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "layout": [list(b) for b in self.layout], "num_classes": self.num_classes,
                "global_pool": self.global_pool, "output_stride": self.output_stride,
                "include_root_block": self.include_root_block, "spatial_squeeze": self.spatial_squeeze,
                "batch_norm_epsilon": self.batch_norm_epsilon, "batch_norm_scale": self.batch_norm_scale}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ResNetConfig":
        d = dict(d)
        d["layout"] = tuple(tuple(b) for b in d["layout"])
        return cls(**d)


class ResNetV2(tf.Module):
    """A ResNet v2 whose variables carry tf-slim's names (`self.store.vars`)."""

    def __init__(self, config: ResNetConfig, seed: int = 0, probe_size: int = 32):
        super().__init__(name=None)
        self.config = config
        self.blocks = blocks_from_layout(list(config.layout))
        self.store = VariableStore(seed=seed)
        # One eager pass on a small input creates every variable with its final shape.
        self(tf.zeros([1, probe_size, probe_size, 3]))
        self.store.frozen = True

    def __call__(self, images: tf.Tensor, is_training: bool = False, batch_norm_decay: float = 0.997
                 ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        c = self.config
        return resnet_v2(images, self.blocks, c.num_classes, is_training=is_training, global_pool=c.global_pool,
                         output_stride=c.output_stride, include_root_block=c.include_root_block,
                         spatial_squeeze=c.spatial_squeeze, scope_name=c.name, store=self.store,
                         batch_norm_decay=batch_norm_decay, batch_norm_epsilon=c.batch_norm_epsilon,
                         batch_norm_scale=c.batch_norm_scale)

    @property
    def variables_by_name(self) -> dict[str, tf.Variable]:
        return self.store.vars


def _named(name: str):
    def build(inputs, num_classes=None, is_training=False, global_pool=True, output_stride=None,
              spatial_squeeze=True, store=None, scope_name=name, **bn_args):
        return resnet_v2(inputs, blocks_from_layout(LAYOUTS[name]), num_classes, is_training, global_pool,
                         output_stride, include_root_block=True, spatial_squeeze=spatial_squeeze,
                         scope_name=scope_name, store=store, **bn_args)
    build.__name__ = name
    build.__doc__ = f"{name} as in tf-slim. See `resnet_v2` for arguments and return values."
    return build


resnet_v2_50 = _named("resnet_v2_50")
resnet_v2_101 = _named("resnet_v2_101")
resnet_v2_152 = _named("resnet_v2_152")
resnet_v2_200 = _named("resnet_v2_200")
