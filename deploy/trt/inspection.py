"""What an engine really runs: TensorRT's engine inspector, read into layers and a summary.

`trtdeploy build` builds with `ProfilingVerbosity.DETAILED` and writes
`engines/NAME.PRECISION.layers.json` beside the plan: every layer's name, type, input and output
formats and precisions, the ONNX nodes it fused, its tactic and (for DLA builds) its device, plus
the names of the network's convolutions. `summarize` turns that into the answer a user wants
first: did the INT8 engine run its convolutions in INT8, did the FP16 engine keep any in FP32,
and, on DLA, which layers fell back to the GPU.

The inspector's JSON, as TensorRT 10 and 11 write it (the engine inspector section of the
developer guide; NVIDIA's trt-engine-explorer `trex/parser.py`, `layer.py`, `activations.py`
and Polygraphy's `backend/trt/util.py` read the same fields):
- `{"Layers": [...], "Bindings": [names]}`; TensorRT 11 renamed "Bindings" to "I/O Tensors"
  (a list of objects with "Name"). Without detailed verbosity "Layers" holds names only.
- a layer: "Name" (fused layers read "A + B + C"), "LayerType" ("CaskConvolution",
  "Reformat", "Myelin", ...), "ParameterType" ("Convolution", ...), "Inputs"/"Outputs" with
  "Name", "Dimensions" and "Format/Datatype" ("Row major linear FP32", "Channel major FP16 format
  where channel % 8 == 0", "Thirty-two wide channel vectorized row major Int8 format"),
  "Weights": {"Type": "Int8"|"Half"|"Float", ...}, "TacticName", and "Metadata" holding the
  ONNX nodes as "[ONNX Layer: NAME]" entries separated by \\x1f or \\x1e. The ONNX parser writes
  each entry as "[ONNX Layer: <name> | property1 | property2 ...]" (onnx-tensorrt's
  `processMetadata`: a node inside an ONNX local function gets " | Local Function: F"), so a
  node is the text before the first " | "; a convolution also has "OutMaps" and "Groups"
  (trex's `df_preprocessing.layer_attributes`), Groups = input channels for a depthwise one
  (MobileNet's).
A layer's precision is its own where the inspector gives it, its weights' type (a convolution's
kernel runs in the type of its weights); else, for a layer that is one TensorRT kernel, that of
its first input, as trex reads it; a fused subgraph (a Myelin or other "{ForeignNode[...]}"
layer) shows only its boundary formats, which say nothing of the convolutions inside, so its
precision is "unknown" then.

Pure logic apart from `engine_information` and `network_convolutions`, which take the live
TensorRT objects.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping, Sequence

from ..bundle.engines import layers_path  # the layout is named once, there
from ..errors import EngineError

LAYERS_FORMAT = 1
TARGET = {"int8": "INT8", "fp16": "FP16", "fp32": "FP32"}
# Words of a "Format/Datatype" string (or of a "Type"/"Datatype" field) that name the data type.
_DTYPE_WORDS = {"INT8": "INT8", "UINT8": "UINT8", "FP16": "FP16", "HALF": "FP16", "FP32": "FP32", "FLOAT": "FP32",
                "BFLOAT16": "BF16", "BF16": "BF16", "FP8": "FP8", "FP4": "FP4", "FP4E2M1": "FP4", "INT4": "INT4",
                "INT32": "INT32", "INT64": "INT64", "BOOL": "BOOL", "DOUBLE": "FP64"}
_ONNX_NODE = re.compile(r"\[ONNX Layer: (.*?)\](?=\[ONNX Layer: |[\x1e\x1f]|$)", re.S)
_PROPERTY = " | "  # what separates a node's name from the parser's properties in its metadata entry
# Layers staging a DLA subgraph's inputs and outputs ("input to nvm", "output from nvm", "x copy
# finish" in NVIDIA/TensorRT issue 3143): data movement, not layers that fell back to the GPU.
_DLA_STAGING = re.compile(r" (to nvm|from nvm|copy finish)$")
# GPU layers of a DLA build that only convert formats between the DLA and the GPU.
_DATA_MOVEMENT = ("Reformat", "NoOp")
SHOWN_NAMES = 8  # nodes named in a printed line; the layers file has them all


def dtype_of(text: str | None) -> str | None:
    """"Channel major FP16 format where channel % 8 == 0" -> "FP16"; None when no type is named."""
    for word in re.findall(r"[A-Za-z0-9]+", text or ""):
        if word.upper() in _DTYPE_WORDS:
            return _DTYPE_WORDS[word.upper()]
    return None


def onnx_nodes(metadata: str | None) -> tuple[str, ...]:
    """The ONNX node names in a layer's "Metadata" ("[ONNX Layer: a]\\x1f[ONNX Layer: b | Local
    Function: f]" -> ("a", "b"))."""
    return tuple(entry.split(_PROPERTY, 1)[0] for entry in _ONNX_NODE.findall(metadata or ""))


