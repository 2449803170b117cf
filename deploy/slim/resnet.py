"""The ResNet family, v1 (BN after each convolution) and v2 (pre-activation), the tf-slim way:
its spec, its builder and its end points, with tf-slim's variable names.

He et al., "Deep Residual Learning for Image Recognition", 2015 (arXiv:1512.03385) and
"Identity Mappings in Deep Residual Networks", 2016 (arXiv:1603.05027), as
`tf_slim/nets/resnet_utils.py`, `resnet_v1.py` and `resnet_v2.py` build them: bottleneck units,
one block stacker with atrous `output_stride`, the stride in each block's last unit.
Inputs are `[batch, height, width, 3]` (NHWC).

The spec half (blocks, layouts, checks) needs only the standard library; the builder imports
TensorFlow and `conv_layers` inside its functions, so checking a spec never loads TensorFlow.

End points (tf-slim's names): `NAME/conv1` (the root conv), every unit
(`NAME/block1/unit_1/bottleneck_v2`) and the convs inside it (`.../conv1`, `.../shortcut`),
every block (`NAME/block1`), `NAME/logits`, `NAME/spatial_squeeze` and `predictions`.
"""
from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from .cost import Tally, parameters_problem
from .family import Family, ZooModel
from .spec_checks import STRIDE_FIX, Problems, check_int, check_scope, check_unique_scopes

SHRINK = "use fewer units (num_units) or narrower blocks (base_depth, depth_bottleneck, depth)"

