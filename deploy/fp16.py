"""FP16 conversion: `model.onnx` -> `model.fp16.onnx`, FP16 inside, FP32 at the inputs and outputs.

TensorRT 11 (and a strongly typed TensorRT 10 network) runs each layer in the type its ONNX
tensors have, so precision lives in the file. Most layers go to FP16; these stay FP32:

- Softmax: the probabilities of a 1001-way softmax reach 1e-8 and below, which FP16 flushes
  to subnormals or zero; the layer is one vector per image, so FP32 costs nothing and keeps
  `predictions` comparable with TensorFlow.
- Reductions (GlobalAveragePool, ReduceMean, ReduceSum, ReduceL2, ReduceSumSquare): the
  running sum of a 7x7 (or larger) window can exceed FP16's range when the mean does not,
  and ONNX Runtime's CPU kernels may accumulate in the input type. One Cast before the pool
  is cheap next to a wrong logit.
- Nodes whose values would leave FP16's range: any tensor whose observed max |x| exceeds
  OVERFLOW_LIMIT = 65504 / 2 (half of FP16's largest finite value: inputs beyond the
  measured sample reach past the observed max), both the node that produces it and the
  nodes that read it (a Cast to FP16 on the way in would overflow just the same); and nodes
  with a weight beyond 65504. Ranges come from the ONNX Runtime max pass over the bundle's
  reference inputs (every tensor) and, when calibration ran, the true maxima over the
  calibration set from `calibration/scales.json`.
- Nodes the user names (`keep_fp32`).

Why not onnxconverter-common's `convert_float_to_float16`: with 1.16.0 (checked with
onnx 1.23.2 / protobuf 7), `keep_io_types=True` plus a blocked node that feeds a graph
output (Softmax -> `predictions`) declares that output float16, and `min_positive_val`
raises tiny weights to 1e-7 instead of rounding them. This converter is small and keeps
every original tensor name (casts get derived names), so per-layer comparison by name works.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .bundle import ONNX_FILES, REFERENCE_NPZ, SCALES_JSON, Bundle, BundleUpdate
from .errors import BundleError, UsageError

log = logging.getLogger("trtdeploy.fp16")

FP16_MAX = 65504.0
OVERFLOW_LIMIT = FP16_MAX / 2
SENSITIVE_OPS = {
    "Softmax": "softmax: small probabilities underflow in FP16",
    "LogSoftmax": "softmax: small probabilities underflow in FP16",
    "GlobalAveragePool": "reduction: the sum can overflow FP16",
    "ReduceMean": "reduction: the sum can overflow FP16",
    "ReduceSum": "reduction: the sum can overflow FP16",
    "ReduceSumSquare": "reduction: the sum can overflow FP16",
    "ReduceL2": "reduction: the sum can overflow FP16",
}


@dataclass(frozen=True)
class Fp16Plan:
    """Nodes kept in FP32 (name -> reason), and the tensor ranges the decision used."""

    kept_fp32: dict[str, str]
    ranges: dict[str, float]


def tensor_ranges(model, feeds: Iterable[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """max |x| of every float tensor the graph computes, over `feeds` (ONNX Runtime, FP32)."""
    import onnx
    from onnx import TensorProto

    from .onnx_graph import with_outputs
    from .runners.ort import make_session

    inferred = onnx.shape_inference.infer_shapes(model)
    float_types = {v.name for v in (*inferred.graph.value_info, *inferred.graph.output)
                   if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    names = [t for n in model.graph.node for t in n.output if t in float_types]
    session = make_session(with_outputs(model, names))
    ranges = dict.fromkeys(names, 0.0)
    for feed in feeds:
        # One sample at a time: all activations of a big ResNet at once would not fit.
        n = len(next(iter(feed.values())))
        for i in range(n):
            values = session.run(names, {k: v[i:i + 1] for k, v in feed.items()})
            for t, v in zip(names, values):
                if v.size:
                    ranges[t] = max(ranges[t], float(np.max(np.abs(v))))
    return ranges


def plan_fp16(model, ranges: Mapping[str, float], keep_fp32: Sequence[str] = ()) -> Fp16Plan:
    """Decide which nodes stay FP32 (see the module docstring)."""
    from onnx import numpy_helper

    names = [n.name for n in model.graph.node]
    unknown = [k for k in keep_fp32 if k not in set(names)]
    if unknown:
        raise UsageError(f"--keep-fp32: no node named {', '.join(repr(u) for u in unknown)}; "
                         f"valid names look like: {', '.join(names[:4])}")
    kept: dict[str, str] = {k: "requested (--keep-fp32)" for k in keep_fp32}
    big_weights = {t.name for t in model.graph.initializer
                   if t.data_type == 1 and np.any(np.abs(numpy_helper.to_array(t)) > FP16_MAX)}
    overflow = {t for t, r in ranges.items() if r > OVERFLOW_LIMIT}
    for node in model.graph.node:
        if node.name in kept:
            continue
        if node.op_type in SENSITIVE_OPS:
            kept[node.name] = SENSITIVE_OPS[node.op_type]
        elif over := [t for t in node.output if t in overflow]:
            kept[node.name] = f"output {over[0]!r} reaches {ranges[over[0]]:.4g} > {OVERFLOW_LIMIT:g}"
        elif over := [t for t in node.input if t in overflow]:
            kept[node.name] = f"input {over[0]!r} reaches {ranges[over[0]]:.4g} > {OVERFLOW_LIMIT:g}"
        elif big := [t for t in node.input if t in big_weights]:
            kept[node.name] = f"weight {big[0]!r} exceeds the FP16 range"
    return Fp16Plan(kept_fp32=kept, ranges=dict(ranges))


def to_fp16(model, kept_fp32: Iterable[str]):
    """A copy of `model` with float tensors in FP16 except around `kept_fp32` nodes.

    Graph inputs and outputs stay float32 under their names; Cast nodes named
    `<tensor>_to_fp16` / `<tensor>_to_fp32` bridge precisions. Initializers read only by FP16
    nodes are converted in place (IEEE round to nearest, subnormals kept).
    """
    import onnx

    kept = set(kept_fp32)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    is_float = _float_tensors(model)
    casts = _Casts(_homes(graph, kept, is_float), {o.name for o in graph.output})
    for node in graph.node:
        prec = "fp32" if node.name in kept else "fp16"
        for k, t in enumerate(node.input):
            if t in is_float:
                node.input[k] = casts.get(t, prec)
        if prec == "fp16":
            _retype_attributes(node)
        casts.nodes.append(node)
    # Graph outputs produced in FP16 need their float32 Cast under the original name.
    for o in graph.output:
        if o.name in is_float:
            casts.get(o.name, "fp32")
    # The source graph is sorted (ONNX requires it) and each Cast goes right before the first
    # node that reads it, after its producer, so the new list is sorted too; check_model
    # below would refuse it otherwise.
    del graph.node[:]
    graph.node.extend(casts.nodes)
    # Old value_info carries float32 types for tensors that are now FP16: recompute.
    del graph.value_info[:]
    out = onnx.shape_inference.infer_shapes(out, strict_mode=True)
    onnx.checker.check_model(out)
    return out


def _float_tensors(model) -> set[str]:
    """Names of the float32 tensors of `model`: activations (by shape inference), inputs,
    outputs and initializers."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model).graph
    elem = {v.name: v.type.tensor_type.elem_type
            for v in (*inferred.value_info, *inferred.input, *inferred.output)}
    for t in model.graph.initializer:
        elem[t.name] = t.data_type
    return {t for t, e in elem.items() if e == TensorProto.FLOAT}


