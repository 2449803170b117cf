"""A whole slim-style network as data: the zoo's models and the user's own JSON spec.

`NetSpec` is what `trtdeploy export --spec my_net.json` reads, what the registry gives for
`--model NAME`, and what the bundle's manifest records (`model.spec`), so a bundle rebuilds
the same net. It needs no TensorFlow. The JSON format (README "Models"):

    {"name": "my_resnet", "family": "v2",
     "blocks": [["block1", 64, 3, 2],
                {"scope": "block2", "units": [{"depth": 512, "depth_bottleneck": 128, "stride": 1},
                                              {"depth": 512, "depth_bottleneck": 128, "stride": 2}]},
                ["block3", 256, 2, 1]],
     "num_classes": 1001, "label_offset": 1, "image_size": [224, 224], "preprocessing": "inception"}

Families: `v1` (tf-slim `resnet_v1`), `v2` (`resnet_v2`) and `vgg` (tf-slim `vgg`, blocks as
`[scope, num_convs, depth]`). A ResNet block is `[scope, base_depth, num_units, stride]`, as
tf-slim's `resnet_v1_block`/`resnet_v2_block` make it (stride in the last unit, depth = 4 x
base_depth), or `{"scope", "units"}` with one `{"depth", "depth_bottleneck", "stride"}` per unit.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import UsageError

FAMILIES = {"v1": "resnet_v1", "v2": "resnet_v2", "vgg": "vgg"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# tf-slim's VGG turns fc6 into a 7x7 VALID convolution over pool5.
VGG_FC6_KERNEL = 7


class SpecError(UsageError):
    """A spec field that is wrong; the message names the field and what to write instead."""


@dataclass(frozen=True)
class UnitArgs:
    """One bottleneck unit: output depth, bottleneck depth, stride (tf-slim's unit dict)."""

    depth: int
    depth_bottleneck: int
    stride: int


@dataclass(frozen=True)
class ResNetBlock:
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


@dataclass(frozen=True)
class VggBlock:
    """`num_convs` 3x3 convolutions of `depth` channels (`conv1/conv1_1`, ...), then a 2x2 max-pool."""

    scope: str
    num_convs: int
    depth: int

    def to_json(self) -> list[Any]:
        return [self.scope, self.num_convs, self.depth]


Block = Union[ResNetBlock, VggBlock]


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild a network; checked on construction (SpecError)."""

    name: str
    family: str
    blocks: tuple[Block, ...]
    num_classes: int | None = 1001
    image_size: tuple[int, int] = (224, 224)
    preprocessing: str = "inception"
    label_offset: int = 0
    include_root_block: bool = True
    global_pool: bool = True
    output_stride: int | None = None
    spatial_squeeze: bool = True
    batch_norm_epsilon: float = 1e-5
    batch_norm_scale: bool = True
    fc_depth: int = 4096

    def __post_init__(self) -> None:
        _check_spec(self)

    @property
    def scope(self) -> str:
        return self.name

    @property
    def logits_scope(self) -> str:
        """The layer whose biases are the class count (`--num-classes` defaults from it)."""
        return f"{self.name}/fc8" if self.family == "vgg" else f"{self.name}/logits"

    def to_json(self) -> dict[str, Any]:
        """The spec in the `--spec` file format; `from_json(to_json())` gives the same spec."""
        d: dict[str, Any] = {"name": self.name, "family": self.family,
                             "blocks": [b.to_json() for b in self.blocks],
                             "num_classes": self.num_classes, "label_offset": self.label_offset,
                             "image_size": list(self.image_size), "preprocessing": self.preprocessing,
                             "spatial_squeeze": self.spatial_squeeze}
        if self.family == "vgg":
            d["fc_depth"] = self.fc_depth
        else:
            d.update(include_root_block=self.include_root_block, global_pool=self.global_pool,
                     output_stride=self.output_stride, batch_norm_epsilon=self.batch_norm_epsilon,
                     batch_norm_scale=self.batch_norm_scale)
        return d

    @classmethod
    def from_json(cls, d: Any, source: str = "spec") -> "NetSpec":
        """Validate a parsed JSON spec; each mistake is a SpecError starting with `source: `."""
        try:
            return cls(**_fields_from_json(d))
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None


def load_spec_file(path: str | Path) -> NetSpec:
    """Read and validate `--spec FILE`."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpecError(f"{p}: cannot read the spec ({e.strerror or e}); pass an existing JSON file") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SpecError(f"{p}: not valid JSON ({e}); see README \"Models\" for the spec format") from None
    return NetSpec.from_json(data, source=str(p))


# --- validation ------------------------------------------------------------------------