@dataclass(frozen=True)
class TensorFormat:
    name: str
    format: str  # TensorRT's words, e.g. "Row major linear FP32"
    precision: str | None  # "FP32", "FP16", "INT8", ...; None when TensorRT names no type
    dimensions: tuple[int, ...] = ()

    @classmethod
    def from_inspector(cls, d: Mapping[str, Any]) -> "TensorFormat":
        if "Format/Datatype" in d:
            text = str(d["Format/Datatype"])
            precision = dtype_of(text)
        else:  # type and layout as separate fields
            dtype = d.get("Datatype", d.get("DataType"))
            text = " ".join(str(x) for x in (d.get("Format"), dtype) if x is not None)
            precision = dtype_of(str(dtype)) if dtype is not None else dtype_of(text)
        dims = tuple(int(x) for x in d.get("Dimensions") or () if isinstance(x, (int, float)))
        return cls(str(d.get("Name", "")), text, precision, dims)


@dataclass(frozen=True)
class EngineLayer:
    """One layer of the built engine."""

    name: str
    type: str  # "LayerType"
    parameter_type: str | None  # "ParameterType"
    inputs: tuple[TensorFormat, ...]
    outputs: tuple[TensorFormat, ...]
    onnx_nodes: tuple[str, ...]  # the ONNX nodes TensorRT fused into this layer
    tactic: str | None
    precision: str | None  # its weights', else (one kernel) its first input's; None: not told (see the module doc)
    device: str = "GPU"  # "GPU" | "DLA"
    groups: int | None = None  # a convolution's "Groups"

    @property
    def is_depthwise(self) -> bool:
        """A grouped convolution with one group per input channel (when the input's channels are known)."""
        dims = self.inputs[0].dimensions if self.inputs else ()
        return bool(self.groups and self.groups > 1 and (len(dims) < 2 or dims[1] == self.groups))

    @property
    def is_convolution(self) -> bool:
        kinds = f"{self.parameter_type or ''} {self.type}"
        return "Conv" in kinds and "Deconv" not in kinds

    @property
    def is_dla_staging(self) -> bool:
        return bool(_DLA_STAGING.search(self.name))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "EngineLayer":
        def tensors(key: str) -> tuple[TensorFormat, ...]:
            return tuple(TensorFormat(t["name"], t["format"], t.get("precision"), tuple(t.get("dimensions") or ()))
                         for t in d.get(key) or ())

        return cls(d["name"], d["type"], d.get("parameter_type"), tensors("inputs"), tensors("outputs"),
                   tuple(d.get("onnx_nodes") or ()), d.get("tactic"), d.get("precision"), d.get("device", "GPU"),
                   d.get("groups"))


def _is_subgraph(raw: Mapping[str, Any], name: str) -> bool:
    """A layer TensorRT compiled as a whole subgraph (Myelin, a DLA loadable): "{ForeignNode[...]}"."""
    kind = f"{raw.get('LayerType', '')} {raw.get('TacticName', '')}".lower()
    return name.startswith("{ForeignNode[") or "myelin" in kind or "kgen" in kind


def _layer_precision(raw: Mapping[str, Any], name: str, inputs: Sequence[TensorFormat]) -> str | None:
    weights = raw.get("Weights")
    own = dtype_of(str(weights.get("Type"))) if isinstance(weights, Mapping) else None
    if own is not None or _is_subgraph(raw, name):
        return own
    return next((t.precision for t in inputs[:1]), None)


def _on_dla(raw: Mapping[str, Any], name: str) -> bool:
    """Whether a layer of a DLA build runs on the DLA. TensorRT marks the DLA subgraphs it hands
    to the DLA compiler as "{ForeignNode[first...last]}" layers; Myelin subgraphs on the GPU are
    also ForeignNodes, but with LayerType "Myelin" (or "kgen")."""
    kind = f"{raw.get('LayerType', '')} {raw.get('TacticName', '')}".lower()
    if "dla" in kind:
        return True
    return name.startswith("{ForeignNode[") and not any(k in kind for k in ("myelin", "kgen"))


