"""The Inception family, v1, v2 and v3, as tf-slim builds them (`tf_slim/nets/inception_v1.py`,
`inception_v2.py`, `inception_v3.py`; the heads as tensorflow/models `research/slim/nets` has
them, with `global_pool`): the nets as data, one builder, their end points, tf-slim's names.

Szegedy et al., "Going Deeper with Convolutions", 2014 (arXiv:1409.4842); Ioffe and Szegedy,
"Batch Normalization", 2015 (arXiv:1502.03167); Szegedy et al., "Rethinking the Inception
Architecture for Computer Vision", 2015 (arXiv:1512.00567). A net is a stem of convolutions
and pools, then named mixed blocks (`Mixed_5b`) of branches (`Branch_0` ...) joined by one
Concat; v3's last two blocks split a branch into a 1x3 and a 3x1 conv joined by a Concat of
their own. Every conv has BatchNorm without gamma (epsilon 1e-3) and ReLU; v2's first layer is
a separable conv with biases. Depths are `max(int(depth * depth_multiplier), min_depth)` (v2,
v3). The head (`Logits/`): an average pool (v1 7x7 of stride 1; v2 7x7 and v3 8x8 reduced to
the map, stride 2), or a global mean with `global_pool`, then the 1x1 logits conv with biases.
v3's training-only auxiliary head is not built; the published checkpoints' `AuxLogits/`
variables are skipped when they load (the manifest says so).

Variables: `InceptionV3/Mixed_6c/Branch_1/Conv2d_0b_1x7/weights`, `.../BatchNorm/beta` (no
gamma), `.../BatchNorm/moving_mean`. End points (unscoped, as slim's): every stem layer
(`Conv2d_1a_7x7`, `MaxPool_2a_3x3`), every block (`Mixed_6e`), the pool (`AvgPool_0a_7x7`,
`AvgPool_1a`, or `global_pool`), `PreLogits` (v3), `Logits`, `Predictions`; ours: the logits conv
before the squeeze (`Logits/Conv2d_1c_1x1`, v1 `Logits/Conv2d_0c_1x1`) and `predictions`.
The spec half needs only the standard library; the builder imports TensorFlow when called.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cost import Tally
from .family import Family, ZooModel
from .mobilenet_v1 import check_head, depth_of, head_cost
from .spec_checks import Problems


@dataclass(frozen=True)
class Layer:
    """conv (+BN+ReLU), max/avg pool, sep (v2's separable stem conv), split (1xN and Nx1 convs, concatenated)."""

    kind: str
    name: str
    depth: int = 0
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: str = "SAME"
    parts: tuple["Layer", ...] = ()


@dataclass(frozen=True)
class Mixed:
    name: str
    branches: tuple[tuple[Layer, ...], ...]


def C(name: str, depth: int, k: int | tuple[int, int] = 1, stride: int = 1, padding: str = "SAME") -> Layer:
    return Layer("conv", name, depth, (k, k) if isinstance(k, int) else k, stride, padding)


def MAX(name: str, k: int, stride: int = 1, padding: str = "SAME") -> Layer:
    return Layer("max", name, 0, (k, k), stride, padding)


def AVG(name: str, k: int = 3) -> Layer:
    return Layer("avg", name, 0, (k, k))


def SPLIT(*parts: Layer) -> Layer:
    return Layer("split", "", parts=parts)


def _branches(*branches) -> tuple:
    return tuple(tuple(b) for b in branches)


def _v1(name: str, d0, d1a, d1b, d2a, d2b, d3, b2b: str = "Conv2d_0b_3x3") -> Mixed:
    return Mixed(name, _branches([C("Conv2d_0a_1x1", d0)], [C("Conv2d_0a_1x1", d1a), C("Conv2d_0b_3x3", d1b, 3)],
                                 [C("Conv2d_0a_1x1", d2a), C(b2b, d2b, 3)],
                                 [MAX("MaxPool_0a_3x3", 3), C("Conv2d_0b_1x1", d3)]))


INCEPTION_V1 = (
    C("Conv2d_1a_7x7", 64, 7, 2), MAX("MaxPool_2a_3x3", 3, 2), C("Conv2d_2b_1x1", 64), C("Conv2d_2c_3x3", 192, 3),
    MAX("MaxPool_3a_3x3", 3, 2),
    _v1("Mixed_3b", 64, 96, 128, 16, 32, 32), _v1("Mixed_3c", 128, 128, 192, 32, 96, 64),
    MAX("MaxPool_4a_3x3", 3, 2),
    _v1("Mixed_4b", 192, 96, 208, 16, 48, 64), _v1("Mixed_4c", 160, 112, 224, 24, 64, 64),
    _v1("Mixed_4d", 128, 128, 256, 24, 64, 64), _v1("Mixed_4e", 112, 144, 288, 32, 64, 64),
    _v1("Mixed_4f", 256, 160, 320, 32, 128, 128),
    MAX("MaxPool_5a_2x2", 2, 2),
    # tf-slim names this block's second 3x3 conv Conv2d_0a_3x3: checkpoints carry the name.
    _v1("Mixed_5b", 256, 160, 320, 32, 128, 128, b2b="Conv2d_0a_3x3"), _v1("Mixed_5c", 384, 192, 384, 48, 128, 128),
)


def _v2(name: str, d0, d1a, d1b, d2a, d2b, d3, pool: str = "avg") -> Mixed:
    last = AVG("AvgPool_0a_3x3") if pool == "avg" else MAX("MaxPool_0a_3x3", 3)
    return Mixed(name, _branches([C("Conv2d_0a_1x1", d0)], [C("Conv2d_0a_1x1", d1a), C("Conv2d_0b_3x3", d1b, 3)],
                                 [C("Conv2d_0a_1x1", d2a), C("Conv2d_0b_3x3", d2b, 3), C("Conv2d_0c_3x3", d2b, 3)],
                                 [last, C("Conv2d_0b_1x1", d3)]))


def _v2_reduce(name: str, d0a, d0b, d1a, d1b) -> Mixed:
    return Mixed(name, _branches([C("Conv2d_0a_1x1", d0a), C("Conv2d_1a_3x3", d0b, 3, 2)],
                                 [C("Conv2d_0a_1x1", d1a), C("Conv2d_0b_3x3", d1b, 3), C("Conv2d_1a_3x3", d1b, 3, 2)],
                                 [MAX("MaxPool_1a_3x3", 3, 2)]))


INCEPTION_V2 = (
    Layer("sep", "Conv2d_1a_7x7", 64, (7, 7), 2), MAX("MaxPool_2a_3x3", 3, 2), C("Conv2d_2b_1x1", 64),
    C("Conv2d_2c_3x3", 192, 3), MAX("MaxPool_3a_3x3", 3, 2),
    _v2("Mixed_3b", 64, 64, 64, 64, 96, 32), _v2("Mixed_3c", 64, 64, 96, 64, 96, 64),
    _v2_reduce("Mixed_4a", 128, 160, 64, 96),
    _v2("Mixed_4b", 224, 64, 96, 96, 128, 128), _v2("Mixed_4c", 192, 96, 128, 96, 128, 128),
    _v2("Mixed_4d", 160, 128, 160, 128, 160, 96), _v2("Mixed_4e", 96, 128, 192, 160, 192, 96),
    _v2_reduce("Mixed_5a", 128, 192, 192, 256),
    _v2("Mixed_5b", 352, 192, 320, 160, 224, 128), _v2("Mixed_5c", 352, 192, 320, 192, 224, 128, pool="max"),
)


def _v3_35(name: str, d3: int, b1=("Conv2d_0a_1x1", "Conv2d_0b_5x5")) -> Mixed:
    return Mixed(name, _branches([C("Conv2d_0a_1x1", 64)], [C(b1[0], 48), C(b1[1], 64, 5)],
                                 [C("Conv2d_0a_1x1", 64), C("Conv2d_0b_3x3", 96, 3), C("Conv2d_0c_3x3", 96, 3)],
                                 [AVG("AvgPool_0a_3x3"), C("Conv2d_0b_1x1", d3)]))


def _v3_17(name: str, d: int) -> Mixed:
    return Mixed(name, _branches(
        [C("Conv2d_0a_1x1", 192)],
        [C("Conv2d_0a_1x1", d), C("Conv2d_0b_1x7", d, (1, 7)), C("Conv2d_0c_7x1", 192, (7, 1))],
        [C("Conv2d_0a_1x1", d), C("Conv2d_0b_7x1", d, (7, 1)), C("Conv2d_0c_1x7", d, (1, 7)),
         C("Conv2d_0d_7x1", d, (7, 1)), C("Conv2d_0e_1x7", 192, (1, 7))],
        [AVG("AvgPool_0a_3x3"), C("Conv2d_0b_1x1", 192)]))


def _v3_8(name: str, b1_second: str) -> Mixed:
    return Mixed(name, _branches(
        [C("Conv2d_0a_1x1", 320)],
        [C("Conv2d_0a_1x1", 384), SPLIT(C("Conv2d_0b_1x3", 384, (1, 3)), C(b1_second, 384, (3, 1)))],
        [C("Conv2d_0a_1x1", 448), C("Conv2d_0b_3x3", 384, 3),
         SPLIT(C("Conv2d_0c_1x3", 384, (1, 3)), C("Conv2d_0d_3x1", 384, (3, 1)))],
        [AVG("AvgPool_0a_3x3"), C("Conv2d_0b_1x1", 192)]))


INCEPTION_V3 = (
    C("Conv2d_1a_3x3", 32, 3, 2, "VALID"), C("Conv2d_2a_3x3", 32, 3, 1, "VALID"), C("Conv2d_2b_3x3", 64, 3),
    MAX("MaxPool_3a_3x3", 3, 2, "VALID"), C("Conv2d_3b_1x1", 80, 1, 1, "VALID"),
    C("Conv2d_4a_3x3", 192, 3, 1, "VALID"), MAX("MaxPool_5a_3x3", 3, 2, "VALID"),
    # tf-slim's names, quirks included (Mixed_5c's Conv_1_0c_5x5, Mixed_6a's 3x3 Conv2d_1a_1x1).
    _v3_35("Mixed_5b", 32), _v3_35("Mixed_5c", 64, ("Conv2d_0b_1x1", "Conv_1_0c_5x5")), _v3_35("Mixed_5d", 64),
    Mixed("Mixed_6a", _branches([C("Conv2d_1a_1x1", 384, 3, 2, "VALID")],
                                [C("Conv2d_0a_1x1", 64), C("Conv2d_0b_3x3", 96, 3),
                                 C("Conv2d_1a_1x1", 96, 3, 2, "VALID")],
                                [MAX("MaxPool_1a_3x3", 3, 2, "VALID")])),
    _v3_17("Mixed_6b", 128), _v3_17("Mixed_6c", 160), _v3_17("Mixed_6d", 160), _v3_17("Mixed_6e", 192),
    Mixed("Mixed_7a", _branches([C("Conv2d_0a_1x1", 192), C("Conv2d_1a_3x3", 320, 3, 2, "VALID")],
                                [C("Conv2d_0a_1x1", 192), C("Conv2d_0b_1x7", 192, (1, 7)),
                                 C("Conv2d_0c_7x1", 192, (7, 1)), C("Conv2d_1a_3x3", 192, 3, 2, "VALID")],
                                [MAX("MaxPool_1a_3x3", 3, 2, "VALID")])),
    _v3_8("Mixed_7b", "Conv2d_0b_3x1"), _v3_8("Mixed_7c", "Conv2d_0c_3x1"),
)


@dataclass(frozen=True)
class Version:
    layers: tuple
    scope: str
    image_size: int
    pool_name: str  # the head's pool
    pool_kernel: int
    pool_stride: int
    reduce_pool: bool  # the pool's kernel shrinks to a smaller map (else a smaller map is an error)
    logits: str
    thinnable: bool  # takes depth_multiplier and min_depth
    pre_logits: bool


VERSIONS = {
    "inception_v1": Version(INCEPTION_V1, "InceptionV1", 224, "AvgPool_0a_7x7", 7, 1, False, "Conv2d_0c_1x1",
                            False, False),
    "inception_v2": Version(INCEPTION_V2, "InceptionV2", 224, "AvgPool_1a_{}x{}", 7, 2, True, "Conv2d_1c_1x1",
                            True, False),
    "inception_v3": Version(INCEPTION_V3, "InceptionV3", 299, "AvgPool_1a_{}x{}", 8, 2, True, "Conv2d_1c_1x1",
                            True, True),
}


def depth_fn(s):
    if not VERSIONS[s.family].thinnable:  # slim's inception_v1 has no depth_multiplier
        return lambda d: d
    return lambda d: depth_of(s, d)


def _separable_multiplier(depth: int) -> int:
    # slim: in_channels * depthwise_multiplier <= out_channels, so the separable conv is not overparameterized
    return min(int(depth / 3), 8)


def _walk(t: Tally, layer: Layer, depth, empty: list[str], block: str = "") -> None:
    if layer.kind == "split":
        parts = [t.fork() for _ in layer.parts]
        for part, p in zip(layer.parts, parts):
            _walk(p, part, depth, empty, block)
        t.join(parts)
    elif layer.kind in ("max", "avg"):
        t.pool(layer.kernel, layer.stride, layer.padding)
    elif layer.kind == "sep":
        d = depth(layer.depth)
        m = _separable_multiplier(d)
        t.layer(t.channels * m, layer.kernel, layer.stride, weights_per_output=layer.kernel[0] * layer.kernel[1],
                padding=layer.padding)
        t.conv(d, 1, bn=False, bias=True)
    else:
        t.conv(depth(layer.depth), layer.kernel, layer.stride, padding=layer.padding, bn_scale=False)
    if (t.height < 1 or t.width < 1) and not empty:
        empty.append(f"{block}/{layer.name}" if block else layer.name)


def walk(s) -> tuple[Tally, list[str]]:
    """The net's Tally at the end of the base, and the first layer whose map is empty (if any)."""
    version, depth, empty = VERSIONS[s.family], depth_fn(s), []
    t = Tally(*s.image_size)
    for item in version.layers:
        if isinstance(item, Mixed):
            branches = [t.fork() for _ in item.branches]
            for branch, b in zip(item.branches, branches):
                for layer in branch:
                    _walk(b, layer, depth, empty, item.name)
            t.join(branches)
        else:
            _walk(t, item, depth, empty)
    return t, empty


def cost(s) -> tuple[int, int]:
    t, _ = walk(s)
    version = VERSIONS[s.family]
    head_cost(s, t, version.pool_kernel, version.pool_stride)
    return t.parameters, t.activations


def check(s, problems: Problems) -> None:
    version = VERSIONS[s.family]
    if s.blocks:
        problems.add(f"blocks: {s.family}'s layers are slim's own; remove blocks (thin it with depth_multiplier)")
        return
    t, empty = walk(s)
    if empty:
        problems.add(f"image_size {list(s.image_size)}: {empty[0]} leaves an empty map; {s.family} needs a larger "
                     f"input (slim's size is {version.image_size}x{version.image_size})")
        return
    final = (t.height, t.width)
    if s.global_pool or s.num_classes is None:
        return
    k = version.pool_kernel
    if not version.reduce_pool and min(final) < k:
        problems.add(f"image_size {list(s.image_size)}: the last map is {final[0]}x{final[1]}, smaller than "
                     f"{version.pool_name}'s {k}x{k} VALID kernel; use image_size [{version.image_size}, "
                     f"{version.image_size}] or set \"global_pool\": true")
        return

    check_head(s, problems, final, k, version.pool_name.format(k, k), version.pool_stride)


def build(spec, images, store, is_training: bool = False, batch_norm_decay: float = 0.9997):
    """slim's `inception_vN(images, ...)` of `spec` (no auxiliary head): `(net, end_points)`."""
    import tensorflow as tf

    from .conv_layers import Context, scope
    from .mobilenet_v1 import logits_head

    version, depth = VERSIONS[spec.family], depth_fn(spec)
    ctx = Context(store=store, is_training=is_training, batch_norm_decay=batch_norm_decay,
                  batch_norm_epsilon=spec.batch_norm_epsilon, batch_norm_scale=spec.batch_norm_scale)
    with scope(ctx, spec.scope):
        net = images
        for item in version.layers:
            if isinstance(item, Mixed):
                with scope(ctx, item.name):
                    branches = []
                    for i, branch in enumerate(item.branches):
                        with scope(ctx, f"Branch_{i}"):
                            x = net
                            for layer in branch:
                                x = _layer(ctx, x, layer, depth)
                            branches.append(x)
                    net = tf.concat(branches, 3)
            else:
                net = _layer(ctx, net, item, depth)
            ctx.end_points[item.name] = net
        net = logits_head(ctx, spec, net, version.pool_kernel, version.pool_name, version.logits, spec.global_pool,
                          version.pool_stride, pre_logits=version.pre_logits)
    return net, ctx.end_points


def _layer(ctx, net, layer: Layer, depth):
    import tensorflow as tf

    from .conv_layers import conv2d, separable_conv2d

    if layer.kind == "split":
        return tf.concat([_layer(ctx, net, part, depth) for part in layer.parts], 3)
    if layer.kind == "max":
        return tf.nn.max_pool2d(net, layer.kernel, layer.stride, layer.padding, name=layer.name)
    if layer.kind == "avg":
        return tf.nn.avg_pool2d(net, layer.kernel, layer.stride, layer.padding, name=layer.name)
    if layer.kind == "sep":
        d = depth(layer.depth)
        return separable_conv2d(ctx, net, d, layer.kernel[0], _separable_multiplier(d), layer.stride,
                                layer.padding, name=layer.name)
    return conv2d(ctx, net, depth(layer.depth), layer.kernel, layer.stride, padding=layer.padding, name=layer.name,
                  collect=False)


def _family(name: str) -> Family:
    version = VERSIONS[name]
    fields = {"scope": version.scope, "global_pool": False, "batch_norm_epsilon": 1e-3, "batch_norm_scale": False}
    if version.thinnable:
        fields.update(depth_multiplier=1.0, min_depth=16)
    size = (version.image_size, version.image_size)
    return Family(
        name, name, fields, None, check, build, logits_scope=lambda s: f"{s.scope}/Logits/{version.logits}",
        probe_size=lambda s: s.image_size,  # VALID layers: small probes leave empty maps
        cost=cost, shrink="use depth_multiplier below 1 or a smaller image_size",
        checkpoint_mark=f"{version.scope}/Mixed_", default_blocks=(),
        # slim's Inception checkpoints: 1001 classes (background at 0), inception preprocessing.
        zoo=(ZooModel(name, 1001, size, "inception", 1, {}),),
        skipped_variables=("AuxLogits/",))


INCEPTION_V1_FAMILY, INCEPTION_V2_FAMILY, INCEPTION_V3_FAMILY = (_family(n) for n in VERSIONS)