# ResNet depth -> [(block scope, base_depth, num_units, stride)], the same for v1 and v2 in tf-slim.
RESNET_DEPTHS: dict[int, list[tuple[str, int, int, int]]] = {
    50: [("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 6, 2), ("block4", 512, 3, 1)],
    101: [("block1", 64, 3, 2), ("block2", 128, 4, 2), ("block3", 256, 23, 2), ("block4", 512, 3, 1)],
    152: [("block1", 64, 3, 2), ("block2", 128, 8, 2), ("block3", 256, 36, 2), ("block4", 512, 3, 1)],
    200: [("block1", 64, 3, 2), ("block2", 128, 24, 2), ("block3", 256, 36, 2), ("block4", 512, 3, 1)],
}

# Name -> ResNet layout, as in tf-slim's resnet_v1_* and resnet_v2_* functions.
LAYOUTS: dict[str, list[tuple[str, int, int, int]]] = {
    **{f"resnet_{v}_{d}": layout for v in ("v1", "v2") for d, layout in RESNET_DEPTHS.items()},
    # The embedded default: a small ResNet v2 for scikit-learn's digits at 32x32x3.
    "resnet_v2_digits": [("block1", 16, 2, 2), ("block2", 32, 2, 2), ("block3", 64, 2, 1)],
}


# --- the spec ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitArgs:
    """One bottleneck unit: output depth, bottleneck depth, stride (tf-slim's unit dict)."""

    depth: int
    depth_bottleneck: int
    stride: int


@dataclass(frozen=True)
class ResNetBlock:
    """A block of the spec: its scope and one UnitArgs per unit."""

    scope: str
    units: tuple[UnitArgs, ...]

    @classmethod
    def uniform(cls, scope: str, base_depth: int, num_units: int, stride: int) -> "ResNetBlock":
        """tf-slim's `resnet_v1_block`/`resnet_v2_block`: the stride sits in the last unit."""
        unit = UnitArgs(base_depth * 4, base_depth, 1)
        return cls(scope, (unit,) * (num_units - 1) + (dataclasses.replace(unit, stride=stride),))

    def to_json(self) -> list[Any] | dict[str, Any]:
        first, last = self.units[0], self.units[-1]
        compact = ResNetBlock.uniform(self.scope, first.depth_bottleneck, len(self.units), last.stride)
        if compact == self:
            return [self.scope, first.depth_bottleneck, len(self.units), last.stride]
        return {"scope": self.scope, "units": [dataclasses.asdict(u) for u in self.units]}


def parse_blocks(blocks: list, problems: Problems) -> tuple[ResNetBlock, ...] | None:
    parsed = [_parse_block(i, b, problems) for i, b in enumerate(blocks)]
    return None if any(b is None for b in parsed) else tuple(parsed)  # type: ignore[arg-type]


def _parse_block(i: int, b: Any, problems: Problems) -> ResNetBlock | None:
    if isinstance(b, list):
        if len(b) != 4:
            problems.add(f"blocks[{i}] {b!r}: give [scope, base_depth, num_units, stride] or "
                         "{\"scope\": ..., \"units\": [...]}")
            return None
        scope, base, num, stride = b
        where = f"blocks[{i}] ({scope})"
        values = (check_int(problems, f"{where}: base_depth", base),
                  check_int(problems, f"{where}: num_units", num, fix="; a block needs at least one unit"),
                  check_int(problems, f"{where}: stride", stride, fix=STRIDE_FIX))
        scope = check_scope(problems, i, scope)
        if scope is None or None in values:
            return None
        # Every unit after the first reads 4 x base_depth channels: conv1, conv2 (3x3) and conv3
        # hold 4b^2 + 9b^2 + 4b^2 weights. Bounded before the units are made (10^9 took 24 GB).
        too_many = parameters_problem(where, num * 17 * base * base, SHRINK, at_least=True)
        if too_many:
            problems.add(too_many)
            return None
        return ResNetBlock.uniform(scope, base, num, stride)
    if not isinstance(b, dict) or set(b) != {"scope", "units"}:
        problems.add(f"blocks[{i}]: give [scope, base_depth, num_units, stride] or "
                     "{\"scope\": ..., \"units\": [{\"depth\", \"depth_bottleneck\", \"stride\"}, ...]}")
        return None
    scope = check_scope(problems, i, b["scope"])
    units = b["units"]
    if not isinstance(units, list) or not units:
        problems.add(f"blocks[{i}] ({scope}): units must be a non-empty list; a block needs at least one unit")
        return None
    out = [_parse_unit(f"blocks[{i}] ({scope}) unit {j + 1}", u, problems) for j, u in enumerate(units)]
    if scope is None or None in out:
        return None
    return ResNetBlock(scope, tuple(out))  # type: ignore[arg-type]


def _parse_unit(where: str, u: Any, problems: Problems) -> UnitArgs | None:
    keys = ("depth", "depth_bottleneck", "stride")
    if not isinstance(u, dict) or set(u) != set(keys):
        problems.add(f"{where}: give exactly {{\"depth\", \"depth_bottleneck\", \"stride\"}}, got {u!r}")
        return None
    values = (check_int(problems, f"{where}: depth", u["depth"]),
              check_int(problems, f"{where}: depth_bottleneck", u["depth_bottleneck"]),
              check_int(problems, f"{where}: stride", u["stride"], fix=STRIDE_FIX))
    return None if None in values else UnitArgs(*values)  # type: ignore[arg-type]


def reachable_output_strides(s) -> list[int]:
    """The output_stride values tf-slim's `stack_blocks_dense` can reach for this spec."""
    root = 4 if s.include_root_block else 1
    values, stride = [root], root
    for block in s.blocks:
        for unit in block.units:
            stride *= unit.stride
            if stride not in values:
                values.append(stride)
    return values


def check(s, problems: Problems) -> None:
    if not s.blocks or not all(isinstance(b, ResNetBlock) for b in s.blocks):
        problems.add(f"blocks: give a non-empty list of {s.family} blocks")
        return
    check_unique_scopes(problems, [b.scope for b in s.blocks])
    if s.output_stride is None or check_int(problems, "output_stride", s.output_stride) is None:
        return
    if s.include_root_block and s.output_stride % 4 != 0:
        problems.add(f"output_stride {s.output_stride}: with the root block it must be a multiple of 4; "
                     f"choose one of {reachable_output_strides(s)} or null")
    elif s.output_stride not in reachable_output_strides(s):
        problems.add(f"the target output_stride {s.output_stride} cannot be reached; "
                     f"choose one of {reachable_output_strides(s)} or null")


def cost(s) -> tuple[int, int]:
    """(parameters, activation values of one image) of the spec, as the builder lays it out."""
    v1 = s.family == "v1"
    t = Tally(*s.image_size)
    output_stride = s.output_stride
    if s.include_root_block:
        t.conv(64, 7, 2, bn=v1, bias=not v1, bn_scale=s.batch_norm_scale)
        t.pool(3, 2)
        output_stride = None if output_stride is None else output_stride // 4
    current, rate = 1, 1
    for block in s.blocks:
        for u in block.units:
            if output_stride is not None and current == output_stride:
                stride, unit_rate, rate = 1, rate, rate * u.stride
            else:
                stride, unit_rate, current = u.stride, 1, current * u.stride
            _unit_cost(t, u, stride, unit_rate, v1, s.batch_norm_scale)
    if not v1:  # postnorm
        t.parameters += (3 + int(s.batch_norm_scale)) * t.channels
        t.add(t.height * t.width * t.channels)
    if s.global_pool:
        t.height = t.width = 1
    if s.num_classes is not None:
        t.conv(s.num_classes, 1, bn=False, bias=True)
    return t.parameters, t.activations


def _unit_cost(t: Tally, u: UnitArgs, stride: int, rate: int, v1: bool, bn_scale: bool) -> None:
    depth_in, h, w = t.channels, -(-t.height // stride), -(-t.width // stride)
    bn = 3 + int(bn_scale)
    if not v1:  # preact
        t.parameters += bn * depth_in
        t.add(t.height * t.width * depth_in)
    if u.depth != depth_in:  # the projection shortcut
        t.parameters += depth_in * u.depth + (bn * u.depth if v1 else u.depth)
    t.add(h * w * u.depth)
    t.conv(u.depth_bottleneck, 1, bn_scale=bn_scale)
    t.conv(u.depth_bottleneck, 3, stride, rate, bn_scale=bn_scale)
    t.conv(u.depth, 1, bn=v1, bias=not v1, bn_scale=bn_scale)
    t.add(h * w * u.depth)  # the sum


# --- the builder -------------------------------------------------------------------------


class Block(collections.namedtuple("Block", ["scope", "unit_fn", "args"])):
    """tf-slim's ResNet block, as the stacker takes it (a ResNetBlock with its unit function).

    scope: the block's variable scope (`block1`, ...).
    unit_fn: the unit function, called as `unit_fn(ctx, net, rate=..., **unit_args)`.
    args: one dict per unit, `{"depth", "depth_bottleneck", "stride"}`.
    """


def resnet_block(scope: str, base_depth: int, num_units: int, stride: int, unit_fn: Callable[..., Any]) -> Block:
    """A bottleneck block; the stride is applied in the last unit, as tf-slim's
    `resnet_v1_block` and `resnet_v2_block` both do."""
    return Block(scope, unit_fn, [dataclasses.asdict(u) for u in
                                  ResNetBlock.uniform(scope, base_depth, num_units, stride).units])


def bottleneck_v1(ctx, inputs, depth: int, depth_bottleneck: int, stride: int, rate: int = 1):
    """Bottleneck residual unit with BN after the convolutions (Fig. 1(a) of the v2 paper).

    The shortcut is the (subsampled) input when the depth stays, else a 1x1 conv + BN with the
    unit's stride and no activation; ReLU comes after the addition.
    """
    import tensorflow as tf

    from .conv_layers import conv2d, conv2d_same, scope, subsample

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


def bottleneck_v2(ctx, inputs, depth: int, depth_bottleneck: int, stride: int, rate: int = 1):
    """Bottleneck residual unit with BN before the convolutions (Fig. 1(b) of the v2 paper)."""
    import tensorflow as tf

    from .conv_layers import batch_norm, conv2d, conv2d_same, scope, subsample

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


def resnet_v1_block(scope: str, base_depth: int, num_units: int, stride: int) -> Block:
    """tf-slim's `resnet_v1_block`: `num_units` v1 bottlenecks, depth 4 x `base_depth`."""
    return resnet_block(scope, base_depth, num_units, stride, bottleneck_v1)


def resnet_v2_block(scope: str, base_depth: int, num_units: int, stride: int) -> Block:
    """tf-slim's `resnet_v2_block`: `num_units` v2 bottlenecks, depth 4 x `base_depth`."""
    return resnet_block(scope, base_depth, num_units, stride, bottleneck_v2)


def stack_blocks_dense(ctx, net, blocks: list[Block], output_stride: int | None = None):
    """Stack blocks; with `output_stride`, switch to atrous convolution once it is reached.

    Raises ValueError if the target output_stride cannot be reached, as tf-slim does.
    """
    from .conv_layers import scope

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


def resnet(inputs, blocks: list[Block], version: int, num_classes: int | None = None,
           is_training: bool = False, global_pool: bool = True, output_stride: int | None = None,
           include_root_block: bool = True, spatial_squeeze: bool = True, scope_name: str = "resnet",
           store=None, **bn_args: Any):
    """tf-slim's `resnet_v1` (version 1) or `resnet_v2` (version 2) generator: `(net, end_points)`.

    The two differ in two places only: v1's root `conv1` has BatchNorm and ReLU (v2's is a
    plain conv, the first unit's `preact` normalizes it), and v2 ends in `postnorm` (BN + ReLU)
    because its units leave their sum un-normalized. `store` holds the variables by tf-slim
    name (a new one is made when None); `bn_args` are `batch_norm_decay`, `batch_norm_epsilon`,
    `batch_norm_scale` as in `resnet_arg_scope`. With `spatial_squeeze` and `global_pool`,
    logits are `[batch, num_classes]` (later slim); tf-slim 1.1.0 returns `[batch, 1, 1,
    num_classes]` (pass `spatial_squeeze=False`). Without global pooling the logits stay
    `[batch, h, w, num_classes]`.
    """
    import tensorflow as tf

    from .conv_layers import Context, VariableStore, batch_norm, conv2d, conv2d_same, scope

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


def resnet_v1(inputs, blocks: list[Block], num_classes: int | None = None, is_training: bool = False,
              global_pool: bool = True, output_stride: int | None = None, include_root_block: bool = True,
              spatial_squeeze: bool = True, scope_name: str = "resnet_v1", store=None, **bn_args: Any):
    """The v1 generator (arguments as `resnet`). tf-slim 1.1.0 has no spatial squeeze and returns
    `[batch, 1, 1, num_classes]` logits (pass `spatial_squeeze=False` for that)."""
    return resnet(inputs, blocks, 1, num_classes, is_training, global_pool, output_stride,
                  include_root_block, spatial_squeeze, scope_name, store, **bn_args)


def resnet_v2(inputs, blocks: list[Block], num_classes: int | None = None, is_training: bool = False,
              global_pool: bool = True, output_stride: int | None = None, include_root_block: bool = True,
              spatial_squeeze: bool = True, scope_name: str = "resnet_v2", store=None, **bn_args: Any):
    """The v2 generator (arguments as `resnet`)."""
    return resnet(inputs, blocks, 2, num_classes, is_training, global_pool, output_stride,
                  include_root_block, spatial_squeeze, scope_name, store, **bn_args)


def build(spec, images, store, is_training: bool = False, batch_norm_decay: float = 0.997):
    """The net of a v1 or v2 spec: its blocks with their unit, through the one generator."""
    unit = bottleneck_v1 if spec.family == "v1" else bottleneck_v2
    blocks = [Block(b.scope, unit, [dataclasses.asdict(u) for u in b.units]) for b in spec.blocks]
    return resnet(images, blocks, 1 if spec.family == "v1" else 2, spec.num_classes, is_training=is_training,
                  global_pool=spec.global_pool, output_stride=spec.output_stride,
                  include_root_block=spec.include_root_block, spatial_squeeze=spec.spatial_squeeze,
                  scope_name=spec.name, store=store, batch_norm_decay=batch_norm_decay,
                  batch_norm_epsilon=spec.batch_norm_epsilon, batch_norm_scale=spec.batch_norm_scale)


# --- the families --------------------------------------------------------------------------

_FIELDS = {"include_root_block": True, "global_pool": True, "output_stride": None, "batch_norm_epsilon": 1e-5,
           "batch_norm_scale": True}


def _family(version: str, num_classes: int, preprocessing: str, label_offset: int) -> Family:
    # ResNet variables do not depend on the input size: a small probe creates them cheaply.
    zoo = tuple(ZooModel(f"resnet_{version}_{d}", num_classes, (224, 224), preprocessing, label_offset,
                         {"blocks": tuple(ResNetBlock.uniform(*b) for b in RESNET_DEPTHS[d])})
                for d in RESNET_DEPTHS)
    return Family(version, f"resnet_{version}", _FIELDS, parse_blocks, check, build,
                  logits_scope=lambda s: f"{s.name}/logits", probe_size=lambda s: (32, 32), cost=cost,
                  shrink=SHRINK, checkpoint_mark=f"/bottleneck_{version}/", zoo=zoo)


# tf-slim's ImageNet checkpoints: ResNet v1 has 1000 classes and the vgg preprocessing, v2 has
# 1001 (background at 0) and the inception preprocessing.
RESNET_V1 = _family("v1", 1000, "vgg", 0)
RESNET_V2 = _family("v2", 1001, "inception", 1)