def parse_layer(raw: Mapping[str, Any], dla: bool = False, names_are_nodes: bool = False) -> EngineLayer:
    """One inspector layer. `names_are_nodes`: the engine has no "Metadata" at all (TensorRT
    before 10), so the ONNX nodes are read from fused names ("A + B + C")."""
    name = str(raw.get("Name", ""))
    inputs = tuple(TensorFormat.from_inspector(t) for t in raw.get("Inputs") or () if isinstance(t, Mapping))
    outputs = tuple(TensorFormat.from_inspector(t) for t in raw.get("Outputs") or () if isinstance(t, Mapping))
    precision = _layer_precision(raw, name, inputs)
    nodes = onnx_nodes(raw.get("Metadata"))
    if names_are_nodes:
        nodes = tuple(part for part in name.split(" + ") if part)
    device = "DLA" if dla and (_on_dla(raw, name) or _DLA_STAGING.search(name)) else "GPU"
    groups = raw.get("Groups")
    return EngineLayer(name, str(raw.get("LayerType", "")), raw.get("ParameterType"), inputs, outputs, nodes,
                       raw.get("TacticName"), precision, device,
                       int(groups) if isinstance(groups, (int, float)) and not isinstance(groups, bool) else None)


def parse_engine_information(info: str | Mapping[str, Any], dla: bool = False
                             ) -> tuple[list[EngineLayer], list[str], bool]:
    """(layers, I/O tensor names, detailed) from `get_engine_information(LayerInformationFormat.JSON)`.
    `detailed` is False for an engine built without `ProfilingVerbosity.DETAILED` (names only)."""
    try:
        doc = json.loads(info) if isinstance(info, str) else info
        raw_layers = doc["Layers"]
        if not isinstance(raw_layers, list):
            raise TypeError("'Layers' is not a list")
    except (ValueError, KeyError, TypeError) as e:
        raise EngineError(f"TensorRT's engine information is not the JSON the inspector writes ({e})") from None
    io = doc.get("Bindings", doc.get("I/O Tensors")) or []
    io_names = [t if isinstance(t, str) else str(t.get("Name", "")) for t in io]
    detailed = all(isinstance(item, Mapping) for item in raw_layers) and bool(raw_layers)
    if not detailed:
        return [EngineLayer(str(n), "", None, (), (), (), None, None) for n in raw_layers], io_names, False
    names_are_nodes = not any("Metadata" in item for item in raw_layers)
    return [parse_layer(item, dla, names_are_nodes) for item in raw_layers], io_names, True


# --------------------------------------------------------------------------- summary
_ORDER = ("INT8", "FP8", "FP4", "INT4", "FP16", "BF16", "FP32", "DLA", "unknown")


def _ordered(precisions: Iterable[str]) -> list[str]:
    return sorted(set(precisions), key=lambda p: (_ORDER.index(p) if p in _ORDER else len(_ORDER), p))


def _names(items: Sequence[str], limit: int = SHOWN_NAMES) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more (see the .layers.json)" if len(items) > limit else "")


