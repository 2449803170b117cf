"""Per-layer error analysis: the slim end_points of the FP32 ONNX against the FP16/INT8 ONNX.

Both files come from the same tf2onnx graph and keep its tensor names, so the manifest's
`end_points` map (slim name -> ONNX tensor) finds the same tensor in each. The tensors are
exposed as extra graph outputs in memory and run with ONNX Runtime on the same inputs.
"""
from __future__ import annotations

import logging
import re
from typing import Iterable, Mapping

import numpy as np

from .bundle import Bundle
from .parity import compare_intermediates

log = logging.getLogger("trtdeploy.per_layer")

# Units and the root conv: the granularity at which `calibrate --exclude` keeps layers in
# high precision. The convs inside a unit are reported through their unit.
_LAYER = re.compile(r"(/conv1|/bottleneck_v2|/logits)$")


def layer_names(bundle: Bundle) -> list[str]:
    """Slim end_points worth a row, in network order, one per distinct tensor."""
    seen: set[str] = set()
    names = []
    for key, tensor in bundle.manifest.get("end_points", {}).items():
        if tensor in seen or not _LAYER.search(key) or "/bottleneck_v2/" in key:
            continue
        seen.add(tensor)
        names.append(key)
    return names


def _with_outputs(model_source, tensors: list[str]) -> bytes:
    import onnx

    model = onnx.load_from_string(model_source) if isinstance(model_source, bytes) else onnx.load(str(model_source))
    have = {o.name for o in model.graph.output}
    for t in tensors:
        if t not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    return model.SerializeToString()


def intermediate_values(bundle: Bundle, precision: str, feeds: Iterable[Mapping[str, np.ndarray]],
                        names: list[str]) -> dict[str, np.ndarray]:
    """Run one precision's ONNX and collect the named end_points over all feeds (float32)."""
    return model_intermediates(bundle.onnx_path(precision), bundle.manifest["end_points"], feeds, names)


def model_intermediates(model, end_points: Mapping[str, str], feeds: Iterable[Mapping[str, np.ndarray]],
                        names: list[str]) -> dict[str, np.ndarray]:
    """`intermediate_values` of an ONNX model given as a path or bytes (a model not yet written,
    such as a candidate INT8 model during calibration)."""
    from .runners.ort import make_session

    tensors = [end_points[n] for n in names]
    session = make_session(_with_outputs(model, tensors))
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for name, value in zip(names, session.run(tensors, dict(feed))):
            chunks[name].append(np.asarray(value, dtype=np.float32))
    return {n: np.concatenate(v) for n, v in chunks.items()}


def per_layer_errors(bundle: Bundle, feeds: list[Mapping[str, np.ndarray]],
                     precisions: Iterable[str] = ("fp16", "int8")) -> dict[str, dict[str, dict[str, float]]]:
    """{precision: {slim layer: {rel_error, cosine, max_abs}}} for each reduced precision present."""
    names = layer_names(bundle)
    if not names:
        log.info("per-layer: the manifest has no end_points; skipped")
        return {}
    present = [p for p in precisions if bundle.path({"fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}[p]).is_file()]
    if not present:
        return {}
    fp32 = intermediate_values(bundle, "fp32", feeds, names)
    return {p: compare_intermediates(fp32, intermediate_values(bundle, p, feeds, names), names) for p in present}
