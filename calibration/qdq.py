"""Explicit quantization: where QuantizeLinear/DequantizeLinear pairs go, and putting them there.

TensorRT builds an INT8 engine from Q/DQ ONNX by *fusing* the Q/DQ pairs into the layers
around them; where they sit decides which kernels run in INT8. The rules below follow
TensorRT's "Q/DQ layer-placement recommendations" (Developer Guide, "Working with
Quantized Types") and NVIDIA's ResNet recipes, applied to TF-slim's ResNet v2 as tf2onnx
exports it:

    input ─► Conv(root conv1) ─► MaxPool(pool1) ─┬─► BN(preact) ─► Relu ─┬─► Conv(conv1)…Conv(conv3) ─┐
                                                 │                       └─► Conv(shortcut, projection)│
                                                 └──── shortcut: identity or MaxPool(subsample) ─────► Add
    … last Add ─► BN(postnorm) ─► Relu ─► GlobalAveragePool ─► Reshape ─► Conv(logits) ─► Squeeze ─► Softmax

Symmetric int8, zero point 0 (TensorRT rejects others), activations per tensor; Conv weights
per output channel (axis 0) with scale = max|w| / 127 computed from the weights themselves.
Biases stay float (TensorRT folds them into the fused kernel in its own precision; an int32
bias DQ like ONNX Runtime's `QuantizeBias=True` makes is something TensorRT rejects).

Which activation edges (tensor -> consumer input) carry Q/DQ, and why:

1. Every Conv's activation input (and its weight). TensorRT runs a convolution in INT8 only
   when both its inputs come through DQ. This includes the root conv1 (on the graph input)
   and the logits Conv, whose input is the Reshape of the global average pool: TensorRT
   moves a Q backward over a Reshape (a shuffle commutes with quantization), so the 1x1
   logits convolution runs in INT8 on the pooled features.
2. The residual Add's shortcut input: the one that does not come from the main branch's
   last Conv (identity shortcut: the previous Add output or pool1; subsample shortcut: the
   MaxPool output; projection shortcut: the `shortcut` Conv's output). TensorRT fuses Conv
   (+bias) + Add (+ReLU) into one kernel whose second operand is read in the precision the
   Add gets it in: with Q/DQ on it, the fused kernel reads it as INT8, and its output can
   take the next Q (rule 3) and be written in INT8.
   NEVER on the Conv output that fuses with the Add: a DQ there stops the Conv+Add fusion
   (TensorRT would have to write the conv output, requantize it, and run a separate
   elementwise layer). When both Add inputs are Conv outputs (the projection shortcut of a
   block's first unit), the shortcut Conv's output gets the pair, as in NVIDIA's ResNet Q/DQ
   recipe (the downsample branch's output is quantized, the main branch's conv3 fuses with
   the Add): it writes INT8 through the Q fused into it, and the fused conv3+Add reads it as
   INT8. Left in float it would make the fused output float, so the next Q could not fuse
   (four extra layers in resnet_v2_50). The shortcut Conv is told apart from the graph, not
   from names: it reads a tensor upstream of the other Conv's input (slim's `shortcut`
   reads the pre-activation that conv1 -> conv2 -> conv3 also start from). An Add of two
   Convs neither of which is upstream of the other gets no pair (there is no shortcut).
3. The input of a pre-activation BatchNormalization that no Conv precedes (its input is a
   residual Add output or pool1; the final `postnorm` BN is the same case). Such a tensor
   also feeds the next unit's shortcut, which rule 2 quantizes. One Q/DQ pair on the tensor
   serves every consumer, so *all* of the Add's consumers read the same INT8 values; only
   then can TensorRT fuse that Q into the producing Conv+Add kernel and write INT8 (half
   the memory traffic of FP16 on the widest tensors of the network), and run BN (a scale
   layer) + ReLU on INT8 input. A BN fed by a Conv gets nothing: TensorRT folds
   Conv+BN+ReLU, and Q/DQ between them would break that fold.
4. The input of the shortcut MaxPool (slim's `subsample`: a MaxPool whose output feeds a
   residual Add). Max-pooling commutes with quantization, so TensorRT runs it in INT8
   between the Q/DQ on its input (the same pair as rule 3's, on the previous Add output)
   and the pair rule 2 puts on its output. pool1 (fed by the root Conv, feeding BN and Add)
   needs no pair of its own: TensorRT propagates the Q on its output backward over the
   MaxPool into the root Conv's output.

The edge zoo's layers (MobileNet v1/v2, Inception), as tf2onnx exports them (BatchNorm after
a conv folded into the Conv, ReLU6 as Clip(0, 6)):

5. Depthwise convolutions (a Conv with `group` = channels, weight [channels, 1, kh, kw]) are
   Convs: rule 1 quantizes the activation input per tensor and the weight per output channel
   (axis 0, one scale per channel). Conv -> Clip(0, 6) fuses like Conv -> Relu: no pair between.
6. MobileNet v2's residual Add (`expanded_conv_N/add`) is rule 2's: the project Conv fuses with
   the Add, the block input (the previous Add, or the previous block's project Conv, told apart
   as the shortcut by rule 2's upstream test) is quantized, with the pair that already serves
   the next block's expand Conv.
7. Concat (Inception's mixed blocks): no pair on its inputs; all of them share the scale of the
   pair on the Concat's output (rule 1's, for the Convs of the next block). TensorRT moves that
   Q backward over the Concat into each branch's last Conv, which then writes INT8 in the
   Concat's scale: one rounding per value, no requantize. A pair of its own on each input
   (TensorRT-Model-Optimizer's default without `concat_elimination`) rounds every value twice
   (its own scale, then the output's) and makes TensorRT requantize each branch: measured on
   inception_v1 it was no closer to FP32 (README "INT8 on MobileNet and Inception": the numbers
   and the command).
   A mixed block kept in high precision (`--keep-fp32` of its Convs and pools, as the per-layer
   ranking maps `Mixed_5b`) runs its branches in float and its Concat output is quantized by
   the next block's Convs as before.
8. AveragePool (slim's avg_pool2d: Inception's branch pools, MobileNet's head): its input is
   quantized. TensorRT runs DQ -> AveragePool -> Q as one INT8 pooling layer; the Q after it is
   the consumer Conv's (the logits Conv, or the branch's 1x1 Conv).
9. A MaxPool whose input is quantized for another consumer (Inception's branch pools read the
   block input the branch Convs read) takes the same DQ: max-pooling commutes with quantization,
   so it runs in INT8 at no extra rounding.

Left in float on purpose: the GlobalAveragePool input (ResNet's and `global_pool`'s mean: the
pooled 1x1 tensor is tiny, so an INT8 mean buys nothing and adds a rounding step before the
logits), the Reshape/Squeeze, the Softmax (an exponential of logits needs range that int8 does
not have), every bias, and a Concat's inputs (rule 7).

`keep_fp32` (`trtdeploy calibrate --keep-fp32`) keeps named nodes in high precision: none of
their inputs or weights get Q/DQ; their neighbours keep theirs.

All original tensor names are kept (a Q/DQ pair is inserted on the consumer side of a
tensor and its nodes/tensors are named after the tensor), so INT8-vs-FP32 per-layer
comparisons by name still work, and the names match what TensorRT's ONNX parser calls them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from deploy.errors import CalibrationError, UsageError
from deploy.int8 import INT8_MAX, QDQ_OP_TYPES

log = logging.getLogger("trtdeploy.calibration")

MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear

# Reasons recorded in the plan (one tensor may have several).
CONV_INPUT = "conv input"
RESIDUAL_INPUT = "residual add input"
PREACT_BN_INPUT = "pre-activation batchnorm input"
SHORTCUT_POOL_INPUT = "shortcut maxpool input"
AVERAGE_POOL_INPUT = "average pool input"
QUANTIZED_POOL_INPUT = "maxpool input quantized for another consumer"


@dataclass(frozen=True)
class ActivationQdq:
    """One activation tensor that gets a Q/DQ pair, and the node inputs that read the DQ output."""

    tensor: str
    consumers: tuple[tuple[str, int], ...]  # (node name, input index)
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class WeightQdq:
    """A Conv weight initializer quantized per output channel."""

    tensor: str
    consumers: tuple[tuple[str, int], ...]
    axis: int = 0


@dataclass(frozen=True)
class QdqPlan:
    """Where Q/DQ goes. Activations in graph order."""

    activations: tuple[ActivationQdq, ...]
    weights: tuple[WeightQdq, ...]
    keep_fp32: tuple[str, ...] = field(default=())

    @property
    def num_qdq_tensors(self) -> int:
        return len(self.activations) + len(self.weights)


def qdq_activations(plan: QdqPlan) -> list[str]:
    """The activation tensors that carry Q/DQ (each needs a range in model.int8.onnx)."""
    return [a.tensor for a in plan.activations]


def observed_tensors(model) -> list[str]:
    """Every float activation of `model`, in graph order: the float graph inputs and every float
    node output computed from them. This is what the statistics pass observes and what
    calibration/trt.cache covers, not only the Q/DQ tensors: TensorRT's own calibrator gives
    every network tensor a scale, and in an implicit-INT8 build a tensor without one (a Conv
    output feeding an Add, say) keeps its producer and consumers out of INT8."""
    from onnx import TensorProto, shape_inference

    graph = model.graph
    typed = shape_inference.infer_shapes(model).graph
    elem_type = {v.name: v.type.tensor_type.elem_type for v in (*typed.value_info, *typed.output, *typed.input)}
    initializers = {t.name for t in graph.initializer}
    live = [i.name for i in graph.input if i.name not in initializers]
    reached = set(live)
    for node in graph.node:
        if any(t in reached for t in node.input):
            reached.update(t for t in node.output if t)
            live.extend(t for t in node.output if t)
    return [t for t in live if elem_type.get(t) == TensorProto.FLOAT]


def _node_names(model) -> list[str]:
    return [n.name for n in model.graph.node]


def _check_keep_fp32(model, keep_fp32: Sequence[str]) -> tuple[str, ...]:
    names = _node_names(model)
    known = set(names)
    unknown = [e for e in keep_fp32 if e not in known]
    if unknown:
        # Suggest the nodes the plan could quantize (Conv first): those are what users exclude.
        candidates = [n.name for n in model.graph.node if n.op_type in QDQ_OP_TYPES]
        shown = ", ".join(candidates[:4])
        raise UsageError(
            f"--keep-fp32: no node named {', '.join(repr(u) for u in unknown)} in the model; "
            f"valid names look like: {shown} (list them with `python -c \"import onnx; "
            f"[print(n.name) for n in onnx.load('model.onnx').graph.node]\"`)"
        )
    return tuple(dict.fromkeys(keep_fp32))


def _upstream(tensor: str, producer: Mapping) -> set[str]:
    """Every tensor `tensor` is computed from."""
    seen: set[str] = set()
    stack = [tensor]
    while stack:
        node = producer.get(stack.pop())
        for t in node.input if node is not None else ():
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return seen


def _projection_shortcut(add, producer: Mapping) -> list[int]:
    """[index] of the Add input that comes from the shortcut Conv of a projection shortcut:
    the Conv whose input lies upstream of the other Conv's input (rule 2); [] if neither does."""
    a, b = (producer[t].input[0] for t in add.input)
    if a != b and a in _upstream(b, producer):
        return [0]
    if a != b and b in _upstream(a, producer):
        return [1]
    log.debug("%s: two Conv inputs, neither on a shortcut; no Q/DQ on either", add.name)
    return []


