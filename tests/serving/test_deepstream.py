"""The Gst-nvinfer config: the preprocessing mapping (exact and refused cases), the labels file,
every key against nvinfer's documented keys, and the resize-only preprocessing parity can run."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from deploy.cli import main
from deploy.data.preprocess import Preprocess, resize_bilinear
from deploy.serving.deepstream import (CONFIG_FILE, NVINFER_PROPERTY_KEYS, PixelArithmetic, arithmetic_of,
                                       preprocessing_mapping)
from deploy.serving.labels import deepstream_label_file

PIXELS = np.random.default_rng(0).integers(0, 256, size=(40, 48, 3)).astype(np.uint8)


def nvinfer(mapping, image: np.ndarray) -> np.ndarray:
    """nvinfer's y = net-scale-factor * (x - offsets[c]), in float64 (the reference arithmetic)."""
    return mapping.net_scale_factor * (image.astype(np.float64) - np.asarray(mapping.offsets))


@pytest.mark.parametrize("preset", ["inception", "vgg", "digits"])
def test_each_preset_arithmetic_maps_exactly(preset):
    pre = Preprocess(preset, 32, 32, "NHWC", resize_side=32) if preset == "vgg" else Preprocess(preset, 32, 32, "NHWC")
    mapping = preprocessing_mapping(pre)
    resized = resize_bilinear(PIXELS, 32, 32)
    ours = replace(pre, resize_only=True).apply(PIXELS)
    # float32 steps against float64 arithmetic: a few ulps of values within +-255 (vgg) or +-1.
    bound = 4 * np.finfo(np.float32).eps * (255 if preset == "vgg" else 1)
    np.testing.assert_allclose(ours, nvinfer(mapping, resized), rtol=0, atol=bound)
    assert not any(n.startswith("approximate") for n in mapping.notes)


def test_inception_and_vgg_say_their_crop_is_lost_and_digits_loses_none():
    assert "central crop" in " ".join(preprocessing_mapping(Preprocess("inception", 224, 224)).notes)
    assert "aspect-preserving resize" in " ".join(preprocessing_mapping(Preprocess("vgg", 224, 224)).notes)
    assert not any("crop" in n for n in preprocessing_mapping(Preprocess("digits", 32, 32)).notes)


def test_per_channel_scales_are_refused_unless_approximate():
    from deploy.errors import UsageError

    torchvision = PixelArithmetic(tuple(1 / (255 * s) for s in (0.229, 0.224, 0.225)),  # type: ignore[arg-type]
                                  (0.485 * 255, 0.456 * 255, 0.406 * 255))
    pre = Preprocess("digits", 32, 32)
    with pytest.raises(UsageError, match="scales each channel differently.*--approximate"):
        preprocessing_mapping(pre, arithmetic=torchvision)
    approx = preprocessing_mapping(pre, approximate=True, arithmetic=torchvision)
    assert approx.net_scale_factor == pytest.approx(sum(torchvision.scale) / 3)
    assert approx.notes[0].startswith("approximate: ") and "up to 1.3% off" in approx.notes[0]  # (0.017354 - 0.017125) / 0.017125


def test_resize_only_drops_the_crop_and_keeps_the_arithmetic():
    inception = Preprocess("inception", 32, 32)
    whole = replace(inception, resize_only=True)
    assert not np.allclose(inception.apply(PIXELS), whole.apply(PIXELS))  # the crop is what differs
    digits = Preprocess("digits", 32, 32)
    np.testing.assert_array_equal(digits.apply(PIXELS), replace(digits, resize_only=True).apply(PIXELS))
    assert Preprocess.from_json(whole.to_json()) == whole and "resize_only" not in inception.to_json()
    vgg = replace(Preprocess("vgg", 32, 32, resize_side=32), resize_only=True).apply(PIXELS)
    np.testing.assert_allclose(vgg.mean(axis=(1, 2)) + np.asarray([123.68, 116.78, 103.94]),
                               resize_bilinear(PIXELS, 32, 32).mean(axis=(0, 1)), rtol=1e-5)


