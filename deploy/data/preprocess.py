"""Image preprocessing presets, as TF-slim's `preprocessing/` modules do them at eval time.

`Preprocess` is what the bundle's manifest records under "preprocessing"; the same object
turns an image file into the model's input for calibration, accuracy and parity.

Resizing is a numpy port of TF1's `tf.image.resize_bilinear(align_corners=False)` (the
legacy kernel: no half-pixel centres, no antialiasing), the call TF-slim's eval
preprocessing makes, applied to float32 pixels as TF does. PIL's bilinear resize is not
used: it antialiases when downscaling, which moves pixels by several grey levels away from
what a slim checkpoint saw in training. What remains different from TF is the JPEG decoder
(PIL's libjpeg settings versus TF's), a difference of a grey level at a few pixels.

Importing this module needs only numpy; PIL is imported inside `load_image`.
"""
from __future__ import annotations

import io
import logging
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from deploy.errors import DataError, UsageError

log = logging.getLogger("trtdeploy.data")

PRESETS = ("inception", "vgg", "digits")
LAYOUTS = ("NCHW", "NHWC")

# TF-slim constants (inception_preprocessing.preprocess_for_eval, vgg_preprocessing).
INCEPTION_CENTRAL_FRACTION = 0.875
VGG_RGB_MEANS = (123.68, 116.78, 103.94)
VGG_RESIZE_SIDE = 256


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to a uint8 HxWx3 RGB array.

    Grayscale, RGBA and palette images are converted to RGB. EXIF orientation is ignored,
    as TF's decoders ignore it. A missing, corrupt, truncated or non-image file raises
    DataError naming the file.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read image ({e.strerror or e})") from None
    return decode_image(data, str(path))


_HUGE_SAID: set[str] = set()  # images whose size was already said (they are decoded more than once)


def decode_image(data: bytes, name: str) -> np.ndarray:
    """Decode image bytes (read once by the caller, e.g. to hash them too); see load_image."""
    try:
        from PIL import Image
    except ImportError:
        from deploy.errors import ToolMissingError

        raise ToolMissingError("decoding images needs Pillow; `pip install pillow`") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                # load() decodes every pixel: a truncated file fails here, not at first use.
                img.load()
                rgb = img.convert("RGB")
        if any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught) and name not in _HUGE_SAID:
            # PIL's own warning is a multi-line traceback-like text; say it once per image, in one line.
            _HUGE_SAID.add(name)
            log.warning("%s: %.0f megapixels, far above what the model takes; decoding it needs about %.0f MB "
                        "(downscale such images beforehand)", name, img.width * img.height / 1e6,
                        img.width * img.height * 3 / 2**20)
    # PIL's decoders raise a zoo of types for bad data (OSError, SyntaxError, ValueError,
    # struct.error, DecompressionBombError, EOFError...): all mean "not a usable image".
    except Exception as e:  # noqa: BLE001
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        # PIL names the BytesIO object ("<_io.BytesIO object at 0x7f...>"): noise, and it
        # would make the same error read differently on every run.
        detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", detail)
        raise DataError(f"{name}: not a readable image ({detail})") from None
    return np.asarray(rgb, dtype=np.uint8)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """TF1 `resize_bilinear(align_corners=False, half_pixel_centers=False)` of an HxWxC image.

    Output pixel (y, x) samples the input at (y * in_h / out_h, x * in_w / out_w), the
    scale and positions in float32 as TF's CPU kernel computes them. Returns float32.
    """
    img = np.asarray(image, dtype=np.float32)
    in_h, in_w = img.shape[:2]
    y0, y1, fy = _legacy_weights(in_h, height)
    x0, x1, fx = _legacy_weights(in_w, width)
    fx = fx[None, :, None]
    top = img[y0][:, x0] + (img[y0][:, x1] - img[y0][:, x0]) * fx
    bottom = img[y1][:, x0] + (img[y1][:, x1] - img[y1][:, x0]) * fx
    return top + (bottom - top) * fy[:, None, None]


def _legacy_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = np.float32(in_size) / np.float32(out_size)
    pos = np.arange(out_size, dtype=np.float32) * scale
    lower = np.floor(pos)
    lo = np.maximum(lower.astype(np.int64), 0)
    hi = np.minimum(np.ceil(pos).astype(np.int64), in_size - 1)
    return lo, hi, (pos - lower).astype(np.float32)


