"""Export: slim-style model -> SavedModel + ONNX (tf2onnx) + manifest + reference outputs.

`export(ExportConfig(...), out)` writes the whole bundle into a temporary directory beside
`out` and renames it into place at the end, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import FORMAT_VERSION, ONNX_FILES, REFERENCE_NPZ, Bundle, TensorInfo, model_warnings
from .env import tool_versions
from .errors import UsageError
from .fsutil import atomic_path

log = logging.getLogger("trtdeploy.export")

INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "predictions")


@dataclass(frozen=True)
class ExportConfig:
    model: str
    checkpoint: Path | None = None
    num_classes: int | None = None
    image_size: tuple[int, int] | None = None
    output_stride: int | None = None
    global_pool: bool = True
    layout: str = "nchw"
    opset: int = 17
    seed: int = 0
    num_reference: int = 8

    def __post_init__(self):
        if self.layout not in ("nchw", "nhwc"):
            raise UsageError(f"--layout {self.layout!r}: use nchw (TensorRT's default) or nhwc")
        if self.opset < 17:
            raise UsageError(f"--opset {self.opset}: the bundle needs opset >= 17")
        if self.image_size is not None and min(self.image_size) < 8:
            raise UsageError(f"--image-size {self.image_size}: both sides must be at least 8 pixels")
        if self.num_reference < 1:
            raise UsageError("--num-reference must be at least 1")


def check_out_dir(out: Path, force: bool) -> None:
    """Refuse a non-empty --out without --force and an unwritable parent, before any work."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"{out}: exists and is not empty; pass --force to replace it or choose another --out")
    probe = out.resolve().parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{probe}: is a file, so {out} cannot be created; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{probe}: not writable; choose an --out you can write to")


def build_model(config: ExportConfig):
    """The TF model with weights: checkpoint, the registry's embedded one, or seeded random."""
    from .slim.checkpoint import checkpoint_num_classes, load_slim_checkpoint
    from .slim.registry import get_model_info
    from .slim.resnet_v2 import ResNetConfig, ResNetV2

    info = get_model_info(config.model)
    checkpoint = config.checkpoint or info.checkpoint
    if config.checkpoint is not None and not Path(str(config.checkpoint) + ".index").exists() \
            and not Path(config.checkpoint).exists():
        raise UsageError(f"{config.checkpoint}: no such checkpoint (give the prefix, e.g. model.ckpt)")
    num_classes = config.num_classes
    if num_classes is None and checkpoint is not None:
        num_classes = checkpoint_num_classes(checkpoint, info.name)
    num_classes = num_classes or info.num_classes
    rc = ResNetConfig.for_name(info.name, num_classes=num_classes, output_stride=config.output_stride,
                               global_pool=config.global_pool)
    try:
        model = ResNetV2(rc, seed=config.seed)
    except ValueError as e:  # unreachable output_stride and the like
        raise UsageError(f"--model {info.name}: {e}") from None
    if checkpoint is not None:
        load_slim_checkpoint(model.variables_by_name, checkpoint, info.name)
        embedded = info.checkpoint is not None and Path(checkpoint).resolve() == info.checkpoint.resolve()
        trained = info.trained_image_size if embedded else None  # unknown for a user's checkpoint
        weights = {"weights": "checkpoint", "checkpoint": str(checkpoint),
                   "trained_image_size": list(trained) if trained else None}
    else:
        log.warning("no checkpoint for %s: exporting SEEDED RANDOM weights (seed %d), not a trained model",
                    info.name, config.seed)
        weights = {"weights": "random", "seed": config.seed,
                   "warning": "seeded random weights: NOT a trained model; pass --checkpoint"}
    return info, rc, model, weights


