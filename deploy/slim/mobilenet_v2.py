"""The MobileNet v2 family, as tensorflow/models `research/slim/nets/mobilenet/mobilenet.py`,
`mobilenet_v2.py` and `conv_blocks.py` build it: its spec (slim's `V2_DEF` op list), its
builder and its end points, with tf-slim's variable names.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018
(arXiv:1801.04381). The net is a list of ops: `conv2d` (scopes `Conv`, `Conv_1`, ...: conv,
BatchNorm, ReLU6) and `expanded_conv` (scopes `expanded_conv`, `expanded_conv_1`, ...): `expand`
(1x1, BN, ReLU6; only when the expansion widens the input), `depthwise` (3x3, BN, ReLU6),
`project` (1x1, BN, no activation), and the input added back when the stride is 1 and the depths
match. BatchNorm has gamma, epsilon 1e-3. Every op's `num_outputs` becomes
`_make_divisible(num_outputs * depth_multiplier, 8, min_depth)`; the expansion is
`_make_divisible(input depth * factor, divisible_by)` of the actual input. With
`finegrain_classification_mode` and a multiplier below 1 the last op keeps its width (slim's
`mobilenet_v2_050`/`_035` set it). The head (`Logits/`) pools globally, then `Conv2d_1c_1x1` with
biases, always squeezed. `output_stride` turns the later strides into atrous rates (DeepLab).

Variables: `MobilenetV2/Conv/weights`, `MobilenetV2/expanded_conv_3/expand/BatchNorm/moving_mean`,
`.../expanded_conv_3/depthwise/depthwise_weights`, `.../project/weights`,
`MobilenetV2/Logits/Conv2d_1c_1x1/biases`. End points: slim's `layer_N` (op N-1's output),
`layer_N/expansion_output`, `layer_N/depthwise_output`, `layer_N/output`, `global_pool`, `Logits`,
`Predictions`; and ours: each op's output by its scope (`Conv`, `expanded_conv_3`, `Conv_1`), the
units of the per-layer ranking, `Logits/Conv2d_1c_1x1` (before the squeeze) and `predictions`.
The spec half needs only the standard library; the builder imports TensorFlow when called.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cost import Tally
from .family import Family, ZooModel
from .mobilenet_v1 import parse_kernel
from .spec_checks import Problems, check_int

SCOPE = "MobilenetV2"
SHRINK = "use fewer or narrower ops (blocks, depth_multiplier)"


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """slim's `_make_divisible`: round to a multiple of `divisor`, never below `min_value`
    (default: divisor) nor more than 10% below `v`."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


@dataclass(frozen=True)
class ConvOp:
    """`op(slim.conv2d, stride, num_outputs, kernel_size)`: conv, BN, ReLU6."""

    num_outputs: float
    stride: int = 1
    kernel_size: tuple[int, int] = (3, 3)

    def to_json(self) -> dict[str, Any]:
        return {"op": "conv2d", "num_outputs": self.num_outputs, "stride": self.stride,
                "kernel_size": list(self.kernel_size)}


@dataclass(frozen=True)
class ExpandedConv:
    """`op(expanded_conv, stride, num_outputs, expansion_size=expand_input(factor, divisible_by))`."""

    num_outputs: float
    stride: int = 1
    expansion_factor: float = 6
    expansion_divisible_by: int = 8
    kernel_size: tuple[int, int] = (3, 3)
    residual: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"op": "expanded_conv", "num_outputs": self.num_outputs, "stride": self.stride,
                "expansion_factor": self.expansion_factor, "expansion_divisible_by": self.expansion_divisible_by,
                "kernel_size": list(self.kernel_size), "residual": self.residual}


# slim's V2_DEF spec.
V2_DEF: tuple[ConvOp | ExpandedConv, ...] = (
    ConvOp(32, 2),
    ExpandedConv(16, expansion_factor=1, expansion_divisible_by=1),
    *(ExpandedConv(d, s) for s, d in ((2, 24), (1, 24), (2, 32), (1, 32), (1, 32), (2, 64), (1, 64), (1, 64),
                                      (1, 64), (1, 96), (1, 96), (1, 96), (2, 160), (1, 160), (1, 160), (1, 320))),
    ConvOp(1280, 1, (1, 1)),
)
_FIELDS_OF = {"conv2d": ("num_outputs", "stride", "kernel_size"),
              "expanded_conv": ("num_outputs", "stride", "expansion_factor", "expansion_divisible_by", "kernel_size",
                                "residual")}