@dataclass(frozen=True)
class InspectionSummary:
    """What an engine runs, for `trtdeploy build`'s printout and the parity report."""

    precision: str  # the engine's label: fp32 | fp16 | int8
    detailed: bool  # False: built without ProfilingVerbosity.DETAILED, nothing to say
    convolutions: int  # the network's convolutions (or, without that list, the engine's convolution layers)
    by_precision: dict[str, int] = field(default_factory=dict)  # "INT8": 48, "FP16": 5, "DLA": ..., "unknown": ...
    off_target: tuple[tuple[str, str], ...] = ()  # (ONNX node, precision) of GPU convolutions not in `precision`
    not_located: tuple[str, ...] = ()  # convolutions no engine layer names (fused where the inspector is silent)
    dla_core: int | None = None
    dla_layers: int = 0
    gpu_fallback: tuple[str, ...] = ()  # layers of a DLA build that run on the GPU
    warnings: tuple[str, ...] = ()  # what the report flags
    unknown: tuple[str, ...] = ()  # convolutions inside fused subgraphs whose precision the inspector does not give
    depthwise: int = 0  # of the convolutions, the depthwise ones (MobileNet's)
    depthwise_in_target: int = 0

    @property
    def target(self) -> str:
        return TARGET[self.precision]

    @property
    def in_target(self) -> int:
        return self.by_precision.get(self.target, 0)

    @property
    def ok(self) -> bool:
        return not self.warnings

    def lines(self) -> list[str]:
        """One line on the convolutions, one on the DLA (DLA builds), one per warning."""
        if not self.detailed:
            return ["layer details unavailable: the engine was built without detailed profiling verbosity; "
                    "rebuild it with `trtdeploy build` to see which precision each layer runs in"]
        on_dla = self.by_precision.get("DLA", 0)
        if not self.convolutions:
            head = "no convolutions in this engine"
        elif on_dla:
            head = (f"{on_dla} of {self.convolutions} convolutions run on DLA core {self.dla_core}, "
                    f"{self.in_target} in {self.target} on the GPU")
        else:
            head = f"{self.in_target} of {self.convolutions} convolutions run in {self.target}"
        if self.depthwise:
            head += f" ({self.depthwise_in_target} of the {self.depthwise} depthwise ones)"
        if self.off_target:
            kinds = "/".join(_ordered(p for _, p in self.off_target))
            head += f"; these ONNX nodes ran {kinds}: " + _names([f"{n} ({p})" for n, p in self.off_target])
        if self.unknown:
            head += (f"; {len(self.unknown)} inside fused subgraphs whose precision the layer information does not "
                     "give: " + _names(self.unknown))
        if self.not_located:
            head += f"; {len(self.not_located)} not named in the layer information: " + _names(self.not_located)
        out = [head]
        if self.dla_core is not None:
            fallback = (f"these {len(self.gpu_fallback)} fell back to the GPU: " + _names(self.gpu_fallback)
                        if self.gpu_fallback else "none fell back to the GPU")
            out.append(f"DLA core {self.dla_core}: {self.dla_layers} layer{'s' if self.dla_layers != 1 else ''} on "
                       f"the DLA; {fallback}")
        return out + [f"warning: {w}" for w in self.warnings]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["off_target"] = [list(x) for x in self.off_target]
        d.update(ok=self.ok, lines=self.lines())
        return d


def _conv_layers(layers: Sequence[EngineLayer], convolutions: Sequence[str] | None
                 ) -> dict[str, EngineLayer | None]:
    """Convolution -> the engine layer that runs it (None when no engine layer names it)."""
    if convolutions is None:
        return {item.name: item for item in layers if item.is_convolution}
    where: dict[str, EngineLayer] = {}
    for item in layers:
        for node in item.onnx_nodes:
            where.setdefault(node, item)
    return {node: where.get(node) for node in convolutions}


def _precisions(located: dict[str, EngineLayer | None]) -> dict[str, str | None]:
    """Convolution (as `_conv_layers` keys it) -> the precision it runs in ("DLA" when on the DLA,
    "unknown" when TensorRT names no type, None when no engine layer names it)."""
    def run_in(item: EngineLayer) -> str:
        return "DLA" if item.device == "DLA" else (item.precision or "unknown")

    return {node: (run_in(item) if item is not None else None) for node, item in located.items()}


def summarize(layers: Sequence[EngineLayer], precision: str, convolutions: Sequence[str] | None = None,
              dla_core: int | None = None, detailed: bool = True) -> InspectionSummary:
    """Which convolutions run in the engine's precision, which do not (by ONNX node), and on a
    DLA build which layers fell back to the GPU. Flags an int8 engine whose convolutions mostly
    do not run in INT8 and an fp16 engine with FP32 convolutions."""
    if precision not in TARGET:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(TARGET)}")
    if not detailed:
        return InspectionSummary(precision, False, 0, dla_core=dla_core)
    located = _conv_layers(layers, convolutions)
    per_conv = _precisions(located)
    target = TARGET[precision]
    by = Counter(p for p in per_conv.values() if p is not None)
    off = tuple((n, p) for n, p in per_conv.items() if p is not None and p not in (target, "DLA", "unknown"))
    not_located = tuple(n for n, p in per_conv.items() if p is None)
    unknown = tuple(n for n, p in per_conv.items() if p == "unknown")
    on_gpu = sum(n for p, n in by.items() if p not in ("DLA", "unknown"))  # the GPU convolutions with a known type
    warnings = []
    if precision == "int8" and on_gpu and 2 * by[target] < on_gpu:
        warnings.append(f"labelled int8, but only {by[target]} of its {on_gpu} convolutions on the GPU run in INT8: "
                        "TensorRT found no INT8 scales for the others (re-run `trtdeploy calibrate`, and check "
                        "which nodes its --keep-fp32 kept in float)")
    fp32 = [n for n, p in off if p == "FP32"]
    if precision == "fp16" and fp32:
        many = len(fp32) > 1
        warnings.append(f"labelled fp16, but {len(fp32)} convolution{'s run' if many else ' runs'} in FP32: "
                        + _names(fp32) + " (expected only for nodes `trtdeploy fp16` kept in FP32)")
    gpu_fallback: tuple[str, ...] = ()
    dla_layers = 0
    if dla_core is not None:
        dla_layers = sum(1 for item in layers if item.device == "DLA" and not item.is_dla_staging)
        gpu_fallback = tuple(item.name for item in layers if item.device == "GPU" and not item.is_dla_staging
                             and item.type not in _DATA_MOVEMENT)
    depthwise = [node for node, item in located.items() if item is not None and item.is_depthwise]
    return InspectionSummary(precision, True, len(per_conv), dict(by), off, not_located, dla_core, dla_layers,
                             gpu_fallback, tuple(warnings), unknown, depthwise=len(depthwise),
                             depthwise_in_target=sum(per_conv[n] == target for n in depthwise))


