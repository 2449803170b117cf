"""Per-layer error: which slim layers of the FP16/INT8 model add the most error against FP32,
and the calibrate command line that keeps them in high precision.

Both ONNX files come from the same tf2onnx graph and keep its tensor names, so the manifest's
`end_points` map (slim name -> ONNX tensor) finds the same tensor in each. The tensors are
exposed as extra graph outputs in memory and run with ONNX Runtime on the same inputs.
Needs only numpy at import.
"""
from __future__ import annotations

import json
import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..bundle import DATASET_JSON, ONNX_FILES, PRECISIONS, Bundle
from ..int8 import QDQ_OP_TYPES
from ..errors import DataError, DeployError, UsageError
from ..runners import BACKENDS, backend_precision
from .metrics import cosine_rows

log = logging.getLogger("trtdeploy.parity")

# Units (ResNet v1 and v2), the root conv, VGG's convs and fc layers, and the logits: the
# granularity at which calibration keeps layers in high precision. The convs inside a unit
# are reported through their unit.
_LAYER = re.compile(r"(/conv1|/bottleneck_v[12]|/logits|/conv\d+/conv\d+_\d+|/fc\d+)$")
_INSIDE_UNIT = re.compile(r"/bottleneck_v[12]/")
# MobileNet and Inception end points are slim's unscoped names: MobileNet v1's
# Conv2d_N_depthwise and Conv2d_N_pointwise, MobileNet v2's ops by scope (Conv, expanded_conv_N,
# Conv_1; not their layer_N aliases), Inception's stem convs and Mixed_* blocks (a block's
# branches are kept together), and the head (`Logits/Conv2d_1c_1x1`, the logits before the
# squeeze, stands for the `Logits/` scope: its pool and its conv). Other pools, the pooled features
# and the softmax are not layers to keep.
_UNSCOPED_LAYER = re.compile(r"^(Conv2d_\w+|Conv(_\d+)?|expanded_conv(_\d+)?|Mixed_\w+|Logits/Conv2d_\w+)$")


@dataclass(frozen=True)
class LayerError:
    """One intermediate tensor of a reduced-precision run against FP32: `rel_error` =
    ||a - b|| / ||a|| (Frobenius over the whole tensor; ||a - b|| when a is all zeros), `cosine`
    of the flattened tensors, `max_abs` of the difference (None: not measured)."""

    rel_error: float
    cosine: float | None = None
    max_abs: float | None = None

    def to_json(self) -> dict[str, float]:
        out = {"rel_error": self.rel_error}
        for key, value in (("cosine", self.cosine), ("max_abs", self.max_abs)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class RankedLayer:
    """A layer (index in network order) and its error growth over the layer before it."""

    name: str
    index: int
    rel_error: float
    growth: float
    cosine: float | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "index": self.index, "rel_error": self.rel_error, "growth": self.growth,
                "cosine": self.cosine}


@dataclass(frozen=True)
class LayerSection:
    """Per-layer errors of one backend or precision, the layers to keep in high precision
    first, and (INT8, with ONNX node names) their nodes and the calibrate command."""

    precision: str
    layers: dict[str, LayerError]  # network order
    ranking: tuple[RankedLayer, ...]
    keep_high_precision: tuple[str, ...]
    exclude_nodes: dict[str, list[str]] | None = None  # kept layer -> its ONNX nodes
    unmapped: tuple[str, ...] = ()  # kept layers without a node named under their scope
    command: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"precision": self.precision,
                "layers": [{"name": n, **e.to_json()} for n, e in self.layers.items()],
                "ranking": [r.to_json() for r in self.ranking],
                "keep_high_precision": list(self.keep_high_precision),
                "exclude_nodes": None if self.exclude_nodes is None else {k: list(v) for k, v in
                                                                          self.exclude_nodes.items()},
                "unmapped": list(self.unmapped), "command": self.command}