def _homes(graph, kept: set[str], is_float: set[str]) -> dict[tuple[str, str], str]:
    """Where each float tensor lives before any Cast: (tensor, "fp16"|"fp32") -> the name that
    holds it in that precision. Initializers read only by FP16 nodes become FP16 here; an FP16
    node's graph output is renamed `<output>_fp16` (the float32 output keeps the name)."""
    from onnx import numpy_helper

    consumers: dict[str, list] = {}
    for node in graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    home: dict[tuple[str, str], str] = {}
    for i in graph.input:
        if i.name in is_float:
            home[(i.name, "fp32")] = i.name
    for init in graph.initializer:
        if init.name not in is_float:
            continue
        if all(c.name not in kept for c in consumers.get(init.name, [])):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
            home[(init.name, "fp16")] = init.name
        else:
            home[(init.name, "fp32")] = init.name
    graph_outputs = {o.name for o in graph.output}
    for node in graph.node:
        prec = "fp32" if node.name in kept else "fp16"
        for k, t in enumerate(node.output):
            if t not in is_float:
                continue
            if prec == "fp16" and t in graph_outputs:
                node.output[k] = f"{t}_fp16"
                home[(t, "fp16")] = node.output[k]
            else:
                home[(t, prec)] = t
    return home


class _Casts:
    """The new node list, with a Cast added the first time a tensor is needed in the other
    precision than the one it lives in."""

    def __init__(self, home: dict[tuple[str, str], str], graph_outputs: set[str]):
        self.home = home
        self.graph_outputs = graph_outputs
        self.nodes: list = []

    def get(self, tensor: str, prec: str) -> str:
        """The name holding `tensor` in `prec`, adding its Cast when there is none yet."""
        from onnx import TensorProto, helper

        if (tensor, prec) in self.home:
            return self.home[(tensor, prec)]
        src = self.home[(tensor, "fp32" if prec == "fp16" else "fp16")]
        # A graph output keeps its own name for its float32 value.
        name = tensor if (prec == "fp32" and tensor in self.graph_outputs) else f"{tensor}_{prec}"
        to = TensorProto.FLOAT16 if prec == "fp16" else TensorProto.FLOAT
        self.nodes.append(helper.make_node("Cast", [src], [name], name=f"{tensor}_to_{prec}", to=to))
        self.home[(tensor, prec)] = name
        return name


