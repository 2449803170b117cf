"""A whole slim-style network as data: the zoo's models and the user's own JSON spec.

`NetSpec` is what `trtdeploy export --spec my_net.json` reads, what the registry gives for
`--model NAME` (`zoo_spec`), and what the bundle's manifest records (`model.spec`), so a
bundle rebuilds the same net. It needs no TensorFlow. The JSON format (README "Models"):

    {"name": "my_resnet", "family": "v2",
     "blocks": [["block1", 64, 3, 2],
                {"scope": "block2", "units": [{"depth": 512, "depth_bottleneck": 128, "stride": 1},
                                              {"depth": 512, "depth_bottleneck": 128, "stride": 2}]},
                ["block3", 256, 2, 1]],
     "num_classes": 1001, "label_offset": 1, "image_size": [224, 224], "preprocessing": "inception"}

`family` names a module of this package (registry.FAMILIES): it parses `blocks`, owns the
fields only it takes (`output_stride`, `fc_depth`, ...) with their defaults, and checks the
whole spec. This module checks what every net has: the name, the family, the head.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cost import check_cost
from .family import Family
from .registry import FAMILIES, get_model_info
from .spec_checks import NAME, Problems, SpecError, check_int

__all__ = ["NetSpec", "SpecError", "load_spec_file", "zoo_spec"]


class _FamilyDefault:
    """The default of a field whose default depends on the family (resolved on construction)."""

    def __repr__(self) -> str:
        return "<family default>"


FAMILY_DEFAULT: Any = _FamilyDefault()

# A field a family does not take holds this value (and must not hold another).
_NOT_APPLICABLE: dict[str, Any] = {"include_root_block": True, "global_pool": True, "output_stride": None,
                                   "batch_norm_epsilon": 1e-5, "batch_norm_scale": True, "fc_depth": 4096,
                                   "scope": None, "depth_multiplier": 1.0, "min_depth": None,
                                   "finegrain_classification_mode": False}
_BOOLS = ("include_root_block", "global_pool", "spatial_squeeze", "batch_norm_scale", "finegrain_classification_mode")


@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild a network; checked on construction (SpecError)."""

    name: str
    family: str
    blocks: tuple = FAMILY_DEFAULT  # MobileNet: slim's conv_defs; Inception: none (its layers are fixed)
    num_classes: int | None = 1001
    image_size: tuple[int, int] = (224, 224)
    preprocessing: str = "inception"
    label_offset: int = 0
    include_root_block: bool = FAMILY_DEFAULT
    global_pool: bool = FAMILY_DEFAULT
    output_stride: int | None = FAMILY_DEFAULT
    spatial_squeeze: bool = True
    batch_norm_epsilon: float = FAMILY_DEFAULT
    batch_norm_scale: bool = FAMILY_DEFAULT
    fc_depth: int = FAMILY_DEFAULT
    # MobileNet and Inception: the checkpoint's variable scope (MobilenetV1, ...; the others use
    # the name) and slim's thinning.
    scope: str | None = FAMILY_DEFAULT
    depth_multiplier: float = FAMILY_DEFAULT
    min_depth: int | None = FAMILY_DEFAULT
    finegrain_classification_mode: bool = FAMILY_DEFAULT

    def __post_init__(self) -> None:
        family = FAMILIES.get(self.family) if isinstance(self.family, str) else None
        for key, value in _defaults(family).items():
            if getattr(self, key) is FAMILY_DEFAULT:
                object.__setattr__(self, key, value)
        if self.blocks is FAMILY_DEFAULT:
            object.__setattr__(self, "blocks", (family.default_blocks if family else None) or ())
        problems = Problems()
        _check_spec(self, family, problems)
        if family is not None and not problems:  # only a well-formed spec can be counted
            check_cost(self, *family.cost(self), problems, family.shrink)
        problems.raise_if_any()

    @property
    def variable_scope(self) -> str:
        """The scope every variable name starts with (`resnet_v2_50`, `MobilenetV1`)."""
        return self.scope or self.name

    @property
    def family_module(self) -> Family:
        return FAMILIES[self.family]

    @property
    def logits_scope(self) -> str:
        """The layer whose biases are the class count (`--num-classes` defaults from it)."""
        return self.family_module.logits_scope(self)

    def to_json(self) -> dict[str, Any]:
        """The spec in the `--spec` file format; `from_json(to_json())` gives the same spec."""
        d: dict[str, Any] = {"name": self.name, "family": self.family}
        if self.family_module.parse_blocks is not None:  # Inception's layers are fixed
            d["blocks"] = [b.to_json() for b in self.blocks]
        d.update({"num_classes": self.num_classes, "label_offset": self.label_offset,
                  "image_size": list(self.image_size), "preprocessing": self.preprocessing,
                  "spatial_squeeze": self.spatial_squeeze})
        d.update((key, getattr(self, key)) for key in self.family_module.fields)
        return d

    @classmethod
    def from_json(cls, d: Any, source: str = "spec") -> "NetSpec":
        """Validate a parsed JSON spec; each mistake is a SpecError line starting with `source: `."""
        problems = Problems()
        fields = _fields_from_json(d, problems)
        family = FAMILIES.get(fields.get("family")) if isinstance(fields.get("family"), str) else None
        spec = None
        # What could be read is checked as a whole too, so that every mistake is reported at once;
        # blocks that did not parse leave the name, the head and the fields to check.
        if family is not None and family.default_blocks is not None and "blocks" not in d:
            fields["blocks"] = family.default_blocks  # slim's conv_defs (MobileNet); Inception has none
        if family is not None and fields.get("blocks") is not None and "name" in fields:
            try:
                spec = cls(**fields)
            except SpecError as e:
                problems.messages.extend(m for m in e.messages if m not in problems.messages)
        elif family is not None:
            # A missing name is reported already; the placeholder keeps it from being reported twice.
            partial = types.SimpleNamespace(**{**_defaults(family), "name": "net", **fields})
            found = Problems()
            _check_spec(partial, family, found, whole=False)
            problems.messages.extend(m for m in found.messages if m not in problems.messages)
        try:
            problems.raise_if_any()
        except SpecError as e:
            raise e.prefixed(source) from None
        return spec


