"""Model registry: names users pass to `--model`, with their defaults.

ImageNet slim checkpoints of ResNet v2 have 1001 classes (index 0 is background, hence
label_offset 1) and expect the `inception` preprocessing ([-1, 1]); those of ResNet v1 and VGG
have 1000 classes (label_offset 0) and expect the `vgg` preprocessing (0..255 RGB minus the
ImageNet means). The embedded default model is trained here on scikit-learn's digits.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .netspec import NetSpec, ResNetBlock, VggBlock
from .spec import LAYOUTS, VGG_LAYOUTS

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = "resnet_v2_digits"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    num_classes: int
    image_size: tuple[int, int]
    preprocessing: str
    label_offset: int
    checkpoint: Path | None = None  # embedded weights, if the package ships them
    # Input size the embedded weights were trained at: other sizes export fine and agree with TF,
    # but classify badly (the default at 8x8 scores ~10% on held-out digits), so export warns.
    trained_image_size: tuple[int, int] | None = None
    family: str = "v2"


_RESNET_DEPTHS = (50, 101, 152, 200)
REGISTRY: dict[str, ModelInfo] = {
    **{f"resnet_v2_{d}": ModelInfo(f"resnet_v2_{d}", 1001, (224, 224), "inception", 1) for d in _RESNET_DEPTHS},
    **{f"resnet_v1_{d}": ModelInfo(f"resnet_v1_{d}", 1000, (224, 224), "vgg", 0, family="v1") for d in _RESNET_DEPTHS},
    **{name: ModelInfo(name, 1000, (224, 224), "vgg", 0, family="vgg") for name in VGG_LAYOUTS},
}
REGISTRY[DEFAULT_MODEL] = ModelInfo(DEFAULT_MODEL, 10, (32, 32), "digits", 0,
                                    ASSETS / DEFAULT_MODEL / "model.ckpt", trained_image_size=(32, 32))


def get_model_info(name: str) -> ModelInfo:
    if name == "default":
        name = DEFAULT_MODEL
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))} "
                         "(or describe your own with --spec FILE.json)") from None


def zoo_spec(name: str, **overrides: Any) -> NetSpec:
    """The NetSpec of a registry model (`default` is the embedded digits model), with fields
    replaced (`num_classes=10`, ...)."""
    info = get_model_info(name)
    if info.family == "vgg":
        blocks: tuple = tuple(VggBlock(*b) for b in VGG_LAYOUTS[info.name])
    else:
        blocks = tuple(ResNetBlock.uniform(*b) for b in LAYOUTS[info.name])
    spec = NetSpec(info.name, info.family, blocks, num_classes=info.num_classes, image_size=info.image_size,
                   preprocessing=info.preprocessing, label_offset=info.label_offset)
    return dataclasses.replace(spec, **overrides) if overrides else spec
