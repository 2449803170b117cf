"""Preprocessing presets: known values, layouts, image modes, bad files."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deploy.data.preprocess import PRESETS, Preprocess, load_image, resize_bilinear
from deploy.errors import DataError, UsageError


def _const(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()


@pytest.mark.parametrize("preset, expected", [
    ("inception", lambda v: (v / 255.0 - 0.5) * 2.0),
    ("vgg", lambda v: v - np.array([123.68, 116.78, 103.94])),
    ("digits", lambda v: v / 127.5 - 1.0),
])
def test_constant_image_maps_to_the_expected_constant(preset, expected):
    rgb = (10, 128, 250)
    out = Preprocess(preset, 24, 32, "NHWC", resize_side=40).apply(_const(50, 70, rgb))
    assert out.shape == (24, 32, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(expected(np.array(rgb, dtype=np.float64)), out.shape),
                               rtol=0, atol=1e-5)


def test_inception_range_and_central_crop_of_a_gradient():
    # Horizontal ramp 0..199 over 200 columns: the crop keeps columns 12..187
    # (start = int((200 - 175) / 2) = 12), resized to 176 columns = one column per pixel.
    img = np.repeat(np.repeat(np.arange(200, dtype=np.uint8)[None, :, None], 3, axis=2), 40, axis=0)
    out = Preprocess("inception", 35, 176, "NHWC").apply(img)
    cols = out[0, :, 0]
    np.testing.assert_allclose(cols, (np.arange(12, 188) / 255.0 - 0.5) * 2.0, atol=1e-6)
    full = Preprocess("inception", 8, 8).apply(np.random.default_rng(0).integers(0, 256, (30, 30, 3), dtype=np.uint8))
    assert -1.0 <= full.min() and full.max() <= 1.0


def test_vgg_aspect_preserving_resize_and_crop():
    # A 100x300 image, left half black, right half white: shorter side -> 256 gives
    # 256x768; the central 224x224 crop is columns 272..495, which straddle the edge at 384.
    img = np.zeros((100, 300, 3), dtype=np.uint8)
    img[:, 150:] = 255
    out = Preprocess("vgg", 224, 224, "NHWC").apply(img) + np.array([123.68, 116.78, 103.94], dtype=np.float32)
    assert out.shape == (224, 224, 3)
    row = out[100, :, 0]
    assert row[:100].max() == 0.0 and row[-100:].min() == 255.0
    assert 0 < np.argmax(row > 127) and abs(np.argmax(row > 127) - (384 - 272)) <= 2


def test_layouts_agree_up_to_transpose():
    img = np.random.default_rng(1).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for preset in PRESETS:
        chw = Preprocess(preset, 16, 20, "NCHW", resize_side=32).apply(img)
        hwc = Preprocess(preset, 16, 20, "NHWC", resize_side=32).apply(img)
        assert chw.shape == (3, 16, 20) and chw.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(chw, hwc.transpose(2, 0, 1))


def test_resize_is_tf_legacy_bilinear():
    # 4 -> 2 with scale 2 and no half-pixel centres samples input pixels 0 and 2 exactly;
    # 2 -> 4 samples at 0, .5, 1, 1.5 (the last clamps to the edge pixel).
    img = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(resize_bilinear(img, 2, 2)[..., 0], [[0, 2], [8, 10]])
    up = resize_bilinear(np.array([[[0] * 3, [10] * 3]], dtype=np.uint8), 1, 4)[0, :, 0]
    np.testing.assert_allclose(up, [0, 5, 10, 10])


@pytest.mark.parametrize("mode, value", [("L", 77), ("RGBA", (1, 2, 3, 4)), ("P", 5), ("I;16", 300)])
def test_other_modes_load_as_rgb(tmp_path, mode, value):
    path = tmp_path / f"img_{mode.replace(';', '')}.png"
    Image.new(mode, (9, 7), value).save(path)
    img = load_image(path)
    assert img.shape == (7, 9, 3) and img.dtype == np.uint8
    assert Preprocess("digits", 4, 4).load(path).shape == (3, 4, 4)


def test_corrupt_truncated_and_missing_files_name_the_file(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"definitely not a png")
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path in (junk, truncated, tmp_path / "missing.png"):
        with pytest.raises(DataError) as err:
            load_image(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value) and "BytesIO" not in str(err.value)


def test_json_round_trip_and_validation():
    for p in (Preprocess("inception", 299, 299), Preprocess("vgg", 224, 224, "NHWC", resize_side=288),
              Preprocess("digits", 32, 32)):
        assert Preprocess.from_json(p.to_json()) == p
    assert "resize_side" not in Preprocess("digits", 32, 32).to_json()
    with pytest.raises(UsageError, match="inception, vgg, digits"):
        Preprocess.from_json({"preset": "resnet", "height": 1, "width": 1})
    with pytest.raises(UsageError, match="NCHW, NHWC"):
        Preprocess.from_json({"preset": "vgg", "height": 1, "width": 1, "layout": "CHW"})
    with pytest.raises(UsageError, match="hieght"):
        Preprocess.from_json({"preset": "vgg", "hieght": 1, "width": 1})
    with pytest.raises(UsageError, match="resize_side"):
        Preprocess("vgg", 224, 224, resize_side=200)
    with pytest.raises(UsageError, match="height"):
        Preprocess("digits", 0, 8)


def test_matches_tf_slim_eval_preprocessing():
    """The presets against the TF ops TF-slim's preprocess_for_eval calls (TF needed)."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    for h, w in ((375, 500), (333, 250), (97, 131)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        # inception_preprocessing.preprocess_for_eval(image, 224, 224, central_fraction=0.875)
        t = tf.image.convert_image_dtype(tf.constant(img), tf.float32)
        t = tf.image.central_crop(t, central_fraction=0.875)
        t = tf.compat.v1.image.resize_bilinear(t[None], [224, 224], align_corners=False)[0]
        ref = ((t - 0.5) * 2.0).numpy()
        np.testing.assert_allclose(Preprocess("inception", 224, 224, "NHWC").apply(img), ref, rtol=0, atol=1e-6)
        # vgg_preprocessing.preprocess_for_eval(image, 224, 224, resize_side=256)
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        scale = 256.0 / wf if h > w else 256.0 / hf  # tf.cond in slim; same float32 division
        nh, nw = int(tf.math.rint(hf * scale)), int(tf.math.rint(wf * scale))
        r = tf.compat.v1.image.resize_bilinear(img[None], [nh, nw], align_corners=False)[0]
        r = r[(nh - 224) // 2:(nh - 224) // 2 + 224, (nw - 224) // 2:(nw - 224) // 2 + 224]
        ref = (r - tf.constant([123.68, 116.78, 103.94])).numpy()
        np.testing.assert_allclose(Preprocess("vgg", 224, 224, "NHWC").apply(img), ref, rtol=0, atol=1e-4)