def load_spec_file(path: str | Path) -> NetSpec:
    """Read and validate `--spec FILE`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpecError(f"{p}: cannot read the spec ({e.strerror or e}); pass an existing JSON file") from None
    try:
        text = raw.decode("utf-8-sig")  # JSON is UTF-8; a byte-order mark some editors write is fine
    except UnicodeDecodeError as e:
        raise SpecError(f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                        "save the spec as UTF-8 JSON") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SpecError(f"{p}: not valid JSON ({e}); see README \"Models\" for the spec format") from None
    return NetSpec.from_json(data, source=str(p))


def zoo_spec(name: str, **overrides: Any) -> NetSpec:
    """The NetSpec of a registry model (`default` is the embedded digits model), with fields
    replaced (`num_classes=10`, ...)."""
    info = get_model_info(name)
    spec = NetSpec(info.name, info.family, num_classes=info.num_classes, image_size=info.image_size,
                   preprocessing=info.preprocessing, label_offset=info.label_offset, **(info.spec_fields or {}))
    return dataclasses.replace(spec, **overrides) if overrides else spec


# --- validation ------------------------------------------------------------------------

_REQUIRED = ("name", "family", "blocks")
_KNOWN = tuple(f.name for f in dataclasses.fields(NetSpec))


def _defaults(family: Family | None) -> dict[str, Any]:
    """What the family-dependent fields hold when a spec leaves them out."""
    common = {f.name: f.default for f in dataclasses.fields(NetSpec) if f.default is not dataclasses.MISSING
              and f.default is not FAMILY_DEFAULT}
    return {**common, **{key: (family.fields.get(key, na) if family else na) for key, na in _NOT_APPLICABLE.items()}}


def _families_text(names: list[str]) -> str:
    return "/".join(names)


def _use_families() -> str:
    """`"v1" (resnet_v1), "v2" (resnet_v2) or "vgg"`: the family values, with tf-slim's names."""
    shown = [f'"{f.name}"' + (f" ({f.slim_name})" if f.slim_name != f.name else "") for f in FAMILIES.values()]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def _fields_from_json(d: Any, problems: Problems) -> dict[str, Any]:
    """The NetSpec keywords of a JSON spec; what cannot be used is left out, its mistake recorded."""
    if not isinstance(d, dict):
        problems.add(f"expected a JSON object with {', '.join(_REQUIRED)}, got {type(d).__name__}")
        return {}
    for key in d:
        if key not in _KNOWN:
            close = difflib.get_close_matches(key, _KNOWN, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(_KNOWN)}"
            problems.add(f"unknown field {key!r}; {hint}")
    family = FAMILIES.get(d.get("family")) if isinstance(d.get("family"), str) else None
    for key in _REQUIRED:
        if key not in d and not (key == "blocks" and family is not None and family.default_blocks is not None):
            problems.add(f"missing field {key!r}; a spec needs {', '.join(_REQUIRED)}")
    if "family" in d and family is None:
        problems.add(f"unknown family {d['family']!r}; use {_use_families()}")
    out = {k: v for k, v in d.items() if k in _KNOWN}
    if family is None:
        return out
    for key in [k for k in _NOT_APPLICABLE if k in d and k not in family.fields]:
        takers = [f.name for f in FAMILIES.values() if key in f.fields]
        problems.add(f"field {key!r} applies to family {_families_text(takers)} only; "
                     f"remove it for family {family.name!r}")
        out.pop(key)
    if "blocks" in d and family.parse_blocks is None:
        problems.add(f"blocks: {family.name}'s layers are slim's own; remove blocks")
        out.pop("blocks")
    elif "blocks" in d:
        blocks = d["blocks"]
        if not isinstance(blocks, list) or not blocks:
            problems.add("blocks: give a non-empty list of blocks")
            out.pop("blocks")
        else:
            out["blocks"] = family.parse_blocks(blocks, problems)
    if "image_size" in d:
        size = d["image_size"]
        if not isinstance(size, list) or len(size) != 2:
            problems.add(f"image_size {size!r}: give [height, width]")
            out.pop("image_size")
        else:
            out["image_size"] = tuple(size)
    return out


