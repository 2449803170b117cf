"""Export: slim-style model -> SavedModel + ONNX (tf2onnx) + manifest + reference outputs.

`export(ExportConfig(...), out)` writes the whole bundle into a temporary directory beside
`out` and renames it into place at the end, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import (FORMAT_VERSION, MANIFEST, ONNX_FILES, REFERENCE_NPZ, TOP_LEVEL, Bundle, TensorInfo,
                     model_warnings)
from .bundle.layout import LOCK
from .bundle.lock import bundle_lock
from .env import tool_versions
from .errors import UsageError
from .fsutil import check_writable_dir, is_temp, remove_path, replace_dir, sweep_temps, temp_name, write_error
from .parity import OutputMetrics, Thresholds, compare_outputs
from .parity.metrics import logits_pair
from .slim.netspec import NetSpec, SpecError, zoo_spec
from .slim.registry import DEFAULT_MODEL, REGISTRY, get_model_info

log = logging.getLogger("trtdeploy.export")

INPUT_NAME = "input"
# Export parity, TF vs ONNX Runtime on the same FP32 graph: every output's max |diff| over its
# max |value|, within the FP32 limit `trtdeploy parity` applies (see deploy.parity.Thresholds).
EXPORT_TOLERANCE_SCALED = Thresholds.for_precision("fp32").max_abs_scaled


@dataclass(frozen=True)
class ExportConfig:
    """What to export: a registry `model` or a user `spec` (one of the two), with overrides."""

    model: str | None = None
    checkpoint: Path | None = None
    num_classes: int | None = None
    image_size: tuple[int, int] | None = None
    output_stride: int | None = None
    global_pool: bool | None = None  # None: the model's own (True for the zoo's classifiers)
    layout: str = "nchw"
    opset: int = 17
    seed: int = 0
    num_reference: int = 8
    spec: NetSpec | None = None
    outputs: tuple[str, ...] | None = None  # tf-slim end point names; None: logits and predictions
    depth_multiplier: float | None = None  # MobileNet and Inception v2/v3 widths

    def __post_init__(self):
        if (self.model is None) == (self.spec is None):
            raise UsageError("give one of --model NAME (the zoo) or --spec FILE.json (your own net)")
        if self.layout not in ("nchw", "nhwc"):
            raise UsageError(f"--layout {self.layout!r}: use nchw (TensorRT's default) or nhwc")
        if self.opset < 17:
            raise UsageError(f"--opset {self.opset}: the bundle needs opset >= 17")
        if self.image_size is not None and min(self.image_size) < 8:
            raise UsageError(f"--image-size {self.image_size}: both sides must be at least 8 pixels")
        if self.num_reference < 1:
            raise UsageError(f"the number of reference samples must be at least 1, got {self.num_reference}")
        if self.outputs is not None:
            if not self.outputs or not all(self.outputs):
                raise UsageError("--outputs: give NAME[,NAME...] without empty names (see --list-outputs)")
            dup = next((o for o in self.outputs if self.outputs.count(o) > 1), None)
            if dup is not None:
                raise UsageError(f"--outputs: {dup!r} is given twice; name each output once")
        requested_spec(self)  # a spec the overrides break fails here, before any work


def check_out_dir(out: Path, force: bool) -> None:
    """Before any work: refuse an --out that is the working directory or a directory above it,
    the home directory or /; a file; a non-empty directory without --force; with --force,
    anything but a bundle (a manifest we wrote, and nothing a bundle does not hold); and a
    place that cannot be written."""
    resolved, cwd, home = out.resolve(), Path.cwd().resolve(), Path.home().resolve()
    if resolved == Path(resolved.anchor) or resolved == home or cwd.is_relative_to(resolved):
        which = ("the root directory" if resolved == Path(resolved.anchor) else "your home directory"
                 if resolved == home else "the working directory" if resolved == cwd
                 else "a directory above the working directory")
        raise UsageError(f"--out {out}: is {which}, which a bundle never replaces; give a new directory for the "
                         f"bundle, e.g. --out {out / 'bundle'}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UsageError(f"{out}: exists and is not empty; pass --force to replace the bundle there or "
                             "choose another --out")
        what = not_a_bundle(out)
        if what:
            raise UsageError(f"{out}: --force replaces a trtdeploy bundle and nothing else, and this directory "
                             f"{what}; move those away or choose another --out")
    check_writable_dir(out.parent if out.exists() else out)  # the bundle is renamed in beside the old one


def not_a_bundle(d: Path) -> str | None:
    """What makes directory `d` other than a bundle of ours (None: it is one)."""
    import json

    manifest = d / MANIFEST
    try:
        m = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        m = None
    if not (isinstance(m, dict) and isinstance(m.get("format"), int) and isinstance(m.get("model"), dict)):
        names = sorted(p.name for p in d.iterdir())
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (f"holds {shown}, without a {MANIFEST} written by trtdeploy" if not manifest.is_file()
                else f"has a {MANIFEST} that trtdeploy did not write (beside {shown})")
    foreign = sorted(p.name for p in d.iterdir() if p.name not in TOP_LEVEL and not is_temp(p))
    if foreign:
        more = " and more" if len(foreign) > 5 else ""
        return f"also holds {', '.join(foreign[:5])}{more}, which is not part of a bundle"
    return None


def requested_spec(config: ExportConfig) -> NetSpec:
    """The registry's or the file's spec with the CLI's overrides, checked (no TensorFlow needed)."""
    spec = config.spec if config.spec is not None else zoo_spec(config.model)
    overrides = {k: v for k, v in (("num_classes", config.num_classes), ("output_stride", config.output_stride),
                                   ("global_pool", config.global_pool), ("depth_multiplier", config.depth_multiplier),
                                   ("image_size", tuple(config.image_size) if config.image_size else None))
                 if v is not None}
    try:
        return dataclasses.replace(spec, **overrides)
    except SpecError as e:  # every mistake the overrides make, one line each
        raise e.prefixed(f"--model {spec.name}" if config.spec is None else f"spec {spec.name}") from None