_RESNET_ONLY = ("include_root_block", "global_pool", "output_stride", "batch_norm_epsilon", "batch_norm_scale")
_VGG_ONLY = ("fc_depth",)
_REQUIRED = ("name", "family", "blocks")
_KNOWN = tuple(f.name for f in dataclasses.fields(NetSpec))


def _fields_from_json(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise SpecError(f"expected a JSON object with {', '.join(_REQUIRED)}, got {type(d).__name__}")
    for key in d:
        if key not in _KNOWN:
            close = difflib.get_close_matches(key, _KNOWN, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(_KNOWN)}"
            raise SpecError(f"unknown field {key!r}; {hint}")
    for key in _REQUIRED:
        if key not in d:
            raise SpecError(f"missing field {key!r}; a spec needs {', '.join(_REQUIRED)}")
    family = d["family"]
    if family not in FAMILIES:
        raise SpecError(f"unknown family {family!r}; use \"v1\" (resnet_v1), \"v2\" (resnet_v2) or \"vgg\"")
    wrong = [k for k in (_RESNET_ONLY if family == "vgg" else _VGG_ONLY) if k in d]
    if wrong:
        other = "v1/v2" if family == "vgg" else "vgg"
        raise SpecError(f"field {wrong[0]!r} applies to family {other} only; remove it for family {family!r}")
    out = dict(d)
    blocks = d["blocks"]
    if not isinstance(blocks, list) or not blocks:
        raise SpecError("blocks: give a non-empty list of blocks")
    parse = _vgg_block if family == "vgg" else _resnet_block
    out["blocks"] = tuple(parse(i, b) for i, b in enumerate(blocks))
    if "image_size" in d:
        size = d["image_size"]
        if not isinstance(size, list) or len(size) != 2:
            raise SpecError(f"image_size {size!r}: give [height, width]")
        out["image_size"] = tuple(size)
    return out


def _int(where: str, value: Any, minimum: int = 1, fix: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where} {value!r}: give an integer >= {minimum}")
    if value < minimum:
        raise SpecError(f"{where} {value}: must be >= {minimum}{fix}")
    return value


_STRIDE_FIX = " (1 keeps the resolution, 2 halves it)"


def _resnet_block(i: int, b: Any) -> ResNetBlock:
    if isinstance(b, list):
        if len(b) != 4:
            raise SpecError(f"blocks[{i}] {b!r}: give [scope, base_depth, num_units, stride] or "
                            "{\"scope\": ..., \"units\": [...]}")
        scope, base, num, stride = b
        where = f"blocks[{i}] ({scope})"
        _int(f"{where}: base_depth", base)
        _int(f"{where}: num_units", num, fix="; a block needs at least one unit")
        _int(f"{where}: stride", stride, fix=_STRIDE_FIX)
        return ResNetBlock.uniform(_scope_name(i, scope), base, num, stride)
    if not isinstance(b, dict) or set(b) != {"scope", "units"}:
        raise SpecError(f"blocks[{i}]: give [scope, base_depth, num_units, stride] or "
                        "{\"scope\": ..., \"units\": [{\"depth\", \"depth_bottleneck\", \"stride\"}, ...]}")
    scope = _scope_name(i, b["scope"])
    units = b["units"]
    if not isinstance(units, list) or not units:
        raise SpecError(f"blocks[{i}] ({scope}): units must be a non-empty list; a block needs at least one unit")
    out = []
    for j, u in enumerate(units):
        where = f"blocks[{i}] ({scope}) unit {j + 1}"
        keys = ("depth", "depth_bottleneck", "stride")
        if not isinstance(u, dict) or set(u) != set(keys):
            raise SpecError(f"{where}: give exactly {{\"depth\", \"depth_bottleneck\", \"stride\"}}, got {u!r}")
        out.append(UnitArgs(_int(f"{where}: depth", u["depth"]),
                            _int(f"{where}: depth_bottleneck", u["depth_bottleneck"]),
                            _int(f"{where}: stride", u["stride"], fix=_STRIDE_FIX)))
    return ResNetBlock(scope, tuple(out))


def _vgg_block(i: int, b: Any) -> VggBlock:
    if not isinstance(b, list) or len(b) != 3:
        raise SpecError(f"blocks[{i}] {b!r}: a vgg block is [scope, num_convs, depth], e.g. [\"conv1\", 2, 64]")
    scope, num, depth = b
    where = f"blocks[{i}] ({scope})"
    return VggBlock(_scope_name(i, scope), _int(f"{where}: num_convs", num, fix="; a block needs a convolution"),
                    _int(f"{where}: depth", depth))


def _scope_name(i: int, scope: Any) -> str:
    if not isinstance(scope, str) or not _NAME.match(scope):
        raise SpecError(f"blocks[{i}]: scope {scope!r} must be a name like \"block1\" (letters, digits, _ . -)")
    return scope


def _check_spec(s: NetSpec) -> None:
    if not isinstance(s.name, str) or not _NAME.match(s.name):
        raise SpecError(f"name {s.name!r}: give the variable scope, e.g. \"resnet_v2_50\" (letters, digits, _ . -)")
    if s.family not in FAMILIES:
        raise SpecError(f"unknown family {s.family!r}; use \"v1\", \"v2\" or \"vgg\"")
    kind = VggBlock if s.family == "vgg" else ResNetBlock
    if not s.blocks or not all(isinstance(b, kind) for b in s.blocks):
        raise SpecError(f"blocks: give a non-empty list of {s.family} blocks")
    scopes = [b.scope for b in s.blocks]
    dup = next((x for x in scopes if scopes.count(x) > 1), None)
    if dup is not None:
        raise SpecError(f"blocks: scope {dup!r} appears twice; give each block its own scope")
    _check_head(s)
    for key in ("include_root_block", "global_pool", "spatial_squeeze", "batch_norm_scale"):
        if not isinstance(getattr(s, key), bool):
            raise SpecError(f"{key} {getattr(s, key)!r}: give true or false")
    eps = s.batch_norm_epsilon
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise SpecError(f"batch_norm_epsilon {eps!r}: give a positive number (tf-slim: 1e-5)")
    _int("fc_depth", s.fc_depth)
    if s.family == "vgg":
        _check_vgg(s)
    elif s.output_stride is not None:
        _check_output_stride(s)


def _check_head(s: NetSpec) -> None:
    from ..data.preprocess import PRESETS

    if s.num_classes is not None:
        _int("num_classes", s.num_classes, fix="; or null for a backbone without logits")
    size = s.image_size
    if not isinstance(size, tuple) or len(size) != 2:
        raise SpecError(f"image_size {size!r}: give [height, width]")
    for side in size:
        _int("image_size", side, minimum=8)
    if s.preprocessing not in PRESETS:
        raise SpecError(f"preprocessing {s.preprocessing!r}: use one of {', '.join(PRESETS)}")
    _int("label_offset", s.label_offset, minimum=0)
    if s.num_classes is not None and s.label_offset >= s.num_classes:
        raise SpecError(f"label_offset {s.label_offset}: must be below num_classes {s.num_classes} "
                        "(1 for 1001-class slim checkpoints with a background class, else 0)")


def reachable_output_strides(s: NetSpec) -> list[int]:
    """The output_stride values tf-slim's `stack_blocks_dense` can reach for this spec."""
    root = 4 if s.include_root_block else 1
    values, stride = [root], root
    for block in s.blocks:
        for unit in block.units:
            stride *= unit.stride
            if stride not in values:
                values.append(stride)
    return values


def _check_output_stride(s: NetSpec) -> None:
    _int("output_stride", s.output_stride)
    if s.include_root_block and s.output_stride % 4 != 0:
        raise SpecError(f"output_stride {s.output_stride}: with the root block it must be a multiple of 4; "
                        f"choose one of {reachable_output_strides(s)} or null")
    if s.output_stride not in reachable_output_strides(s):
        raise SpecError(f"the target output_stride {s.output_stride} cannot be reached; "
                        f"choose one of {reachable_output_strides(s)} or null")


def _check_vgg(s: NetSpec) -> None:
    # Reached through CLI overrides (--output-stride, --no-global-pool) or a bad manifest.
    if s.output_stride is not None:
        raise SpecError("output_stride applies to v1/v2 ResNets only; vgg has no atrous mode")
    if not s.global_pool or not s.include_root_block:
        raise SpecError("global_pool/include_root_block apply to v1/v2 ResNets only; "
                        "vgg's fc6 is a 7x7 VALID convolution (drop --no-global-pool)")
    if s.num_classes is None:
        raise SpecError("a vgg spec needs num_classes (fc8 is its last layer)")
    h, w = s.image_size
    for _ in s.blocks:  # each block ends in a 2x2 VALID max-pool of stride 2
        h, w = h // 2, w // 2
    last = s.blocks[-1].scope
    if min(h, w) < VGG_FC6_KERNEL:
        raise SpecError(f"image_size {list(s.image_size)}: {last} pools to {h}x{w}, smaller than fc6's "
                        f"{VGG_FC6_KERNEL}x{VGG_FC6_KERNEL} VALID kernel; use image_size [224, 224]")
    out_h, out_w = h - VGG_FC6_KERNEL + 1, w - VGG_FC6_KERNEL + 1
    if s.spatial_squeeze and (out_h, out_w) != (1, 1):
        raise SpecError(f"image_size {list(s.image_size)}: fc8 is {out_h}x{out_w}, and spatial_squeeze needs 1x1; "
                        "use image_size [224, 224] or set \"spatial_squeeze\": false")
