"""The embedded default data: scikit-learn's handwritten digits (1,797 8x8 images, 10 classes),
upscaled to 32x32 RGB so a slim-style ResNet v2 can take them.

The held-out split is written as a labelled image folder (`DIR/<class>/*.png`) so the demo
calibrates and evaluates from real files, the way users do.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .fsutil import atomic_path

IMAGE_SIZE = 32
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits_rgb(size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """All digits as uint8 [N, size, size, 3] (bilinear upscale of 0..16 -> 0..255) and labels."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    gray = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = np.empty((len(gray), size, size, 3), np.uint8)
    for i, g in enumerate(gray):
        img = Image.fromarray(g, mode="L").resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(img)[..., None]
    return out, d.target.astype(np.int64)


def split(images: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Deterministic stratified train / held-out split."""
    from sklearn.model_selection import train_test_split

    xtr, xte, ytr, yte = train_test_split(images, labels, test_size=TEST_FRACTION,
                                          random_state=SPLIT_SEED, stratify=labels)
    return {"train": (xtr, ytr), "test": (xte, yte)}


def write_image_folder(out: str | Path, which: str = "test") -> Path:
    """Write one split as `out/<class>/<index>.png`. Written atomically as a whole folder."""
    from PIL import Image

    images, labels = split(*load_digits_rgb())[which]
    out = Path(out)
    with atomic_path(out) as tmp:
        for i, (img, label) in enumerate(zip(images, labels)):
            d = tmp / str(int(label))
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{which}_{i:04d}.png")
    return out