def resolve_spec(config: ExportConfig) -> tuple[NetSpec, Path | None]:
    """The spec to build and the checkpoint to load; --num-classes defaults from the checkpoint."""
    spec = requested_spec(config)
    checkpoint = config.checkpoint or (get_model_info(config.model).checkpoint if config.model else None)
    if config.checkpoint is not None and not Path(str(config.checkpoint) + ".index").exists() \
            and not Path(config.checkpoint).exists():
        raise UsageError(f"{config.checkpoint}: no such checkpoint (give the prefix, e.g. model.ckpt)")
    if config.num_classes is None and checkpoint is not None and spec.num_classes is not None:
        from .slim.checkpoint import checkpoint_num_classes

        stored = checkpoint_num_classes(checkpoint, spec.logits_scope)
        if stored is not None and stored != spec.num_classes:
            spec = dataclasses.replace(spec, num_classes=stored)
    return spec, checkpoint


def build_model(config: ExportConfig):
    """The TF model with weights: checkpoint, the registry's embedded one, or seeded random."""
    from .slim.checkpoint import load_slim_checkpoint, skipped_variables
    from .slim.net import SlimNet

    spec, checkpoint = resolve_spec(config)
    try:
        # Weights a checkpoint will overwrite start as zeros (the load assigns all or none).
        model = SlimNet(spec, seed=config.seed, random_init=checkpoint is None)
    except ValueError as e:  # shapes the spec checks cannot foresee
        raise UsageError(f"{spec.name}: {e}") from None
    if checkpoint is not None:
        skip = spec.family_module.skipped_variables
        load_slim_checkpoint(model.variables_by_name, checkpoint, spec.variable_scope, skip)
        weights = {"weights": "checkpoint", "checkpoint": str(checkpoint),
                   "trained_image_size": _trained_image_size(checkpoint)}
        skipped = skipped_variables(checkpoint, spec.variable_scope, skip)
        if skipped:  # Inception v3's training-only auxiliary head
            weights["skipped_variables"] = skipped
            log.info("note: %d checkpoint variables under %s/%s were not loaded: the training-only auxiliary "
                     "head, which %s does not build", len(skipped), spec.variable_scope, "|".join(skip), spec.name)
    else:
        log.warning("no checkpoint for %s: exporting SEEDED RANDOM weights (seed %d), not a trained model",
                    spec.name, config.seed)
        weights = {"weights": "random", "seed": config.seed,
                   "warning": "seeded random weights: NOT a trained model; pass --checkpoint"}
    return spec, model, weights