def parse_blocks(blocks: list, problems: Problems) -> tuple | None:
    parsed = [_parse_op(i, b, problems) for i, b in enumerate(blocks)]
    return None if any(b is None for b in parsed) else tuple(parsed)


def _parse_op(i: int, b: Any, problems: Problems) -> ConvOp | ExpandedConv | None:
    if not isinstance(b, dict) or b.get("op") not in _FIELDS_OF:
        got = b.get("op") if isinstance(b, dict) else b
        problems.add(f"blocks[{i}]: unknown op {got!r}; give {{\"op\": \"conv2d\" or \"expanded_conv\", "
                     "\"num_outputs\", ...}, as slim's V2_DEF")
        return None
    op, where = b["op"], f"blocks[{i}] ({b['op']})"
    known = _FIELDS_OF[op]
    bad = [k for k in b if k != "op" and k not in known]
    for k in bad:
        problems.add(f"{where}: unknown field {k!r}; a {op} has {', '.join(known)}")
    if "num_outputs" not in b:
        problems.add(f"{where}: missing 'num_outputs'; every op needs its depth")
    args = {k: v for k, v in b.items() if k in known}
    ok = not bad and "num_outputs" in b
    for key, value in args.items():
        if key == "kernel_size":
            args[key] = parse_kernel(problems, where, value)
        elif key == "residual":
            if not isinstance(value, bool):
                problems.add(f"{where}: residual {value!r}: give true or false")
                args[key] = None
        elif key == "expansion_factor":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                problems.add(f"{where}: expansion_factor {value!r}: give a number > 0 (slim: 6, 1 for the first)")
                args[key] = None
        else:
            args[key] = check_int(problems, f"{where}: {key}", value)
        ok = ok and args[key] is not None
    return (ConvOp if op == "conv2d" else ExpandedConv)(**args) if ok else None


def depths(s) -> list[int]:
    """Each op's output depth, as slim's `depth_multiplier` op transform makes it."""
    last = len(s.blocks) - 1
    out = []
    for i, op in enumerate(s.blocks):
        n = op.num_outputs
        if s.finegrain_classification_mode and s.depth_multiplier < 1 and i == last:
            n = n / s.depth_multiplier
        out.append(make_divisible(n * s.depth_multiplier, 8, s.min_depth))
    return out


def strides(s):
    """(op, its depth, its stride, its rate, its scope) as slim's `mobilenet_base` loop makes them."""
    current, rate, seen = 1, 1, {"conv2d": 0, "expanded_conv": 0}
    for op, depth in zip(s.blocks, depths(s)):
        kind = "conv2d" if isinstance(op, ConvOp) else "expanded_conv"
        base = "Conv" if kind == "conv2d" else "expanded_conv"
        name = base if seen[kind] == 0 else f"{base}_{seen[kind]}"
        seen[kind] += 1
        if s.output_stride is not None and current == s.output_stride:
            layer_stride, layer_rate, rate = 1, rate, rate * op.stride
        else:
            layer_stride, layer_rate, current = op.stride, 1, current * op.stride
        # slim adds the rate only where the kernel is not 1x1
        yield op, depth, layer_stride, (layer_rate if tuple(op.kernel_size) != (1, 1) else 1), name


def inner_depth(op: ExpandedConv, depth_in: int) -> int:
    return make_divisible(depth_in * op.expansion_factor, op.expansion_divisible_by)


def cost(s) -> tuple[int, int]:
    t = Tally(*s.image_size)
    for op, depth, stride, rate, _ in strides(s):
        if isinstance(op, ConvOp):
            t.conv(depth, op.kernel_size, stride, rate)
            continue
        depth_in, inner = t.channels, inner_depth(op, t.channels)
        if inner > depth_in:
            t.conv(inner, 1)
        t.layer(t.channels, op.kernel_size, stride, rate, weights_per_output=op.kernel_size[0] * op.kernel_size[1],
                extra_params=4 * t.channels)
        t.conv(depth, 1)
        if op.residual and stride == 1 and depth == depth_in:
            t.add(t.height * t.width * depth)
    t.height = t.width = 1
    if s.num_classes is not None:
        t.conv(s.num_classes, 1, bn=False, bias=True)
    return t.parameters, t.activations