@dataclass(frozen=True)
class Preprocess:
    """One preprocessing preset and the input size and layout it produces.

    - inception: x/255, central crop keeping 0.875 of each side, bilinear resize to HxW,
      then (x - 0.5) * 2, so values lie in [-1, 1].
    - vgg: aspect-preserving bilinear resize so the shorter side is `resize_side`, central
      crop HxW, subtract the RGB means (123.68, 116.78, 103.94); no scaling.
    - digits: bilinear resize to HxW, x / 127.5 - 1 (the project's default model).

    `resize_only`: the whole image resized to HxW, then the preset's pixel arithmetic, without
    its central crop or aspect-preserving resize: what DeepStream's nvinfer does, which scales
    the whole frame or object to the network size (`deploy.serving.deepstream`), so parity can
    measure what dropping the crop costs.
    """

    preset: str
    height: int
    width: int
    layout: str = "NCHW"
    resize_side: int = VGG_RESIZE_SIDE  # vgg only
    resize_only: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise UsageError(f"unknown preprocessing preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        if self.layout not in LAYOUTS:
            raise UsageError(f"unknown layout {self.layout!r}; use one of {', '.join(LAYOUTS)}")
        for field in ("height", "width", "resize_side"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise UsageError(f"preprocessing {field} must be a positive integer, got {value!r}")
        if self.preset == "vgg" and self.resize_side < max(self.height, self.width):
            raise UsageError(
                f"vgg preprocessing: resize_side {self.resize_side} is smaller than the crop "
                f"{self.height}x{self.width}; use resize_side >= {max(self.height, self.width)}"
            )

    # --- manifest ------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"preset": self.preset, "height": int(self.height),
                             "width": int(self.width), "layout": self.layout}
        if self.preset == "vgg":
            d["resize_side"] = int(self.resize_side)
        if self.resize_only:
            d["resize_only"] = True
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Preprocess:
        known = {"preset", "height", "width", "layout", "resize_side", "resize_only"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"unknown preprocessing field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        missing = [k for k in ("preset", "height", "width") if k not in d]
        if missing:
            raise UsageError(f"preprocessing lacks {', '.join(missing)}; give preset, height and width")
        if "resize_side" in d and d["preset"] != "vgg":
            raise UsageError(f"resize_side applies only to the vgg preset, not {d['preset']!r}")
        return cls(d["preset"], d["height"], d["width"], d.get("layout", "NCHW"),
                   d.get("resize_side", VGG_RESIZE_SIDE), bool(d.get("resize_only", False)))

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """Shape of one preprocessed image (no batch dimension), in `layout`."""
        if self.layout == "NCHW":
            return (3, self.height, self.width)
        return (self.height, self.width, 3)

    # --- the work --------------------------------------------------------------
    def apply(self, image: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 RGB image -> float32 (CHW for NCHW, HWC for NHWC), no batch dim."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"expected an HxWx3 RGB image, got shape {image.shape}")
        if self.resize_only:
            out = self._arithmetic(resize_bilinear(image, self.height, self.width))
        elif self.preset == "inception":
            out = self._inception(image)
        elif self.preset == "vgg":
            out = self._vgg(image)
        else:
            out = resize_bilinear(image, self.height, self.width) / np.float32(127.5) - np.float32(1.0)
        if self.layout == "NCHW":
            out = out.transpose(2, 0, 1)
        return np.ascontiguousarray(out, dtype=np.float32)

    def load(self, path: str | os.PathLike) -> np.ndarray:
        return self.apply(load_image(path))

    def _arithmetic(self, img: np.ndarray) -> np.ndarray:
        """The preset's per-pixel arithmetic on float32 pixels in [0, 255], as its own steps do it."""
        if self.preset == "inception":
            return (img * np.float32(1.0 / 255.0) - np.float32(0.5)) * np.float32(2.0)
        if self.preset == "vgg":
            return img - np.asarray(VGG_RGB_MEANS, dtype=np.float32)
        return img / np.float32(127.5) - np.float32(1.0)

    def _inception(self, image: np.ndarray) -> np.ndarray:
        # convert_image_dtype multiplies by 1/255 in float32.
        img = image.astype(np.float32) * np.float32(1.0 / 255.0)
        h, w = img.shape[:2]
        # tf.image.central_crop: start = int((size - size * fraction) / 2), both sides alike.
        top = int((h - h * INCEPTION_CENTRAL_FRACTION) / 2)
        left = int((w - w * INCEPTION_CENTRAL_FRACTION) / 2)
        img = img[top:h - top, left:w - left]
        img = resize_bilinear(img, self.height, self.width)
        return (img - np.float32(0.5)) * np.float32(2.0)

    def _vgg(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        # _smallest_size_at_least: float32 scale, tf.rint (round half to even) of each side.
        side = np.float32(self.resize_side)
        scale = side / np.float32(w) if h > w else side / np.float32(h)
        new_h = int(np.rint(np.float32(h) * scale))
        new_w = int(np.rint(np.float32(w) * scale))
        img = resize_bilinear(image, new_h, new_w)
        top = (new_h - self.height) // 2
        left = (new_w - self.width) // 2
        img = img[top:top + self.height, left:left + self.width]
        return img - np.asarray(VGG_RGB_MEANS, dtype=np.float32)