def _trained_image_size(checkpoint: Path) -> list[int] | None:
    """The size the package's embedded weights were trained at, whether --model or a --spec
    loads them; unknown (None) for a user's checkpoint."""
    path = Path(checkpoint).resolve()
    for info in REGISTRY.values():
        if info.checkpoint is not None and info.trained_image_size and info.checkpoint.resolve() == path:
            return list(info.trained_image_size)
    return None


def list_outputs(config: ExportConfig) -> str:
    """The `--list-outputs` text for the configured model (random weights: names and shapes only)."""
    from .slim.end_points import format_outputs, trace_outputs
    from .slim.net import SlimNet

    spec, _ = resolve_spec(config)
    model = SlimNet(spec, random_init=False)
    return format_outputs(model, trace_outputs(model, spec.image_size))


def reference_inputs(spec: NetSpec, config: ExportConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """NHWC samples for reference.npz: held-out digits for the default model, else seeded noise
    over the range the model's preprocessing produces."""
    from .data.preprocess import VGG_RGB_MEANS

    size = spec.image_size
    if spec.name == DEFAULT_MODEL and spec.preprocessing == "digits" and size == get_model_info(DEFAULT_MODEL).image_size:
        from .digits import load_digits_rgb, split
        from .train import scale_images

        images, labels = split(*load_digits_rgb(size[0]))["test"]
        return scale_images(images[: config.num_reference]), labels[: config.num_reference]
    rng = np.random.default_rng(config.seed)
    shape = (config.num_reference, *size, 3)
    if spec.preprocessing == "vgg":
        return (rng.uniform(0, 255, shape) - np.asarray(VGG_RGB_MEANS)).astype(np.float32), None
    return rng.uniform(-1, 1, shape).astype(np.float32), None


@contextlib.contextmanager
def _tf2onnx_lean():
    """tf2onnx's memory, kept near a few copies of the weights (vgg_16, 550 MB, peaked past 18 GB).

    - It rewrites every node's NodeProto after each of its ~24 optimizer passes (`del
      attribute[:]`, then `extend`). Under protobuf's upb runtime a removed sub-message stays in
      its parent's arena until the parent dies, so each pass leaked the weights once; each rewrite
      now gets a fresh NodeProto, which frees the old arena.
    - Before each pass it deep-copies the whole graph to restore it if the pass fails; the copies
      sit in reference cycles until the garbage collector happens by. TF2ONNX_CATCH_ERRORS=FALSE
      turns that off, so a failing pass raises instead of being skipped with a warning.
    The graph tf2onnx builds is the same.
    """
    from onnx import NodeProto
    from tf2onnx.graph import Node

    original = Node.update_proto

    def update_proto(self, external_tensor_storage=None):
        old = self._op
        self._op = NodeProto(**{f: getattr(old, f) for f in ("name", "op_type", "domain", "doc_string")
                                if old.HasField(f)})
        return original(self, external_tensor_storage)

    env_before = os.environ.get("TF2ONNX_CATCH_ERRORS")
    Node.update_proto = update_proto
    os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
    try:
        yield
    finally:
        Node.update_proto = original
        if env_before is None:
            os.environ.pop("TF2ONNX_CATCH_ERRORS", None)
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = env_before
        gc.collect()


def _rename_io(model_proto, mapping: dict[str, str]) -> None:
    for node in model_proto.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for vi in list(model_proto.graph.input) + list(model_proto.graph.output):
        vi.name = mapping.get(vi.name, vi.name)


def _order_outputs(model_proto, names: tuple[str, ...]) -> None:
    """Graph outputs in the order asked for (TF flattens the signature's dict by sorted key)."""
    by_name = {o.name: o for o in model_proto.graph.output}
    ordered = [by_name[n] for n in names]
    del model_proto.graph.output[:]
    model_proto.graph.output.extend(ordered)


def _set_batch_dim(model_proto, name: str = "batch") -> None:
    for vi in list(model_proto.graph.input) + list(model_proto.graph.output):
        dim0 = vi.type.tensor_type.shape.dim[0]
        dim0.ClearField("dim_value")
        dim0.dim_param = name


def export_parity(tf_out: dict[str, np.ndarray], ort_out: dict[str, np.ndarray]) -> dict[str, Any]:
    """TF vs ONNX Runtime for every output: max |diff| / max |TF value| <= EXPORT_TOLERANCE_SCALED;
    for `predictions` exported with its `logits`, only the error beyond what the logit error
    allows counts (deploy.parity.metrics: near-tied logits of random weights move probabilities
    by 1e-2 on a 1e-6 logit error, which must not fail one checkpoint and pass the next)."""
    metrics = {name: compare_outputs(ref, ort_out[name], name, logits_pair(name, tf_out, ort_out))
               for name, ref in tf_out.items()}

    def ok(m: OutputMetrics) -> bool:
        if m.nonfinite:
            return False
        scaled = m.judged("max_abs_scaled")
        return m.judged("max_abs") == 0 if scaled is None else scaled <= EXPORT_TOLERANCE_SCALED

    outputs = {name: m.to_json() for name, m in metrics.items()}
    return {"reference": "tf", "candidate": "onnxruntime-fp32", "outputs": outputs,
            "tolerance_max_abs_scaled": EXPORT_TOLERANCE_SCALED, "pass": all(ok(m) for m in metrics.values())}


def export(config: ExportConfig, out: str | Path, force: bool = False) -> Bundle:
    """Export `config.model` to the bundle directory `out` (a bundle there is replaced only with
    `force`, under its lock; anything else never). The new bundle is written beside `out` and
    renamed in when complete."""
    out = Path(out)
    check_out_dir(out, force)
    sweep_temps(out.parent)  # what an export killed earlier left beside it (ours, its process gone)
    tmp = temp_name(out)
    try:
        tmp.mkdir(parents=True)
        _write_bundle(config, tmp)
        replacing = (out / MANIFEST).is_file()
        with bundle_lock(out, exclusive=True, command="export --force") if replacing else contextlib.nullcontext():
            check_out_dir(out, force)  # again: another command may have written there meanwhile
            replace_dir(tmp, out)
    except OSError as e:
        raise write_error(out, e) from None
    finally:
        remove_path(tmp)
    return Bundle(out)


def _to_onnx(serve, signature, outputs: tuple[str, ...], config: ExportConfig, path: Path):
    """tf2onnx of `serve`: input `input` (NCHW unless --layout nhwc), outputs by their names in
    the order asked for, a dynamic batch everywhere; checked, then saved to `path`."""
    import onnx
    import tf2onnx

    with _tf2onnx_lean():
        proto, _ = tf2onnx.convert.from_function(
            serve, input_signature=signature, opset=config.opset,
            inputs_as_nchw=[f"{INPUT_NAME}:0"] if config.layout == "nchw" else None)
    structured = serve.get_concrete_function().structured_outputs
    _rename_io(proto, {f"{INPUT_NAME}:0": INPUT_NAME, **{structured[k].name: k for k in outputs}})
    _order_outputs(proto, outputs)
    _set_batch_dim(proto)
    proto.producer_name = "trtdeploy (tf2onnx)"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto


def _write_bundle(config: ExportConfig, tmp: Path) -> None:
    from .runners.ort import OrtRunner
    from .runners.tf import import_tf
    from .slim.end_points import output_tensors, select_outputs, trace_outputs

    tf = import_tf()  # TF32 off: the reference outputs are FP32
    log.info("[1/5] building %s", config.model or config.spec.name)
    spec, model, weights = build_model(config)
    size = spec.image_size
    outputs = select_outputs(config.outputs, trace_outputs(model, size), model)
    nchw = config.layout == "nchw"
    signature = [tf.TensorSpec([None, *size, 3], tf.float32, name=INPUT_NAME)]
    end_point_names: dict[str, str] = {}

    @tf.function(input_signature=signature)
    def serve(images):
        net, end_points = model(images)
        for key, tensor in end_points.items():
            end_point_names[key] = tensor.name
        chosen = output_tensors(net, end_points, spec.num_classes is not None)
        # Each output gets its own Identity: two names for one tensor (a block and its last
        # unit) stay two graph outputs.
        return {k: tf.identity(chosen[k], name=k.replace("/", "_")) for k in outputs}

    model.serve = serve
    log.info("[2/5] saving the SavedModel")
    tf.saved_model.save(model, str(tmp / "saved_model"), signatures={"serving_default": serve})

    log.info("[3/5] converting to ONNX with tf2onnx (opset %d, %s input)", config.opset, config.layout.upper())
    start = time.time()
    proto = _to_onnx(serve, signature, outputs, config, tmp / ONNX_FILES["fp32"])
    onnx_seconds = time.time() - start
    produced = {o for n in proto.graph.node for o in n.output}
    end_points = {k: v for k, v in end_point_names.items() if v in produced}

    log.info("[4/5] reference outputs from TensorFlow")
    x_nhwc, labels = reference_inputs(spec, config)
    served = serve(tf.constant(x_nhwc))
    tf_out = {k: served[k].numpy() for k in outputs}
    x_model = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)) if nchw else x_nhwc
    ref = {"input": x_model, **{f"output:{k}": tf_out[k] for k in outputs}}
    if labels is not None:
        ref["labels"] = labels
    np.savez(tmp / REFERENCE_NPZ, **ref)

    log.info("[5/5] TF vs ONNX Runtime parity")
    with OrtRunner(tmp / ONNX_FILES["fp32"], name="ort-fp32") as runner:
        ort_out = runner.infer({INPUT_NAME: x_model})
    parity = export_parity(tf_out, ort_out)

    layout = config.layout.upper()
    in_shape = (-1, 3, *size) if nchw else (-1, *size, 3)
    model_json: dict[str, Any] = {"name": spec.name, "family": spec.family, "num_classes": spec.num_classes,
                                  "image_size": list(size), "spec": spec.to_json(), **weights}
    if spec.family != "vgg":  # how the head was built, without reading the spec (VGG has neither)
        model_json.update(global_pool=spec.global_pool, output_stride=spec.output_stride)
    model_json["warnings"] = model_warnings(model_json)  # the CLI prints them; the manifest keeps them
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "model": model_json,
        "inputs": [TensorInfo(INPUT_NAME, in_shape, "float32", layout).to_json()],
        "outputs": [TensorInfo(k, (-1, *tf_out[k].shape[1:]), "float32").to_json() for k in outputs],
        "preprocessing": _preprocessing(spec, layout),
        "label_offset": spec.label_offset,
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
    (tmp / LOCK).touch()  # there from the start, so no later reader adds a file to the bundle


def _preprocessing(spec: NetSpec, layout: str) -> dict[str, Any]:
    from .data.preprocess import VGG_RESIZE_SIDE

    d = {"preset": spec.preprocessing, "height": spec.image_size[0], "width": spec.image_size[1], "layout": layout}
    if spec.preprocessing == "vgg" and max(spec.image_size) > VGG_RESIZE_SIDE:
        # tf-slim resizes the shorter side to 256 before a 224 crop; a larger crop needs a larger side.
        d["resize_side"] = max(spec.image_size)
    return d
