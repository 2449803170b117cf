"""`trtdeploy deepstream`: a Gst-nvinfer classifier config for the bundle, and what it cannot keep.

nvinfer's preprocessing (DeepStream's Gst-nvinfer documentation): the frame or object is scaled
to the network's height and width, converted to `model-color-format` (0 RGB, 1 BGR, 2 GRAY),
then each pixel becomes `y = net-scale-factor * (x - offsets[c])`, x in [0, 255]. So a
preprocessing maps exactly when its arithmetic is one scale for all channels and one offset per
channel; slim's inception arithmetic (x/255 - 0.5) * 2 = (2/255) * (x - 127.5), VGG's x - mean
(RGB) and the digits model's x/127.5 - 1 all are. What nvinfer has no key for is said in the
file and on the terminal: it resizes the whole frame or object (`maintain-aspect-ratio=0`), so
slim's central crop (inception 0.875) and VGG's aspect-preserving resize with crop are lost (the
parity report measures the cost: `trtdeploy parity BUNDLE --data DIR --deepstream`), and its
bilinear scaler (NvBufSurfTransform) is not TF1's legacy resize kernel. A preprocessing whose
arithmetic needs per-channel scales is refused unless `approximate`, which uses their mean.

Keys are Gst-nvinfer's own (`gstnvinfer_property_parser.h`, `CONFIG_GROUP_INFER_*`); labels are
one `;`-separated line for the single output layer (`labels.deepstream_label_file`). Standard
library only.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..bundle import ONNX_FILES, TRT_CACHE, Bundle
from ..data.preprocess import INCEPTION_CENTRAL_FRACTION, VGG_RGB_MEANS, Preprocess
from ..errors import UsageError
from ..fsutil import atomic_path
from . import labels as names

CONFIG_FILE = "config_infer_classifier.txt"
LABELS_FILE = "labels.txt"
# [property] keys of Gst-nvinfer (gstnvinfer_property_parser.h, DeepStream 6.x-7.x); the writer
# uses no other.
NVINFER_PROPERTY_KEYS = frozenset({
    "gie-unique-id", "process-mode", "interval", "labelfile-path", "gpu-id", "secondary-reinfer-interval",
    "output-tensor-meta", "enable-dla", "use-dla-core", "batch-size", "tensor-meta-pool-size", "network-mode",
    "model-engine-file", "int8-calib-file", "workspace-size", "output-blob-names", "is-classifier",
    "network-type", "force-implicit-batch-dim", "infer-dims", "output-io-formats", "layer-device-precision",
    "model-color-format", "net-scale-factor", "offsets", "mean-file", "maintain-aspect-ratio",
    "symmetric-padding", "scaling-filter", "scaling-compute-hw", "network-input-order",
    "input-tensor-from-meta", "custom-lib-path", "parse-bbox-func-name", "parse-bbox-instance-mask-func-name",
    "engine-create-func-name", "parse-classifier-func-name", "custom-network-config", "model-file",
    "proto-file", "uff-file", "uff-input-order", "input-dims", "uff-input-dims", "uff-input-blob-name",
    "tlt-encoded-model", "tlt-model-key", "onnx-file", "num-detected-classes", "enable-dbscan", "cluster-mode",
    "classifier-type", "classifier-threshold", "classifier-async-mode", "segmentation-threshold",
    "segmentation-output-order", "output-instance-mask", "input-object-min-width", "input-object-min-height",
    "input-object-max-width", "input-object-max-height", "operate-on-gie-id", "operate-on-class-ids",
    "filter-out-class-ids", "parse-func",
})
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # NvDsInferNetworkMode
NETWORK_TYPE_CLASSIFIER = 1
COLOR_RGB = 0
SCALING_BILINEAR = 1  # NvBufSurfTransformInter_Bilinear
INPUT_ORDER = {"NCHW": 0, "NHWC": 1}


@dataclass(frozen=True)
class PixelArithmetic:
    """y = (x - mean[c]) * scale[c] for x in [0, 255], per RGB channel."""

    scale: tuple[float, float, float]
    mean: tuple[float, float, float]


def arithmetic_of(pre: Preprocess) -> PixelArithmetic:
    if pre.preset == "inception":  # (x/255 - 0.5) * 2
        return PixelArithmetic((2.0 / 255.0,) * 3, (127.5,) * 3)
    if pre.preset == "vgg":  # x - mean, RGB
        return PixelArithmetic((1.0,) * 3, tuple(VGG_RGB_MEANS))  # type: ignore[arg-type]
    return PixelArithmetic((1.0 / 127.5,) * 3, (127.5,) * 3)  # digits: x/127.5 - 1


def lost_geometry(pre: Preprocess) -> list[str]:
    """What nvinfer's whole-frame resize drops of the preset's geometry."""
    if pre.resize_only:
        return []
    if pre.preset == "inception":
        return [f"slim's central crop (the middle {INCEPTION_CENTRAL_FRACTION:.3f} of each side) is lost: nvinfer "
                f"scales the whole frame or object to {pre.height}x{pre.width}"]
    if pre.preset == "vgg":
        return [f"slim's aspect-preserving resize (shorter side {pre.resize_side}) and central {pre.height}x"
                f"{pre.width} crop are lost: nvinfer scales the whole frame or object to {pre.height}x{pre.width}, "
                "changing the aspect ratio"]
    return []


@dataclass(frozen=True)
class NvinferMapping:
    net_scale_factor: float
    offsets: tuple[float, float, float]
    notes: tuple[str, ...]  # what is not reproduced


def map_arithmetic(a: PixelArithmetic, approximate: bool) -> tuple[float, list[str]]:
    """nvinfer's single net-scale-factor for `a`, refusing per-channel scales unless `approximate`."""
    if len(set(a.scale)) == 1:
        return a.scale[0], []
    mean_scale = sum(a.scale) / 3
    worst = max(abs(s - mean_scale) / s for s in a.scale)
    if not approximate:
        raise UsageError(f"the preprocessing scales each channel differently ({', '.join(f'{s:.6g}' for s in a.scale)}); "
                         "nvinfer has one net-scale-factor, so this does not map. Pass --approximate to use their "
                         f"mean ({mean_scale:.6g}, up to {worst:.1%} off per channel)")
    return mean_scale, [f"approximate: net-scale-factor {mean_scale:.6g} is the mean of per-channel scales "
                        f"{list(a.scale)}, up to {worst:.1%} off on a channel"]