def plan_qdq(model, keep_fp32: Sequence[str] = ()) -> QdqPlan:
    """Decide which tensors carry Q/DQ in `model` (an onnx.ModelProto), per the module rules."""
    kept = _check_keep_fp32(model, keep_fp32)  # in order, each once
    kept_set = set(kept)
    graph = model.graph
    names = _node_names(model)
    if len(set(names)) != len(names) or "" in names:
        # The plan addresses consumers by node name.
        raise CalibrationError("model has unnamed or duplicate node names; re-export it with `trtdeploy export`")
    initializers = {t.name for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}

    def from_conv(tensor: str) -> bool:
        p = producer.get(tensor)
        return p is not None and p.op_type == "Conv"

    def is_activation(tensor: str) -> bool:
        return bool(tensor) and tensor not in initializers and (
            tensor in producer or any(i.name == tensor for i in graph.input))

    # tensor -> (consumers, reasons), insertion-ordered by first quantized consumer.
    edges: dict[str, tuple[list[tuple[str, int]], list[str]]] = {}
    weights: dict[str, list[tuple[str, int]]] = {}

    def add_edge(tensor: str, node, index: int, reason: str) -> None:
        consumers, reasons = edges.setdefault(tensor, ([], []))
        if (node.name, index) not in consumers:
            consumers.append((node.name, index))
        if reason not in reasons:
            reasons.append(reason)

    # A MaxPool is a shortcut (slim `subsample`) when its output feeds a residual Add.
    add_inputs = {t for n in graph.node if n.op_type == "Add" for t in n.input}

    for node in graph.node:
        if node.name in kept_set or node.op_type not in QDQ_OP_TYPES:
            continue
        op = node.op_type
        if op == "Conv":
            if len(node.input) < 2 or node.input[1] not in initializers:
                raise CalibrationError(
                    f"Conv {node.name!r}: weight {node.input[1] if len(node.input) > 1 else '?'!r} is not an "
                    "initializer, so it cannot be quantized per channel; re-export the model (constants folded) "
                    f"or pass --keep-fp32 {node.name}"
                )
            add_edge(node.input[0], node, 0, CONV_INPUT)
            weights.setdefault(node.input[1], []).append((node.name, 1))
        elif op == "Add" and len(node.input) == 2 and all(is_activation(t) for t in node.input):
            shortcut = [i for i, t in enumerate(node.input) if not from_conv(t)]
            if not shortcut:
                shortcut = _projection_shortcut(node, producer)
            for i in shortcut:
                add_edge(node.input[i], node, i, RESIDUAL_INPUT)
        elif op == "BatchNormalization" and is_activation(node.input[0]) and not from_conv(node.input[0]):
            add_edge(node.input[0], node, 0, PREACT_BN_INPUT)
        elif op == "MaxPool" and node.output[0] in add_inputs and not from_conv(node.input[0]):
            add_edge(node.input[0], node, 0, SHORTCUT_POOL_INPUT)
        elif op == "AveragePool" and is_activation(node.input[0]):
            add_edge(node.input[0], node, 0, AVERAGE_POOL_INPUT)
    # Rule 9, once every other consumer is known (a branch pool may come before the branch Convs).
    for node in graph.node:
        if node.op_type == "MaxPool" and node.name not in kept_set and node.input[0] in edges \
                and (node.name, 0) not in edges[node.input[0]][0]:
            add_edge(node.input[0], node, 0, QUANTIZED_POOL_INPUT)

    activations = tuple(ActivationQdq(t, tuple(c), tuple(r)) for t, (c, r) in edges.items())
    return QdqPlan(activations=activations,
                   weights=tuple(WeightQdq(t, tuple(c)) for t, c in weights.items()),
                   keep_fp32=kept)