def check(s, problems: Problems) -> None:
    if not s.blocks or not all(isinstance(b, (ConvOp, ExpandedConv)) for b in s.blocks):
        problems.add("blocks: give a non-empty list of {\"op\": \"conv2d\" or \"expanded_conv\", ...} ops")
    if s.output_stride is not None and (isinstance(s.output_stride, bool) or not isinstance(s.output_stride, int)
                                        or s.output_stride < 1 or (s.output_stride > 1 and s.output_stride % 2)):
        problems.add(f"output_stride {s.output_stride!r}: slim's MobileNet v2 takes 1, an even number (8, 16, 32) "
                     "or null")
    if not s.spatial_squeeze:
        problems.add("spatial_squeeze false: slim's MobileNet v2 always squeezes its 1x1 logits; leave it out")


def build(spec, images, store, is_training: bool = False, batch_norm_decay: float = 0.997):
    """slim's `mobilenet_v2.mobilenet(images, ...)` of `spec`: `(net, end_points)`."""
    import tensorflow as tf

    from .conv_layers import Context, conv2d, scope
    from .mobilenet_v1 import logits_head

    ctx = Context(store=store, is_training=is_training, batch_norm_decay=batch_norm_decay,
                  batch_norm_epsilon=spec.batch_norm_epsilon, batch_norm_scale=True)
    ep = ctx.end_points
    with scope(ctx, spec.scope):
        net = images
        for i, (op, depth, stride, rate, name) in enumerate(strides(spec)):
            layer = f"layer_{i + 1}"
            if isinstance(op, ConvOp):
                net = conv2d(ctx, net, depth, op.kernel_size, stride, rate, name=name, activation_fn=tf.nn.relu6,
                             collect=False)
            else:
                net = _expanded_conv(ctx, net, op, depth, stride, rate, name, layer)
            ep[layer] = ep[name] = net
        net = logits_head(ctx, spec, net, max(int(net.shape[1]), int(net.shape[2])), "global_pool", "Conv2d_1c_1x1",
                          global_pool=False, pool_stride=1)
    return net, ep


def _expanded_conv(ctx, net, op: ExpandedConv, depth: int, stride: int, rate: int, name: str, layer: str):
    import tensorflow as tf

    from .conv_layers import conv2d, depthwise_conv2d, scope

    ep = ctx.end_points
    with scope(ctx, name):
        depth_in, x = int(net.shape[-1]), net
        inner = inner_depth(op, depth_in)
        if inner > depth_in:
            x = ep[f"{layer}/expansion_output"] = conv2d(ctx, x, inner, 1, name="expand",
                                                          activation_fn=tf.nn.relu6, collect=False)
        x = ep[f"{layer}/depthwise_output"] = depthwise_conv2d(ctx, x, op.kernel_size, stride, rate)
        x = conv2d(ctx, x, depth, 1, name="project", activation_fn=None, collect=False)
        if op.residual and stride == 1 and depth == depth_in:
            x = tf.add(x, net, name="add")
        ep[f"{layer}/output"] = x
        return x


_FIELDS = {"scope": SCOPE, "depth_multiplier": 1.0, "min_depth": 8, "finegrain_classification_mode": False,
           "output_stride": None, "batch_norm_epsilon": 1e-3}

MOBILENET_V2 = Family(
    "mobilenet_v2", "mobilenet_v2", _FIELDS, parse_blocks, check, build,
    logits_scope=lambda s: f"{s.scope}/Logits/Conv2d_1c_1x1",
    probe_size=lambda s: (32, 32),  # the variables do not depend on the input size
    cost=cost, shrink=SHRINK, checkpoint_mark="/expanded_conv", default_blocks=V2_DEF,
    # slim's mobilenet_v2, _140, _050, _035 (the thin two in finegrain mode): 1001 classes,
    # background at 0, inception preprocessing.
    zoo=tuple(ZooModel(name, 1001, (224, 224), "inception", 1,
                       {"depth_multiplier": m, "finegrain_classification_mode": m < 1})
              for name, m in (("mobilenet_v2", 1.0), ("mobilenet_v2_140", 1.4), ("mobilenet_v2_050", 0.5),
                              ("mobilenet_v2_035", 0.35))),
    field_hints={"global_pool": "global_pool: slim's MobileNet v2 always pools globally; leave it out "
                                "(drop --no-global-pool)"},
)