def preprocessing_mapping(pre: Preprocess, approximate: bool = False,
                          arithmetic: PixelArithmetic | None = None) -> NvinferMapping:
    a = arithmetic or arithmetic_of(pre)
    scale, notes = map_arithmetic(a, approximate)
    notes += lost_geometry(pre)
    notes.append("nvinfer's bilinear scaler (NvBufSurfTransform) is not TF1's legacy resize kernel: expect small "
                 "pixel differences wherever an image is resized")
    return NvinferMapping(scale, a.mean, tuple(notes))


@dataclass(frozen=True)
class DeepStreamOptions:
    precision: str = "fp32"
    engine: Path | None = None  # a plan: model-engine-file instead of building from ONNX
    int8_mode: str = "explicit"  # explicit: the Q/DQ ONNX; implicit: model.onnx + our trt.cache
    batch_size: int = 1
    threshold: float = 0.0
    approximate: bool = False
    labels: Path | None = None


def _model_files(bundle: Bundle, opts: DeepStreamOptions) -> tuple[dict[str, str], dict[str, Path], list[str]]:
    """The model keys, the files to copy beside the config, and notes."""
    if opts.engine is not None:
        from ..trt.sidecar import read_sidecar

        sidecar = read_sidecar(opts.engine)
        if sidecar.batch[2] < opts.batch_size:
            raise UsageError(f"--batch-size {opts.batch_size}: above {opts.engine}'s profile max {sidecar.batch[2]}")
        return ({"model-engine-file": opts.engine.name, "network-mode": str(NETWORK_MODE[sidecar.precision])},
                {opts.engine.name: opts.engine},
                [f"{opts.engine.name} loads only where DeepStream's TensorRT is {sidecar.tensorrt} on "
                 f"{sidecar.compute_capability}"])
    if opts.precision == "int8" and opts.int8_mode == "implicit":
        cache = bundle.path(TRT_CACHE)
        if not cache.is_file():
            raise UsageError(f"{cache}: missing; calibrate first (`trtdeploy calibrate {bundle.root} --data DIR`)")
        onnx = bundle.onnx_path("fp32")
        return ({"onnx-file": onnx.name, "int8-calib-file": cache.name, "network-mode": "1"},
                {onnx.name: onnx, cache.name: cache},
                ["implicit INT8 (TensorRT 10.x only): nvinfer builds model.onnx with the INT8 flag and our trt.cache"])
    onnx = bundle.onnx_path(opts.precision)
    return {"onnx-file": onnx.name, "network-mode": str(NETWORK_MODE[opts.precision])}, {onnx.name: onnx}, []