def compare_intermediates(fp32_values: Mapping[str, np.ndarray], other_values: Mapping[str, np.ndarray],
                          order: Sequence[str]) -> dict[str, LayerError]:
    """Error of each intermediate tensor (network order) of a reduced-precision run against FP32.

    Returns {name: LayerError} in `order`. Raises DataError at the first layer whose
    reduced-precision values are not finite.
    """
    missing = [n for n in order if n not in fp32_values or n not in other_values]
    if missing:
        raise DataError(f"per-layer comparison: no values for {missing[:3]}{' ...' if len(missing) > 3 else ''}; "
                        "both runs must expose every end_point in `order`")
    out: dict[str, LayerError] = {}
    for name in order:
        a = np.asarray(fp32_values[name], dtype=np.float64).reshape(-1)
        b = np.asarray(other_values[name], dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            raise DataError(f"per-layer comparison: {name!r} has {a.size} values in FP32 and {b.size} in the other run")
        if not np.isfinite(b).all():
            raise DataError(f"per-layer comparison: {name!r} has NaN/inf in the reduced-precision run (overflow); "
                            "it is the first layer to keep in high precision")
        d = np.linalg.norm(a - b)
        na = np.linalg.norm(a)
        # An all-zero FP32 tensor has no scale to divide by: its error is then the plain norm.
        rel = d / na if na > 0 else d
        cos = float(cosine_rows(a[None, :], b[None, :])[0])
        out[name] = LayerError(float(rel), cos, float(np.abs(a - b).max()) if a.size else 0.0)
    return out


def rank_layers(per_layer: Mapping[str, LayerError]) -> list[RankedLayer]:
    """Rank layers (given in network order) by error growth: rel_error minus the previous
    layer's rel_error (the first layer's growth is its own error). Largest growth first; those
    layers introduce the error rather than inherit it, so they are the ones to keep in high
    precision."""
    rows = []
    previous = 0.0
    for index, (name, err) in enumerate(per_layer.items()):
        rel = float(err.rel_error)
        rows.append(RankedLayer(name, index, rel, rel - previous, err.cosine))
        previous = rel
    return sorted(rows, key=lambda r: (-r.growth, r.index))


def keep_in_high_precision(ranked: Sequence[RankedLayer], count: int = 3) -> list[str]:
    """The first `count` layers of a ranking whose error growth is positive."""
    return [r.name for r in ranked if r.growth > 0][:count]


def layer_nodes(layer: str, onnx_nodes: Sequence[tuple[str, str]]) -> list[str]:
    """ONNX nodes (name, op_type) of a slim layer that calibration can keep in float.

    tf2onnx keeps TF op names, so a layer's nodes are named under its scope
    (`resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/Conv2D`); an unscoped MobileNet or
    Inception end point (`Mixed_5b`) under the model's scope (`InceptionV3/Mixed_5b/Branch_0/...`).
    Nodes tf2onnx renamed (`Conv__187`) cannot be found this way and leave the layer unmapped.
    """
    unscoped = bool(_UNSCOPED_LAYER.match(layer))
    prefix = "Logits/" if unscoped and layer.startswith("Logits/") else layer.rstrip("/") + "/"
    return [name for name, op in onnx_nodes if op in QDQ_OP_TYPES
            and (name.partition("/")[2] if unscoped else name).startswith(prefix)]


def keep_fp32_command(bundle_root: str | Path, nodes: Sequence[str], data: str | Path | None = None) -> str:
    """`trtdeploy calibrate BUNDLE --data DATA --keep-fp32 NODE ...` (one --keep-fp32, its nargs="+")."""
    parts = ["trtdeploy", "calibrate", str(bundle_root), "--data", str(data) if data else "DATA",
             "--keep-fp32", *nodes]
    return " ".join(shlex.quote(p) for p in parts)


def _section(precision: str, layers: Mapping[str, LayerError], bundle_root: str | Path, keep: int,
             onnx_nodes: Sequence[tuple[str, str]] | None, calibration_data: str | Path | None) -> LayerSection:
    ranked = rank_layers(layers)
    kept = keep_in_high_precision(ranked, keep)
    section = LayerSection(precision, dict(layers), tuple(ranked), tuple(kept))
    # INT8 layers are chosen at calibration; FP16 has no such step to point at.
    if precision != "int8" or not kept or onnx_nodes is None:
        return section
    mapped = {layer: layer_nodes(layer, onnx_nodes) for layer in kept}
    nodes = [n for layer in kept for n in mapped[layer]]
    return LayerSection(precision, dict(layers), tuple(ranked), tuple(kept), exclude_nodes=mapped,
                        unmapped=tuple(layer for layer in kept if not mapped[layer]),
                        command=keep_fp32_command(bundle_root, nodes, calibration_data) if nodes else None)


def per_layer_section(per_layer: Mapping[str, Mapping[str, LayerError]], bundle_root: str | Path,
                      keep: int = 3, onnx_nodes: Sequence[tuple[str, str]] | None = None,
                      calibration_data: str | Path | None = None) -> dict[str, LayerSection]:
    """The result's per-layer part from {backend or precision: compare_intermediates(...)}.

    With `onnx_nodes` ((name, op_type) of the FP32 ONNX) the kept INT8 layers are mapped to
    ONNX node names, and the calibrate command line that keeps them in float is given.
    """
    section: dict[str, LayerSection] = {}
    for key, layers in per_layer.items():
        precision = key if key in PRECISIONS else backend_precision(key) if key in BACKENDS else None
        if precision is None:
            raise UsageError(f"per-layer data for {key!r}: name a backend or precision")
        section[key] = _section(precision, layers, bundle_root, keep, onnx_nodes, calibration_data)
    return section


def onnx_nodes(bundle: Bundle) -> list[tuple[str, str]] | None:
    """(name, op_type) of the FP32 ONNX's nodes, or None without onnx or model.onnx here."""
    try:
        import onnx

        model = onnx.load(str(bundle.onnx_path("fp32")), load_external_data=False)
    except (ImportError, DeployError, OSError) as e:
        log.info("per-layer: no ONNX node names (%s); the calibrate command is left out", e)
        return None
    return [(n.name, n.op_type) for n in model.graph.node]


def calibration_source(bundle: Bundle) -> str | None:
    """The input data the bundle was calibrated from (calibration/dataset.json), if recorded."""
    if not bundle.has(DATASET_JSON):
        return None
    try:
        return json.loads(bundle.file(DATASET_JSON).read_text()).get("source")
    except (OSError, ValueError, AttributeError):
        return None


# --- running the ONNX models --------------------------------------------------------------


def layer_names(bundle: Bundle) -> list[str]:
    """Slim end_points worth a row, in network order, one per distinct tensor."""
    seen: set[str] = set()
    names = []
    for key, tensor in bundle.end_points.items():
        if tensor in seen or not (_LAYER.search(key) and not _INSIDE_UNIT.search(key) or _UNSCOPED_LAYER.match(key)):
            continue
        seen.add(tensor)
        names.append(key)
    return names


def intermediate_values(bundle: Bundle, precision: str, feeds: Iterable[Mapping[str, np.ndarray]],
                        names: list[str]) -> dict[str, np.ndarray]:
    """Run one precision's ONNX and collect the named end_points over all feeds (float32)."""
    return model_intermediates(bundle.onnx_path(precision), bundle.end_points, feeds, names)


def model_intermediates(model: Any, end_points: Mapping[str, str], feeds: Iterable[Mapping[str, np.ndarray]],
                        names: list[str]) -> dict[str, np.ndarray]:
    """`intermediate_values` of an ONNX model given as a path, bytes or a ModelProto (a model
    not written yet, such as a candidate INT8 model of `calibrate --max-drop`)."""
    from ..onnx_graph import with_outputs
    from ..runners.ort import make_session

    tensors = [end_points[n] for n in names]
    session = make_session(with_outputs(model, tensors))
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for name, value in zip(names, session.run(tensors, dict(feed))):
            chunks[name].append(np.asarray(value, dtype=np.float32))
    return {n: np.concatenate(v) for n, v in chunks.items()}


def per_layer_errors(bundle: Bundle, feeds: list[Mapping[str, np.ndarray]],
                     precisions: Iterable[str] = ("fp16", "int8")) -> dict[str, dict[str, LayerError]]:
    """{precision: {slim layer: LayerError}} for each reduced precision whose ONNX is present."""
    names = layer_names(bundle)
    if not names:
        log.info("per-layer: the manifest has no end_points; skipped")
        return {}
    present = [p for p in precisions if bundle.path(ONNX_FILES[p]).is_file()]
    if not present:
        return {}
    fp32 = intermediate_values(bundle, "fp32", feeds, names)
    return {p: compare_intermediates(fp32, intermediate_values(bundle, p, feeds, names), names) for p in present}
