"""The registry: the net families (one module each) and the models users pass to `--model`.

Each family module lists its zoo models with tf-slim's checkpoint conventions (classes, label
offset, preprocessing; see the module). The embedded default model is trained here on
scikit-learn's digits. Standard library only: `--model` is checked before TensorFlow loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import UsageError
from .family import Family
from .inception import INCEPTION_V1_FAMILY, INCEPTION_V2_FAMILY, INCEPTION_V3_FAMILY
from .mobilenet_v1 import MOBILENET_V1
from .mobilenet_v2 import MOBILENET_V2
from .resnet import LAYOUTS, RESNET_V1, RESNET_V2, ResNetBlock
from .vgg import VGG

FAMILIES: dict[str, Family] = {f.name: f for f in (RESNET_V1, RESNET_V2, VGG, MOBILENET_V1, MOBILENET_V2,
                                                   INCEPTION_V1_FAMILY, INCEPTION_V2_FAMILY, INCEPTION_V3_FAMILY)}

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
    spec_fields: Mapping[str, Any] | None = None  # NetSpec fields beyond the ones above (blocks, ...)


REGISTRY: dict[str, ModelInfo] = {
    z.name: ModelInfo(z.name, z.num_classes, z.image_size, z.preprocessing, z.label_offset, family=f.name,
                      spec_fields=z.fields)
    for f in FAMILIES.values() for z in f.zoo
}
REGISTRY[DEFAULT_MODEL] = ModelInfo(DEFAULT_MODEL, 10, (32, 32), "digits", 0,
                                    ASSETS / DEFAULT_MODEL / "model.ckpt", trained_image_size=(32, 32),
                                    spec_fields={"blocks": tuple(ResNetBlock.uniform(*b)
                                                                 for b in LAYOUTS[DEFAULT_MODEL])})


def get_model_info(name: str) -> ModelInfo:
    if name == "default":
        name = DEFAULT_MODEL
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))} "
                         "(or describe your own with --spec FILE.json)") from None