def qdq_names(tensor: str) -> dict[str, str]:
    """Names of the nodes and tensors of the Q/DQ pair on `tensor` (derived from it)."""
    return {
        "scale": f"{tensor}_scale",
        "zero_point": f"{tensor}_zero_point",
        "q_node": f"{tensor}_QuantizeLinear",
        "quantized": f"{tensor}_quantized",
        "dq_node": f"{tensor}_DequantizeLinear",
        "dequantized": f"{tensor}_dequantized",
    }


def weight_scales(weight: np.ndarray) -> np.ndarray:
    """Per-output-channel scale = max|w| / 127 over all but axis 0 (float32).

    An all-zero channel gets scale 1/127: zeros quantize to zero under any positive scale,
    and a zero scale would divide by zero in QuantizeLinear.
    """
    w = np.asarray(weight, dtype=np.float32)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    amax = np.where(amax > 0, amax, 1.0)
    return (amax / INT8_MAX).astype(np.float32)


def _check_ranges(model, plan: QdqPlan, amax: Mapping[str, float]) -> None:
    """Refuse an opset without per-axis Q/DQ and planned activations without a usable range."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise CalibrationError(
            f"model opset {opset} < {MIN_OPSET}: per-channel QuantizeLinear needs opset >= {MIN_OPSET}; "
            "re-export with `trtdeploy export --opset 17`"
        )
    missing = [a.tensor for a in plan.activations if a.tensor not in amax]
    if missing:
        raise CalibrationError(
            f"no calibrated range for {len(missing)} tensor(s) that carry Q/DQ (e.g. {missing[0]!r}); "
            "re-run `trtdeploy calibrate --recalibrate`"
        )
    bad = [(t, v) for t, v in ((a.tensor, float(amax[a.tensor])) for a in plan.activations)
           if not (np.isfinite(v) and v > 0)]
    if bad:
        raise CalibrationError(f"tensor {bad[0][0]!r}: amax {bad[0][1]} is not positive and finite; "
                               "re-run `trtdeploy calibrate --recalibrate`")


def _add_pair(graph, tensor, scale: np.ndarray, axis: int | None, consumers: Sequence[tuple[str, int]],
              nodes: Mapping, taken: set[str]) -> None:
    """Q/DQ on `tensor` (a graphsurgeon tensor) read by `consumers` (node name, input index)."""
    import onnx_graphsurgeon as gs

    names = qdq_names(tensor.name)
    clash = [v for v in names.values() if v in taken]
    if clash:
        raise CalibrationError(f"cannot name the Q/DQ pair of {tensor.name!r}: {clash[0]!r} already exists in the graph")
    scale_c = gs.Constant(names["scale"], scale.astype(np.float32))
    zero_point = gs.Constant(names["zero_point"], np.zeros(scale.shape, dtype=np.int8))
    quantized, dequantized = gs.Variable(names["quantized"]), gs.Variable(names["dequantized"])
    attrs = {} if axis is None else {"axis": axis}
    graph.nodes.append(gs.Node("QuantizeLinear", names["q_node"], dict(attrs), [tensor, scale_c, zero_point],
                               [quantized]))
    graph.nodes.append(gs.Node("DequantizeLinear", names["dq_node"], dict(attrs), [quantized, scale_c, zero_point],
                               [dequantized]))
    for node_name, index in consumers:
        node = nodes.get(node_name)
        if node is None:
            raise CalibrationError(f"plan names nodes this model lacks (tensor {tensor.name!r}); "
                                   "plan it from this model")
        if node.inputs[index].name != tensor.name:
            raise CalibrationError(f"plan does not match the model: node {node_name!r} input {index} is "
                                   f"{node.inputs[index].name!r}, planned {tensor.name!r}")
        node.inputs[index] = dequantized


def insert_qdq(model, plan: QdqPlan, amax: Mapping[str, float]):
    """A copy of `model` with the planned Q/DQ pairs; activation scale = amax / 127.

    Every planned activation tensor needs a positive finite amax. The graph is edited with
    onnx-graphsurgeon: each planned consumer input is rewired to its tensor's DQ output, and
    the node list is sorted topologically again.
    """
    import onnx
    import onnx_graphsurgeon as gs

    _check_ranges(model, plan, amax)
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    nodes = {n.name: n for n in graph.nodes}
    taken = {t for n in model.graph.node for t in (*n.input, *n.output)} | {n.name for n in model.graph.node} \
        | {t.name for t in model.graph.initializer}
    for a in plan.activations:
        if a.tensor not in tensors:
            raise CalibrationError(f"plan names tensors this model lacks ({a.tensor!r}); plan it from this model")
        scale = np.array(float(amax[a.tensor]) / INT8_MAX, dtype=np.float32)
        _add_pair(graph, tensors[a.tensor], scale, None, a.consumers, nodes, taken)
    for w in plan.weights:
        weight = tensors.get(w.tensor)
        if not isinstance(weight, gs.Constant):
            raise CalibrationError(f"weight {w.tensor!r} is not an initializer of this model; plan it from this model")
        _add_pair(graph, weight, weight_scales(weight.values), w.axis, w.consumers, nodes, taken)
    graph.toposort()
    out = gs.export_onnx(graph)
    onnx.checker.check_model(out)
    return out
