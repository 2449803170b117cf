"""The MobileNet v1 family, as tensorflow/models `research/slim/nets/mobilenet_v1.py` builds it:
its spec (`conv_defs`), its builder and its end points, with tf-slim's variable names.

Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017 (arXiv:1704.04861). The net is a list of `Conv(kernel, stride, depth)` and
`DepthSepConv(kernel, stride, depth)`: layer i is `Conv2d_i` (a conv), or `Conv2d_i_depthwise`
(a 3x3 depthwise conv) then `Conv2d_i_pointwise` (a 1x1 conv), each with BatchNorm (epsilon
1e-3, with gamma) and ReLU6, SAME padding (TensorFlow's own, not slim's `conv2d_same`). Depths
are `max(int(depth * depth_multiplier), min_depth)`. The head (`Logits/`) is `AvgPool_1a` with
the kernel reduced for small inputs (or a global mean with `global_pool`), then
`Conv2d_1c_1x1` with biases and `SpatialSqueeze`. `output_stride` 8 or 16 turns the later strides
into atrous rates, as slim does for DeepLab (a `Conv` layer keeps its stride, as in slim).

Variables: `MobilenetV1/Conv2d_1_depthwise/depthwise_weights`, `.../Conv2d_1_depthwise/BatchNorm/
gamma`, `MobilenetV1/Conv2d_1_pointwise/weights`, `MobilenetV1/Logits/Conv2d_1c_1x1/biases`.
End points (slim's, unscoped): `Conv2d_0`, `Conv2d_N_depthwise`, `Conv2d_N_pointwise`,
`AvgPool_1a` (or `global_pool`), `Logits`, `Predictions`; and ours: `Logits/Conv2d_1c_1x1` (the
logits before the squeeze, the per-layer ranking's logits layer) and `predictions`.
The spec half needs only the standard library; the builder imports TensorFlow when called.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cost import Tally
from .family import Family, ZooModel
from .spec_checks import Problems, check_int

SCOPE = "MobilenetV1"
SHRINK = "use fewer or narrower layers (conv_defs, depth_multiplier)"
OUTPUT_STRIDES = (8, 16, 32)  # what slim's mobilenet_v1_base allows
POOL_KERNEL = 7  # AvgPool_1a: 7x7, reduced to the map for small inputs


@dataclass(frozen=True)
class Conv:
    """A full convolution layer (slim's `Conv` namedtuple)."""

    kernel: tuple[int, int]
    stride: int
    depth: int

    def to_json(self) -> dict[str, Any]:
        return {"op": "Conv", "kernel": list(self.kernel), "stride": self.stride, "depth": self.depth}


@dataclass(frozen=True)
class DepthSepConv:
    """A depthwise conv then a 1x1 pointwise conv of `depth` channels (slim's `DepthSepConv`)."""

    kernel: tuple[int, int]
    stride: int
    depth: int

    def to_json(self) -> dict[str, Any]:
        return {"op": "DepthSepConv", "kernel": list(self.kernel), "stride": self.stride, "depth": self.depth}


# slim's _CONV_DEFS: the published MobileNet v1 body.
CONV_DEFS: tuple[Conv | DepthSepConv, ...] = (
    Conv((3, 3), 2, 32),
    *(DepthSepConv((3, 3), s, d) for s, d in ((1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
                                              (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024),
                                              (1, 1024))),
)
_OPS = {"Conv": Conv, "DepthSepConv": DepthSepConv}


def parse_kernel(problems: Problems, where: str, k: Any) -> tuple[int, int] | None:
    """A kernel size: an integer or [height, width], each >= 1."""
    sides = [k, k] if not isinstance(k, list) else k
    if len(sides) != 2:
        problems.add(f"{where}: kernel {k!r}: give an integer or [height, width]")
        return None
    checked = [check_int(problems, f"{where}: kernel", v) for v in sides]
    return None if None in checked else (checked[0], checked[1])  # type: ignore[return-value]


def parse_blocks(blocks: list, problems: Problems) -> tuple | None:
    parsed = [_parse_layer(i, b, problems) for i, b in enumerate(blocks)]
    return None if any(b is None for b in parsed) else tuple(parsed)


def _parse_layer(i: int, b: Any, problems: Problems) -> Conv | DepthSepConv | None:
    where = f"blocks[{i}]"
    if not isinstance(b, dict) or b.get("op") not in _OPS:
        got = b.get("op") if isinstance(b, dict) else b
        problems.add(f"{where}: unknown layer {got!r}; give {{\"op\": \"Conv\" or \"DepthSepConv\", \"kernel\", "
                     "\"stride\", \"depth\"}, as slim's conv_defs")
        return None
    where = f"{where} ({b['op']})"
    missing = [k for k in ("kernel", "stride", "depth") if k not in b]
    extra = sorted(set(b) - {"op", "kernel", "stride", "depth"})
    for k in missing:
        problems.add(f"{where}: missing {k!r}; a {b['op']} needs kernel, stride and depth")
    for k in extra:
        problems.add(f"{where}: unknown field {k!r}; a {b['op']} has kernel, stride and depth")
    if missing or extra:
        return None
    values = (parse_kernel(problems, where, b["kernel"]),
              check_int(problems, f"{where}: stride", b["stride"]),
              check_int(problems, f"{where}: depth", b["depth"]))
    return None if None in values else _OPS[b["op"]](*values)


def depth_of(s, depth: int) -> int:
    return max(int(depth * s.depth_multiplier), s.min_depth)


def strides(s):
    """(layer, its stride, its atrous rate) as slim's base loop assigns them under output_stride."""
    current, rate = 1, 1
    for layer in s.blocks:
        if s.output_stride is not None and current == s.output_stride:
            yield layer, 1, rate
            rate *= layer.stride
        else:
            yield layer, layer.stride, 1
            current *= layer.stride


def cost(s) -> tuple[int, int]:
    t = Tally(*s.image_size)
    for layer, stride, rate in strides(s):
        if isinstance(layer, Conv):  # slim strides a Conv layer whatever output_stride says
            t.conv(depth_of(s, layer.depth), layer.kernel, layer.stride)
        else:
            t.layer(t.channels, layer.kernel, stride, rate, weights_per_output=layer.kernel[0] * layer.kernel[1],
                    extra_params=4 * t.channels)
            t.conv(depth_of(s, layer.depth), 1)
    head_cost(s, t, POOL_KERNEL)
    return t.parameters, t.activations


def head_cost(s, t: Tally, kernel: int, stride: int = 2) -> None:
    """The pool (global, or `kernel` reduced to the map, VALID) and the logits conv."""
    if s.global_pool:
        t.height = t.width = 1
    else:
        t.pool((min(t.height, kernel), min(t.width, kernel)), stride, "VALID")
    if s.num_classes is not None:
        t.conv(s.num_classes, 1, bn=False, bias=True)


def check_head(s, problems: Problems, final: tuple[int, int], kernel: int, pool: str, stride: int = 2) -> None:
    """With a fixed pool the logits are 1x1 only when the last map is at most `kernel` wide."""
    if s.global_pool or s.num_classes is None or not s.spatial_squeeze:
        return
    out = [(v - min(v, kernel)) // stride + 1 for v in final]
    if out != [1, 1]:
        problems.add(f"image_size {list(s.image_size)}: the last map is {final[0]}x{final[1]}, {pool} ({kernel}x"
                     f"{kernel} VALID, stride {stride}) leaves {out[0]}x{out[1]} logits, and spatial_squeeze needs "
                     "1x1; set \"global_pool\": true (or \"spatial_squeeze\": false)")


def check(s, problems: Problems) -> None:
    if not s.blocks or not all(isinstance(b, (Conv, DepthSepConv)) for b in s.blocks):
        problems.add("blocks: give a non-empty list of {\"op\": \"Conv\" or \"DepthSepConv\", ...} layers")
        return
    if s.output_stride is not None and s.output_stride not in OUTPUT_STRIDES:
        problems.add(f"output_stride {s.output_stride!r}: slim's MobileNet v1 takes 8, 16, 32 or null")
        return
    t = Tally(*s.image_size)
    for layer, stride, _ in strides(s):
        t.pool(layer.kernel, layer.stride if isinstance(layer, Conv) else stride)
    check_head(s, problems, (t.height, t.width), POOL_KERNEL, "AvgPool_1a")


def _stride_of(layer, stride: int) -> int:
    return layer.stride if isinstance(layer, Conv) else stride


def build(spec, images, store, is_training: bool = False, batch_norm_decay: float = 0.9997):
    """slim's `mobilenet_v1(images, ...)` of `spec`: `(net, end_points)`."""
    import tensorflow as tf

    from .conv_layers import Context, conv2d, depthwise_conv2d, scope

    ctx = Context(store=store, is_training=is_training, batch_norm_decay=batch_norm_decay,
                  batch_norm_epsilon=spec.batch_norm_epsilon, batch_norm_scale=True)
    ep = ctx.end_points
    with scope(ctx, spec.scope):
        net = images
        for i, (layer, stride, rate) in enumerate(strides(spec)):
            depth = depth_of(spec, layer.depth)
            if isinstance(layer, Conv):
                net = ep[f"Conv2d_{i}"] = conv2d(ctx, net, depth, layer.kernel, _stride_of(layer, stride),
                                                 name=f"Conv2d_{i}", activation_fn=tf.nn.relu6, collect=False)
                continue
            net = ep[f"Conv2d_{i}_depthwise"] = depthwise_conv2d(ctx, net, layer.kernel, stride, rate,
                                                                 name=f"Conv2d_{i}_depthwise")
            net = ep[f"Conv2d_{i}_pointwise"] = conv2d(ctx, net, depth, 1, name=f"Conv2d_{i}_pointwise",
                                                       activation_fn=tf.nn.relu6, collect=False)
        net = logits_head(ctx, spec, net, POOL_KERNEL, "AvgPool_1a", "Conv2d_1c_1x1", spec.global_pool)
    return net, ep


def logits_head(ctx, spec, net, kernel: int, pool_name: str, logits_name: str, global_pool: bool,
                pool_stride: int = 2, pre_logits: bool = False):
    """`Logits/`: the pool, `logits_name` (1x1, biases), `SpatialSqueeze`; end points `pool_name`
    (or `global_pool`), `PreLogits` when asked, `Logits/<logits_name>` (ours, before the
    squeeze), `Logits`, `Predictions` (and our `predictions`).

    `global_pool`: a mean over the map (slim's `global_pool=True`); else an average pool of
    `kernel` reduced to the map, VALID, of `pool_stride` (slim's `avg_pool2d` default, 2, outside
    the base's arg scope; MobileNet v2's "global pool" is such a pool, its kernel the whole map). Without classes the pooled features are the net. The pool's name takes its
    kernel size when `pool_name` has `{}x{}` (Inception's `AvgPool_1a_8x8`)."""
    import tensorflow as tf

    from .conv_layers import conv2d, scope

    ep = ctx.end_points
    with scope(ctx, "Logits"):
        if global_pool:
            net = ep["global_pool"] = tf.reduce_mean(net, [1, 2], keepdims=True, name="global_pool")
        else:
            size = [min(int(net.shape[1]), kernel), min(int(net.shape[2]), kernel)]
            name = pool_name.format(*size)
            net = tf.nn.avg_pool2d(net, size, pool_stride, "VALID", name=name)
            ep[pool_name.split("_{")[0]] = net
        if spec.num_classes is None:
            return net
        if pre_logits:
            ep["PreLogits"] = net
        # Ours, not slim's: the logits conv before the squeeze, the per-layer ranking's logits layer
        # (ResNet's `NAME/logits`); the squeezed Logits become the ONNX output `logits`.
        net = ep[f"Logits/{logits_name}"] = conv2d(ctx, net, spec.num_classes, 1, name=logits_name,
                                                   normalizer=False, activation_fn=None, collect=False)
        if spec.spatial_squeeze:
            net = tf.squeeze(net, [1, 2], name="SpatialSqueeze")
    ep["Logits"] = net
    ep["Predictions"] = ep["predictions"] = tf.nn.softmax(net, name="Predictions")
    return net


_FIELDS = {"scope": SCOPE, "depth_multiplier": 1.0, "min_depth": 8, "global_pool": False, "output_stride": None,
           "batch_norm_epsilon": 1e-3}

MOBILENET_V1 = Family(
    "mobilenet_v1", "mobilenet_v1", _FIELDS, parse_blocks, check, build,
    logits_scope=lambda s: f"{s.scope}/Logits/Conv2d_1c_1x1",
    probe_size=lambda s: (32, 32),  # the variables do not depend on the input size
    cost=cost, shrink=SHRINK, checkpoint_mark="_depthwise/depthwise_weights",
    default_blocks=CONV_DEFS,
    # slim's mobilenet_v1, _075, _050, _025: 1001 classes (background at 0), inception preprocessing.
    zoo=tuple(ZooModel(name, 1001, (224, 224), "inception", 1, {"depth_multiplier": m})
              for name, m in (("mobilenet_v1", 1.0), ("mobilenet_v1_075", 0.75), ("mobilenet_v1_050", 0.5),
                              ("mobilenet_v1_025", 0.25))),
)