# --------------------------------------------------------------------------- the layers file
def layers_document(info: str | Mapping[str, Any], *, plan: str, tensorrt: str, precision: str, mode: str,
                    convolutions: Sequence[str] | None, dla_core: int | None = None) -> dict[str, Any]:
    """The content of NAME.PRECISION.layers.json: our reading of every layer, the summary, and
    TensorRT's own JSON (for trex and other tools that read it)."""
    raw = json.loads(info) if isinstance(info, str) else dict(info)
    layers, io, detailed = parse_engine_information(raw, dla=dla_core is not None)
    summary = summarize(layers, precision, convolutions, dla_core, detailed)
    return {"format": LAYERS_FORMAT, "plan": plan, "tensorrt": tensorrt, "precision": precision, "mode": mode,
            "dla_core": dla_core, "detailed": detailed, "io_tensors": io,
            "network_convolutions": list(convolutions) if convolutions is not None else None,
            "summary": summary.to_json(), "layers": [item.to_json() for item in layers],
            "engine_information": raw}


def summary_of(doc: Mapping[str, Any], source: str = "layers file") -> InspectionSummary:
    """The summary of a layers file, recomputed from TensorRT's own JSON in it (else from our
    reading of its layers), so files written by an older trtdeploy get today's rules."""
    try:
        if int(doc.get("format", 0)) != LAYERS_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, this trtdeploy reads {LAYERS_FORMAT}")
        if isinstance(doc.get("engine_information"), Mapping):
            layers, _, detailed = parse_engine_information(doc["engine_information"],
                                                           dla=doc.get("dla_core") is not None)
        else:
            layers, detailed = [EngineLayer.from_json(d) for d in doc["layers"]], bool(doc.get("detailed", True))
        return summarize(layers, doc["precision"], doc.get("network_convolutions"), doc.get("dla_core"), detailed)
    except (KeyError, TypeError, ValueError) as e:
        raise EngineError(f"{source}: not a layers file trtdeploy wrote ({type(e).__name__}: {e}); rebuild the "
                          "engine with `trtdeploy build`") from None


def load_summary(plan_path: str | Path) -> InspectionSummary | None:
    """The summary of the layers file the plan's sidecar points at; None for an engine without
    a sidecar or built before trtdeploy wrote layers files."""
    from .sidecar import read_sidecar, sidecar_path

    plan = Path(plan_path)
    if not sidecar_path(plan).is_file():
        return None
    name = read_sidecar(plan).layers
    if not name:
        return None
    path = plan.parent / name
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EngineError(f"{path}: unreadable layers file ({e}); rebuild the engine with `trtdeploy build`") from None
    return summary_of(doc, str(path))


# --------------------------------------------------------------------------- TensorRT
def network_convolutions(trt: ModuleType, network: Any) -> list[str]:
    """The ONNX node of every convolution in a parsed network (the parser records it in each
    layer's metadata; the layer name is the fallback)."""
    names = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.CONVOLUTION:
            names.append((onnx_nodes(layer.metadata) or (layer.name,))[0])
    return names


def engine_information(trt: ModuleType, engine: Any, opt_shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """The inspector's JSON for `engine`. An execution context with every input shape set makes
    TensorRT print concrete dimensions and the formats of dynamic-shape layers (without one it
    prints -1 and no formats), so the profile's opt shapes are set first."""
    context = engine.create_execution_context()
    inspector = engine.create_engine_inspector()
    if context is not None:
        for name, shape in opt_shapes.items():
            context.set_input_shape(name, tuple(shape))
        inspector.execution_context = context
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    try:
        return json.loads(text)
    except ValueError as e:
        raise EngineError(f"TensorRT's engine information is not JSON ({e})") from None