def _class_output(bundle: Bundle) -> tuple[str, list[str]]:
    """nvinfer's default classifier parser reads probabilities (a softmax): `predictions` if exported."""
    classes = bundle.class_outputs
    if not classes:
        raise UsageError(f"{bundle.root}: no [N, num_classes] output; a Gst-nvinfer classifier (network-type=1) "
                         "needs class scores (this bundle's outputs are feature maps)")
    if "predictions" in classes:
        return "predictions", []
    return classes[0], [f"{classes[0]} holds logits, not probabilities: nvinfer's default classifier parser compares "
                        "them with classifier-threshold as if they were probabilities"]


def config_text(bundle: Bundle, opts: DeepStreamOptions) -> tuple[str, dict[str, Path], list[str]]:
    """The config file's text, the files to copy beside it, and what it does not reproduce."""
    if len(bundle.inputs) != 1:
        raise UsageError(f"{bundle.root}: {len(bundle.inputs)} inputs; a Gst-nvinfer image classifier has one")
    pre = Preprocess.from_json(bundle.preprocessing)
    mapping = preprocessing_mapping(pre, opts.approximate)
    model_keys, files, notes = _model_files(bundle, opts)
    output, output_notes = _class_output(bundle)
    notes = [*mapping.notes, *output_notes, *notes]
    dims = (3, pre.height, pre.width) if pre.layout == "NCHW" else (pre.height, pre.width, 3)
    props = {"gpu-id": "0", **model_keys, "labelfile-path": LABELS_FILE, "batch-size": str(opts.batch_size),
             "network-type": str(NETWORK_TYPE_CLASSIFIER), "process-mode": "1", "gie-unique-id": "1",
             "infer-dims": ";".join(map(str, dims)), "network-input-order": str(INPUT_ORDER[pre.layout]),
             "model-color-format": str(COLOR_RGB), "net-scale-factor": repr(mapping.net_scale_factor),
             "offsets": ";".join(repr(float(o)) for o in mapping.offsets), "maintain-aspect-ratio": "0",
             "scaling-filter": str(SCALING_BILINEAR), "output-blob-names": output,
             "classifier-threshold": repr(float(opts.threshold))}
    unknown = sorted(set(props) - NVINFER_PROPERTY_KEYS)
    if unknown:  # nvinfer ignores a key it does not know, silently: a bug here, never the user's
        raise ValueError(f"not Gst-nvinfer keys: {unknown}")
    lines = [f"# Gst-nvinfer classifier config written by trtdeploy deepstream from {bundle.root}",
             f"# preprocessing: {pre.preset} -> y = net-scale-factor * (x - offsets[c]), RGB",
             *[f"# not reproduced: {n}" for n in notes], "[property]", *[f"{k}={v}" for k, v in props.items()]]
    return "\n".join(lines) + "\n", files, notes


def write_deepstream(bundle: Bundle, opts: DeepStreamOptions, out: str | os.PathLike) -> tuple[Path, list[str]]:
    """DIR with the config, the labels file and the model files; replaced whole, never merged."""
    text, files, notes = config_text(bundle, opts)
    label_text = names.deepstream_label_file(names.output_names(bundle, opts.labels))
    for rel in ONNX_FILES.values():
        if rel in files:
            bundle.file(rel)  # checked against the manifest before it is copied
    root = Path(out)
    _check_ours(root)
    with atomic_path(root) as tmp:
        tmp.mkdir()
        (tmp / CONFIG_FILE).write_text(text)
        (tmp / LABELS_FILE).write_text(label_text)
        for name, src in files.items():
            shutil.copyfile(src, tmp / name)
    return root / CONFIG_FILE, notes


def _check_ours(root: Path) -> None:
    """An existing DIR is replaced only if it holds nothing but what a previous run wrote."""
    if not root.exists():
        return
    if not root.is_dir() or not (root / CONFIG_FILE).is_file():
        raise UsageError(f"--out {root}: exists and holds no {CONFIG_FILE} of ours; it is left alone: choose "
                         "another --out")
    ours = {CONFIG_FILE, LABELS_FILE}
    for line in (root / CONFIG_FILE).read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ("onnx-file", "model-engine-file", "int8-calib-file"):
            ours.add(value)
    others = sorted(p.name for p in root.iterdir() if p.name not in ours)
    if others:
        raise UsageError(f"--out {root}: holds files trtdeploy did not write ({', '.join(others[:5])}); they are "
                         "left alone: move them or choose another --out")


def summary(path: Path, notes: Sequence[str]) -> list[str]:
    return [f"wrote {path} (labels: {path.parent / LABELS_FILE})", *[f"not reproduced: {n}" for n in notes]]