def test_the_labels_file_is_one_line_with_slims_background_first():
    assert deepstream_label_file(["background", "tench", "goldfish"]) == "background;tench;goldfish\n"
    from deploy.errors import UsageError

    with pytest.raises(UsageError, match="contains ';'"):
        deepstream_label_file(["a;b"])


@pytest.mark.parametrize("flags, model_keys", [
    (["--precision", "fp32"], {"onnx-file": "model.onnx", "network-mode": "0"}),
    (["--precision", "fp16"], {"onnx-file": "model.fp16.onnx", "network-mode": "2"}),
    (["--precision", "int8"], {"onnx-file": "model.int8.onnx", "network-mode": "1"}),
    (["--precision", "int8", "--int8-mode", "implicit"],
     {"onnx-file": "model.onnx", "network-mode": "1", "int8-calib-file": "trt.cache"}),
])
def test_the_config_uses_only_nvinfer_keys_and_ships_its_files(serving_bundle, tmp_path, capsys, flags, model_keys):
    out = tmp_path / "ds"
    assert main(["deepstream", str(serving_bundle), "--out", str(out), *flags, "--batch-size", "4"]) == 0
    text = (out / CONFIG_FILE).read_text()
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert text.splitlines()[[i for i, ln in enumerate(text.splitlines()) if not ln.startswith("#")][0]] == "[property]"
    assert set(props) <= NVINFER_PROPERTY_KEYS
    assert {k: props[k] for k in model_keys} == model_keys
    assert props["network-type"] == "1" and props["infer-dims"] == "3;32;32" and props["batch-size"] == "4"
    assert props["net-scale-factor"] == repr(1 / 127.5) and props["offsets"] == "127.5;127.5;127.5"
    assert props["model-color-format"] == "0" and props["output-blob-names"] == "predictions"
    for key in ("onnx-file", "int8-calib-file", "labelfile-path"):
        if key in props:
            assert (out / props[key]).is_file()
    assert (out / "labels.txt").read_text() == ";".join(f"class {i}" for i in range(10)) + "\n"
    assert "not reproduced: nvinfer's bilinear scaler" in capsys.readouterr().out


def test_nvinfer_keys_are_the_documented_ones():
    """A spot check of the list against gstnvinfer_property_parser.h's CONFIG_GROUP_INFER_* strings."""
    assert {"net-scale-factor", "offsets", "model-color-format", "infer-dims", "network-type", "network-mode",
            "int8-calib-file", "model-engine-file", "onnx-file", "output-blob-names", "classifier-threshold",
            "labelfile-path", "batch-size", "maintain-aspect-ratio", "scaling-filter"} <= NVINFER_PROPERTY_KEYS
    assert "net-scale" not in NVINFER_PROPERTY_KEYS and "input-blob-name" not in NVINFER_PROPERTY_KEYS


def test_a_directory_it_did_not_write_is_left_alone(serving_bundle, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["deepstream", str(serving_bundle), "--out", str(out)]) == 0
    (out / "notes.md").write_text("mine")
    assert main(["deepstream", str(serving_bundle), "--out", str(out)]) == 2
    assert "holds files trtdeploy did not write (notes.md)" in capsys.readouterr().err
    assert (out / "notes.md").read_text() == "mine"


def test_parity_measures_deepstreams_preprocessing(serving_bundle, digits_images, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["parity", str(serving_bundle), "--data", str(digits_images[1]), "--num-images", "32",
                 "--backends", "ort-fp32", "--deepstream", "--out", str(out)]) == 0
    entry = json.loads((out / "parity.json").read_text())["backends"]["deepstream-fp32"]
    # The digits preprocessing is a plain resize: nvinfer's resize-only version is the same tensor.
    assert entry["status"] == "ran" and entry["outputs"]["logits"]["top1_agreement"] == 1.0
    assert "deepstream-fp32" in capsys.readouterr().out
