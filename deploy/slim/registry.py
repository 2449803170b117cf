"""Model registry: names users pass to `--model`, with their defaults.

ImageNet slim checkpoints have 1001 classes (index 0 is background, hence label_offset 1) and
expect the `inception` preprocessing ([-1, 1]); the embedded default model is trained here on
scikit-learn's digits.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

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


REGISTRY: dict[str, ModelInfo] = {
    name: ModelInfo(name, 1001, (224, 224), "inception", 1)
    for name in ("resnet_v2_50", "resnet_v2_101", "resnet_v2_152", "resnet_v2_200")
}
REGISTRY[DEFAULT_MODEL] = ModelInfo(DEFAULT_MODEL, 10, (32, 32), "digits", 0,
                                    ASSETS / DEFAULT_MODEL / "model.ckpt", trained_image_size=(32, 32))


def get_model_info(name: str) -> ModelInfo:
    if name == "default":
        name = DEFAULT_MODEL
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))}") from None