def _check_spec(s: NetSpec, family: Family | None, problems: Problems, whole: bool = True) -> None:
    """The checks of a spec; `whole=False` leaves out the family's (its blocks did not parse)."""
    if not isinstance(s.name, str) or not NAME.match(s.name):
        problems.add(f"name {s.name!r}: give the variable scope, e.g. \"resnet_v2_50\" (letters, digits, _ . -)")
    if family is None:
        problems.add(f"unknown family {s.family!r}; use {_use_families()}")
        return
    _check_head(s, problems)
    for key in _BOOLS:
        if not isinstance(getattr(s, key), bool):
            problems.add(f"{key} {getattr(s, key)!r}: give true or false")
    eps = s.batch_norm_epsilon
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        slim = family.fields.get("batch_norm_epsilon", _NOT_APPLICABLE["batch_norm_epsilon"])
        problems.add(f"batch_norm_epsilon {eps!r}: give a positive number (tf-slim: {slim:g})".replace("e-0", "e-"))
    _check_thinning(s, family, problems)
    for key, na in _NOT_APPLICABLE.items():
        if key not in family.fields and getattr(s, key) != na:
            takers = [f.name for f in FAMILIES.values() if key in f.fields]
            problems.add(family.field_hints.get(key) or f"{key} applies to family {_families_text(takers)} only; "
                         f"leave it out for family {family.name!r}")
    if whole:
        family.check(s, problems)


def _check_thinning(s: NetSpec, family: Family, problems: Problems) -> None:
    if "scope" in family.fields and (not isinstance(s.scope, str) or not NAME.match(s.scope)):
        problems.add(f"scope {s.scope!r}: give the checkpoint's variable scope, e.g. "
                     f"{family.fields['scope']!r} (letters, digits, _ . -)")
    m = s.depth_multiplier
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 < m < float("inf"):
        problems.add(f"depth_multiplier {m!r}: must be a number > 0 (1.0 is the published width; 0.5 halves "
                     "every layer)")
    if "min_depth" in family.fields:
        check_int(problems, "min_depth", s.min_depth)


def _check_head(s: NetSpec, problems: Problems) -> None:
    from ..data.preprocess import PRESETS

    if s.num_classes is not None:
        check_int(problems, "num_classes", s.num_classes, fix="; or null for a backbone without logits")
    size = s.image_size
    if not isinstance(size, tuple) or len(size) != 2:
        problems.add(f"image_size {size!r}: give [height, width]")
    else:
        for side in size:
            check_int(problems, "image_size", side, minimum=8)
    if s.preprocessing not in PRESETS:
        problems.add(f"preprocessing {s.preprocessing!r}: use one of {', '.join(PRESETS)}")
    offset = check_int(problems, "label_offset", s.label_offset, minimum=0)
    if offset is not None and isinstance(s.num_classes, int) and s.num_classes >= 1 and offset >= s.num_classes:
        problems.add(f"label_offset {s.label_offset}: must be below num_classes {s.num_classes} "
                     "(1 for 1001-class slim checkpoints with a background class, else 0)")