def reference_inputs(info, config: ExportConfig, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """NHWC samples for reference.npz: held-out digits for the default model, seeded noise otherwise."""
    from .slim.registry import DEFAULT_MODEL

    if info.name == DEFAULT_MODEL and size == info.image_size:
        from .digits import load_digits_rgb, split
        from .train import scale_images

        images, labels = split(*load_digits_rgb(size[0]))["test"]
        return scale_images(images[: config.num_reference]), labels[: config.num_reference]
    rng = np.random.default_rng(config.seed)
    return rng.uniform(-1, 1, (config.num_reference, *size, 3)).astype(np.float32), None


def _rename_io(model_proto, mapping: dict[str, str]) -> None:
    for node in model_proto.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for vi in list(model_proto.graph.input) + list(model_proto.graph.output):
        vi.name = mapping.get(vi.name, vi.name)


def _set_batch_dim(model_proto, name: str = "batch") -> None:
    for vi in list(model_proto.graph.input) + list(model_proto.graph.output):
        dim0 = vi.type.tensor_type.shape.dim[0]
        dim0.ClearField("dim_value")
        dim0.dim_param = name


def export_parity(tf_out: dict[str, np.ndarray], ort_out: dict[str, np.ndarray]) -> dict[str, Any]:
    from .parity import compare_outputs

    outputs = {name: compare_outputs(ref, ort_out[name], name).to_json() for name, ref in tf_out.items()}
    logits = tf_out["logits"]
    tol = 1e-4 * float(np.abs(logits).max())
    return {"reference": "tf", "candidate": "onnxruntime-fp32", "outputs": outputs,
            "tolerance_max_abs_logits": tol, "pass": outputs["logits"]["max_abs"] <= tol}


def export(config: ExportConfig, out: str | Path, force: bool = False) -> Bundle:
    """Export `config.model` to the bundle directory `out` (replaced only with `force`)."""
    out = Path(out)
    check_out_dir(out, force)
    try:
        with atomic_path(out) as tmp:
            tmp.mkdir()
            _write_bundle(config, tmp)
    except PermissionError as e:
        raise UsageError(f"{out}: cannot write there ({e.strerror}); choose an --out you can write to") from None
    return Bundle(out)


def _write_bundle(config: ExportConfig, tmp: Path) -> None:
    import onnx
    import tf2onnx

    from .runners.ort import OrtRunner
    from .runners.tf import import_tf
    from .slim.spec import blocks_to_json

    tf = import_tf()  # TF32 off: the reference outputs are FP32
    log.info("[1/5] building %s", config.model)
    info, rc, model, weights = build_model(config)
    size = tuple(config.image_size or info.image_size)
    nchw = config.layout == "nchw"
    signature = [tf.TensorSpec([None, *size, 3], tf.float32, name=INPUT_NAME)]
    end_point_names: dict[str, str] = {}

    @tf.function(input_signature=signature)
    def serve(images):
        logits, end_points = model(images)
        for key, tensor in end_points.items():
            end_point_names[key] = tensor.name
        return {"logits": tf.identity(logits, name="logits"),
                "predictions": tf.identity(end_points["predictions"], name="predictions")}

    model.serve = serve
    log.info("[2/5] saving the SavedModel")
    tf.saved_model.save(model, str(tmp / "saved_model"), signatures={"serving_default": serve})

    log.info("[3/5] converting to ONNX with tf2onnx (opset %d, %s input)", config.opset, config.layout.upper())
    start = time.time()
    proto, _ = tf2onnx.convert.from_function(
        serve, input_signature=signature, opset=config.opset,
        inputs_as_nchw=[f"{INPUT_NAME}:0"] if nchw else None)
    structured = serve.get_concrete_function().structured_outputs
    _rename_io(proto, {f"{INPUT_NAME}:0": INPUT_NAME, **{structured[k].name: k for k in OUTPUT_NAMES}})
    _set_batch_dim(proto)
    proto.producer_name = "trtdeploy (tf2onnx)"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(tmp / ONNX_FILES["fp32"]))
    onnx_seconds = time.time() - start
    produced = {o for n in proto.graph.node for o in n.output}
    end_points = {k: v for k, v in end_point_names.items() if v in produced}

    log.info("[4/5] reference outputs from TensorFlow")
    x_nhwc, labels = reference_inputs(info, config, size)
    tf_out = {k: v.numpy() for k, v in serve(tf.constant(x_nhwc)).items()}
    x_model = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)) if nchw else x_nhwc
    ref = {"input": x_model, **{f"output:{k}": v for k, v in tf_out.items()}}
    if labels is not None:
        ref["labels"] = labels
    np.savez(tmp / REFERENCE_NPZ, **ref)

    log.info("[5/5] TF vs ONNX Runtime parity")
    with OrtRunner(tmp / ONNX_FILES["fp32"], name="ort-fp32") as runner:
        ort_out = runner.infer({INPUT_NAME: x_model})
    parity = export_parity(tf_out, ort_out)

    layout = config.layout.upper()
    in_shape = (-1, 3, *size) if nchw else (-1, *size, 3)
    model_json = {**rc.to_json(), "image_size": list(size), "spec": blocks_to_json(model.blocks), **weights}
    model_json["warnings"] = model_warnings(model_json)  # the CLI prints them; the manifest keeps them
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "model": model_json,
        "inputs": [TensorInfo(INPUT_NAME, in_shape, "float32", layout).to_json()],
        "outputs": [TensorInfo(k, (-1, *tf_out[k].shape[1:]), "float32").to_json() for k in OUTPUT_NAMES],
        "preprocessing": {"preset": info.preprocessing, "height": size[0], "width": size[1], "layout": layout},
        "label_offset": info.label_offset,
        "end_points": end_points,
        "opset": config.opset,
        "export_parity": parity,
        "tools": tool_versions(),
        "timings": {"tf2onnx_seconds": round(onnx_seconds, 2)},
    }
    bundle = Bundle(tmp, manifest)
    for rel in ("saved_model", ONNX_FILES["fp32"], REFERENCE_NPZ):
        bundle.record_file(rel)
    bundle.save()