def _retype_attributes(node) -> None:
    """Float32 constants and casts inside an FP16 region become FP16."""
    from onnx import TensorProto, numpy_helper

    for a in node.attribute:
        if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
            a.i = TensorProto.FLOAT16
        elif a.type == a.TENSOR and a.t.data_type == TensorProto.FLOAT:
            a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))


def _reference_feeds(bundle: Bundle) -> list[dict[str, np.ndarray]]:
    from .bundle.reference import load_reference_npz

    # FP16 range checks run on the reference inputs (checked against the manifest there).
    return [{bundle.inputs[0].name: np.ascontiguousarray(load_reference_npz(bundle)["input"], dtype=np.float32)}]


def _calibrated_maxima(bundle: Bundle) -> dict[str, float]:
    if not bundle.path(SCALES_JSON).exists():
        return {}
    path = bundle.file(SCALES_JSON)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        maxima = {k: float(v) for k, v in data.get("max", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise BundleError(f"{path}: unreadable ({e}); write it again with "
                          f"`trtdeploy calibrate {bundle.root} --data DATA --recalibrate`") from None
    if data.get("model_sha256") != bundle.file_hash(ONNX_FILES["fp32"]):
        log.info("%s is for another model.onnx; FP16 ranges from the reference inputs only", path)
        return {}
    return maxima


def convert_fp16(bundle: Bundle, keep_fp32: Sequence[str] = ()) -> Path:
    """Write `model.fp16.onnx` for `bundle`, check it runs in ONNX Runtime, record it in the
    manifest (one update, under the bundle's lock)."""
    with bundle.update("fp16") as up:
        return _convert(up, keep_fp32)


def _convert(up: BundleUpdate, keep_fp32: Sequence[str]) -> Path:
    from .onnx_graph import load_model
    from .runners.ort import make_session

    bundle = up.bundle
    model = load_model(bundle.onnx_path("fp32"), ONNX_FILES["fp32"], bundle.root)
    ranges = tensor_ranges(model, _reference_feeds(bundle))
    calibrated = _calibrated_maxima(bundle)
    for t, m in calibrated.items():
        ranges[t] = max(ranges.get(t, 0.0), m)
    plan = plan_fp16(model, ranges, keep_fp32)
    fp16 = to_fp16(model, plan.kept_fp32)
    data = fp16.SerializeToString()
    make_session(data)  # refuse to write a file ONNX Runtime cannot load
    up.write_bytes(ONNX_FILES["fp16"], data)
    out = bundle.path(ONNX_FILES["fp16"])
    bundle.manifest.setdefault("precision", {})["fp16"] = {
        "onnx": ONNX_FILES["fp16"],
        "kept_fp32": list(plan.kept_fp32),
        "kept_fp32_reasons": plan.kept_fp32,
        "overflow_limit": OVERFLOW_LIMIT,
        "ranges_from": [REFERENCE_NPZ] + ([SCALES_JSON] if calibrated else []),
        "num_casts": sum(1 for n in fp16.graph.node if n.op_type == "Cast") - sum(
            1 for n in model.graph.node if n.op_type == "Cast"),
    }
    up.commit()
    log.debug("wrote %s (%d nodes kept FP32)", out, len(plan.kept_fp32))  # callers say what they did
    return out
