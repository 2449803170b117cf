"""The VGG family, the tf-slim way: its spec, its builder and its end points, with tf-slim's
variable names (`vgg_16/conv1/conv1_1/weights`).

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
2014 (arXiv:1409.1556), as `tf_slim/nets/vgg.py` builds it: 3x3 SAME convolutions with biases
and ReLU, 2x2 VALID max-pools, and the fully connected layers as convolutions (fc6 7x7 VALID,
fc7 and fc8 1x1), so a 224x224 input gives 1x1 logits. Inputs are `[batch, height, width, 3]`
(NHWC), 0..255 RGB minus the ImageNet means (`vgg` preprocessing).

The spec half needs only the standard library; the builder imports TensorFlow when called.
End points: every conv (`vgg_16/conv1/conv1_1`), pool (`vgg_16/pool1`) and fc layer
(`vgg_16/fc6`), and `predictions`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cost import Tally
from .family import Family, ZooModel
from .spec_checks import Problems, check_int, check_scope, check_unique_scopes

# tf-slim's VGG turns fc6 into a 7x7 VALID convolution over pool5.
VGG_FC6_KERNEL = 7

# Name -> [(scope, num_convs, depth)], as in tf-slim's vgg_16 and vgg_19.
VGG_LAYOUTS: dict[str, list[tuple[str, int, int]]] = {
    "vgg_16": [("conv1", 2, 64), ("conv2", 2, 128), ("conv3", 3, 256), ("conv4", 3, 512), ("conv5", 3, 512)],
    "vgg_19": [("conv1", 2, 64), ("conv2", 2, 128), ("conv3", 4, 256), ("conv4", 4, 512), ("conv5", 4, 512)],
}


@dataclass(frozen=True)
class VggBlock:
    """`num_convs` 3x3 convolutions of `depth` channels (`conv1/conv1_1`, ...), then a 2x2 max-pool."""

    scope: str
    num_convs: int
    depth: int

    def to_json(self) -> list[Any]:
        return [self.scope, self.num_convs, self.depth]


def parse_blocks(blocks: list, problems: Problems) -> tuple[VggBlock, ...] | None:
    parsed = [_parse_block(i, b, problems) for i, b in enumerate(blocks)]
    return None if any(b is None for b in parsed) else tuple(parsed)  # type: ignore[arg-type]


def _parse_block(i: int, b: Any, problems: Problems) -> VggBlock | None:
    if not isinstance(b, list) or len(b) != 3:
        problems.add(f"blocks[{i}] {b!r}: a vgg block is [scope, num_convs, depth], e.g. [\"conv1\", 2, 64]")
        return None
    scope, num, depth = b
    where = f"blocks[{i}] ({scope})"
    values = (check_scope(problems, i, scope),
              check_int(problems, f"{where}: num_convs", num, fix="; a block needs a convolution"),
              check_int(problems, f"{where}: depth", depth))
    return None if None in values else VggBlock(*values)  # type: ignore[arg-type]


def check(s, problems: Problems) -> None:
    if not s.blocks or not all(isinstance(b, VggBlock) for b in s.blocks):
        problems.add(f"blocks: give a non-empty list of {s.family} blocks")
        return
    check_unique_scopes(problems, [b.scope for b in s.blocks])
    check_int(problems, "fc_depth", s.fc_depth)
    if s.num_classes is None:
        problems.add("a vgg spec needs num_classes (fc8 is its last layer)")
    if not isinstance(s.image_size, tuple) or not all(isinstance(v, int) and v >= 8 for v in s.image_size):
        return  # the head's own check says what is wrong with it
    h, w = s.image_size
    for _ in s.blocks:  # each block ends in a 2x2 VALID max-pool of stride 2
        h, w = h // 2, w // 2
    last = s.blocks[-1].scope
    if min(h, w) < VGG_FC6_KERNEL:
        problems.add(f"image_size {list(s.image_size)}: {last} pools to {h}x{w}, smaller than fc6's "
                     f"{VGG_FC6_KERNEL}x{VGG_FC6_KERNEL} VALID kernel; use image_size [224, 224]")
        return
    out_h, out_w = h - VGG_FC6_KERNEL + 1, w - VGG_FC6_KERNEL + 1
    if s.spatial_squeeze and (out_h, out_w) != (1, 1):
        problems.add(f"image_size {list(s.image_size)}: fc8 is {out_h}x{out_w}, and spatial_squeeze needs 1x1; "
                     "use image_size [224, 224] or set \"spatial_squeeze\": false")


def cost(s) -> tuple[int, int]:
    """(parameters, activation values of one image) of the spec, as the builder lays it out."""
    t = Tally(*s.image_size)
    for block in s.blocks:
        for _ in range(block.num_convs):
            t.conv(block.depth, 3, bn=False, bias=True)
        t.pool(2, 2, "VALID")
    t.conv(s.fc_depth, VGG_FC6_KERNEL, padding="VALID", bn=False, bias=True)
    t.conv(s.fc_depth, 1, bn=False, bias=True)
    t.conv(s.num_classes, 1, bn=False, bias=True)
    return t.parameters, t.activations


def vgg(inputs, blocks: list[VggBlock], num_classes: int = 1000, is_training: bool = False,
        dropout_keep_prob: float = 0.5, spatial_squeeze: bool = True, scope_name: str = "vgg_16",
        fc_depth: int = 4096, store=None):
    """The VGG generator. Returns `(net, end_points)` like tf-slim.

    With `spatial_squeeze` the logits are `[batch, num_classes]` and `vgg_16/fc8` is the
    squeezed tensor, as in tf-slim. `predictions` (softmax) is ours: tf-slim's VGG has no such
    end point. Dropout runs only when `is_training`.
    """
    import tensorflow as tf

    from .conv_layers import Context, VariableStore, conv2d, scope

    ctx = Context(store=store if store is not None else VariableStore(), is_training=is_training)

    def dropout(net):
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


def build(spec, images, store, is_training: bool = False, batch_norm_decay: float = 0.997):
    """The net of a vgg spec (VGG has no BatchNorm: `batch_norm_decay` is unused)."""
    return vgg(images, list(spec.blocks), spec.num_classes, is_training=is_training,
               spatial_squeeze=spec.spatial_squeeze, scope_name=spec.name, fc_depth=spec.fc_depth, store=store)


VGG = Family(
    "vgg", "vgg", {"fc_depth": 4096}, parse_blocks, check, build,
    logits_scope=lambda s: f"{s.name}/fc8",
    probe_size=lambda s: s.image_size,  # fc6's kernel takes pool5's size: the variables need the real input
    cost=cost, shrink="use fewer or narrower convolutions (num_convs, depth, fc_depth)",
    checkpoint_mark="/conv1/conv1_1/",
    # tf-slim's VGG checkpoints: 1000 classes, the vgg preprocessing.
    zoo=tuple(ZooModel(name, 1000, (224, 224), "vgg", 0, {"blocks": tuple(VggBlock(*b) for b in layout)})
              for name, layout in VGG_LAYOUTS.items()),
    field_hints={
        # Reached through CLI overrides (--output-stride, --no-global-pool) or a bad manifest.
        "output_stride": "output_stride applies to v1/v2 ResNets only; vgg has no atrous mode",
        "global_pool": "global_pool/include_root_block apply to v1/v2 ResNets only; vgg's fc6 is a 7x7 VALID "
                       "convolution (drop --no-global-pool)",
        "include_root_block": "global_pool/include_root_block apply to v1/v2 ResNets only; vgg's fc6 is a 7x7 "
                              "VALID convolution (drop --no-global-pool)",
    })
