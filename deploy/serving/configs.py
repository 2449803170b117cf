"""The ModelConfig (config.pbtxt) of each model in the repository, as dicts for `pbtxt.render`.

Every rule cited is from Triton's docs: docs/user_guide/model_configuration.md ("Maximum Batch
Size", "Inputs and Outputs", "Datatypes", "Instance Groups", "CUDA Compute Capability",
"Dynamic Batcher"), model_repository.md (file names), ensemble_models.md, the python_backend
README ("Model Config File": `backend: "python"`, no `platform`) and the ModelConfig protobuf
(common/protobuf/model_config.proto) for field names. Standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..bundle import Bundle, TensorInfo
from ..errors import UsageError
from .engines import ServedEngine, cuda_graph_obstacle
from .pbtxt import Comment, Enum, Map, string_parameters

PLATFORMS = ("tensorrt_plan", "onnxruntime_onnx", "python")
KINDS = ("cpu", "gpu")
LABELS_FILE = "labels.txt"
IMAGE_INPUT = "image"  # the ensemble's and the preprocessing model's input: encoded image bytes
PREPROCESSED = "preprocessed"  # the ensemble's name for the tensor between its two steps
# The numpy dtype of each Triton data type the bundle's tensors can have (the Datatypes table).
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8",
                "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL", "float64": "TYPE_FP64"}
# Which precision's model a served model runs: parity judges the live server with its thresholds.
PRECISION_PARAMETER = "trtdeploy_precision"


@dataclass(frozen=True)
class TritonOptions:
    """What `trtdeploy triton` writes; None fields take the defaults each platform documents below."""

    platform: str = "tensorrt_plan"
    precision: str | None = None  # default: the engines' precision, else fp32
    engines: tuple[Path, ...] = ()
    max_batch: int | None = None  # default: the engine profile's max; 8 for ONNX and python models
    instances: int = 1
    preferred_batch: tuple[int, ...] = ()  # default: the engine profile's opt batch
    queue_delay_us: int | None = None
    name: str | None = None  # default: the bundle's model name
    kind: str | None = None  # onnxruntime_onnx: gpu; python: gpu with --engine, else cpu
    ort_tensorrt: bool = False  # onnxruntime_onnx on GPU: the TensorRT execution accelerator
    cuda_graphs: bool = False  # tensorrt_plan: capture CUDA graphs
    labels: Path | None = None

    def __post_init__(self) -> None:
        if self.platform not in PLATFORMS:
            raise UsageError(f"--platform {self.platform}: choose from {', '.join(PLATFORMS)}")
        if self.kind is not None and self.kind not in KINDS:
            raise UsageError(f"--kind {self.kind}: choose cpu or gpu")
        for flag, value in (("--max-batch", self.max_batch), ("--instances", self.instances)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} {value}: give at least 1")
        if self.queue_delay_us is not None and self.queue_delay_us < 0:
            raise UsageError(f"--queue-delay-us {self.queue_delay_us}: give 0 or more microseconds")
        if any(b < 1 for b in self.preferred_batch):
            raise UsageError(f"--preferred-batch {list(self.preferred_batch)}: batch sizes are at least 1")
        if self.platform != "tensorrt_plan" and self.cuda_graphs:
            raise UsageError("--cuda-graphs: only the tensorrt_plan platform captures CUDA graphs in Triton")
        if self.ort_tensorrt and self.platform != "onnxruntime_onnx":
            raise UsageError("--ort-tensorrt: the TensorRT execution accelerator belongs to onnxruntime_onnx")
        if self.ort_tensorrt and self.kind == "cpu":
            raise UsageError("--ort-tensorrt runs on the GPU (gpu_execution_accelerator); drop --kind cpu")
        if self.platform == "python" and self.kind is not None and (self.kind == "gpu") != bool(self.engines):
            raise UsageError(f"--kind {self.kind}: --platform python runs ONNX Runtime on the CPU, or an --engine on "
                             "the GPU; drop --kind or give (or drop) --engine")
        if self.platform == "tensorrt_plan" and self.kind == "cpu":
            raise UsageError("--kind cpu: a TensorRT plan runs on a GPU (instance_group KIND_GPU)")


def triton_type(dtype: str, where: str) -> Enum:
    try:
        return Enum(TRITON_TYPES[dtype])
    except KeyError:
        raise UsageError(f"{where}: data type {dtype!r} has no Triton type; known: {', '.join(TRITON_TYPES)}") from None


def _dims(shape: Sequence[int], where: str) -> list[int]:
    """`dims` leave out the batch axis, which must be the dynamic first one (max_batch_size > 0)."""
    if not shape or shape[0] != -1:
        raise UsageError(f"{where}: shape {list(shape)} has no dynamic batch axis first; Triton's batching "
                         "needs one (re-export: the bundle's ONNX has a dynamic batch)")
    return [int(d) for d in shape[1:]]


def tensor(name: str, dtype: str, shape: Sequence[int], where: str, label: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "data_type": triton_type(dtype, where), "dims": _dims(shape, where)}
    if label:
        out["label_filename"] = LABELS_FILE
    return out


def bundle_io(bundle: Bundle) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The classifier's inputs and outputs from the manifest; class outputs carry the labels."""
    def one(t: TensorInfo, label: bool) -> dict[str, Any]:
        return tensor(t.name, t.dtype, t.shape, f"{bundle.root} {t.name}", label)

    classes = set(bundle.class_outputs)
    return [one(t, False) for t in bundle.inputs], [one(t, t.name in classes) for t in bundle.outputs]


def dynamic_batching(preferred: Sequence[int], max_batch: int, delay_us: int | None) -> dict[str, Any]:
    over = [b for b in preferred if b > max_batch]
    if over:
        raise UsageError(f"--preferred-batch {over} above max_batch_size {max_batch}; Triton never forms a batch "
                         "larger than max_batch_size")
    return {"preferred_batch_size": sorted(set(preferred)) or None, "max_queue_delay_microseconds": delay_us}


def _common(name: str, max_batch: int, precision: str, kind: str, count: int, batching: dict[str, Any]
            ) -> dict[str, Any]:
    return {"name": name, "max_batch_size": max_batch,
            "instance_group": [{"count": count, "kind": Enum(f"KIND_{kind.upper()}")}],
            "dynamic_batching": batching, "parameters": string_parameters({PRECISION_PARAMETER: precision})}


def plan_file_names(engines: Sequence[ServedEngine]) -> list[str]:
    """model.plan for one engine; model.sm_87.plan, ... for several (and model.plan for a
    hardware-compatible one, the default for GPUs no entry names)."""
    if len(engines) == 1:
        return ["model.plan"]
    return ["model.plan" if e.sidecar.hardware_compat else f"model.{e.sidecar.compute_capability}.plan"
            for e in engines]


def tensorrt_config(bundle: Bundle, name: str, engines: Sequence[ServedEngine], opts: TritonOptions,
                    max_batch: int, preferred: Sequence[int]) -> dict[str, Any]:
    first = engines[0].sidecar
    inputs = [tensor(t.name, t.dtype, t.shape, f"{engines[0].plan} {t.name}") for t in first.inputs]
    classes = set(bundle.class_outputs)
    outputs = [tensor(t.name, t.dtype, t.shape, f"{engines[0].plan} {t.name}", t.name in classes)
               for t in first.outputs]
    files = plan_file_names(engines)
    built = "; ".join(f"{f}: TensorRT {e.sidecar.tensorrt}, {e.sidecar.compute_capability}"
                      f"{' (' + e.sidecar.hardware_compat + ')' if e.sidecar.hardware_compat else ''}, "
                      f"profile batch {list(e.profile_batch)}" for f, e in zip(files, engines))
    config = {"#": Comment(f"written by trtdeploy triton from {bundle.root}; {built}"),
              "platform": "tensorrt_plan",
              **_common(name, max_batch, first.precision, "gpu", opts.instances,
                        dynamic_batching(preferred, max_batch, opts.queue_delay_us)),
              "input": inputs, "output": outputs}
    specific = {e.cc_key: f for f, e in zip(files, engines) if not e.sidecar.hardware_compat}
    if specific:
        config["cc_model_filenames"] = Map(specific)
    if opts.cuda_graphs:
        for e in engines:
            why = cuda_graph_obstacle(e)
            if why:
                raise UsageError(f"--cuda-graphs: {e.plan} cannot be captured as a CUDA graph ({why}); drop "
                                 "--cuda-graphs")
        config["optimization"] = {"cuda": {"graphs": True}}
    return config


def onnx_config(bundle: Bundle, name: str, opts: TritonOptions, precision: str, max_batch: int) -> dict[str, Any]:
    inputs, outputs = bundle_io(bundle)
    kind = opts.kind or "gpu"
    config = {"#": Comment(f"written by trtdeploy triton from {bundle.root}: its {precision} ONNX"),
              "platform": "onnxruntime_onnx",
              **_common(name, max_batch, precision, kind, opts.instances,
                        dynamic_batching(opts.preferred_batch, max_batch, opts.queue_delay_us)),
              "input": inputs, "output": outputs}
    if opts.ort_tensorrt:
        # onnxruntime_backend README, "ONNX Runtime with TensorRT optimization": precision_mode
        # FP16 / INT8 map to ORT's trt_fp16_enable / trt_int8_enable; FP32 needs no parameter.
        mode = {"fp16": "FP16", "int8": "INT8"}.get(precision)
        accelerator: dict[str, Any] = {"name": "tensorrt"}
        if mode:
            accelerator["parameters"] = Map({"precision_mode": mode})
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [accelerator]}}
    return config


def python_config(bundle: Bundle, name: str, opts: TritonOptions, precision: str, max_batch: int,
                  runner: str, model_file: str) -> dict[str, Any]:
    inputs, outputs = bundle_io(bundle)
    kind = "gpu" if runner == "tensorrt" else "cpu"
    config = {"#": Comment(f"written by trtdeploy triton from {bundle.root}: {model_file} ({precision}) run by "
                           f"trtdeploy's {runner} runner inside the python backend"),
              "backend": "python",
              **_common(name, max_batch, precision, kind, opts.instances,
                        dynamic_batching(opts.preferred_batch, max_batch, opts.queue_delay_us)),
              "input": inputs, "output": outputs}
    config["parameters"].update(string_parameters({"runner": runner, "model_file": model_file}))
    return config


def preprocess_config(bundle: Bundle, name: str, opts: TritonOptions, precision: str, max_batch: int
                      ) -> dict[str, Any]:
    (image,) = bundle.inputs  # an image classifier has one input
    return {"#": Comment(f"written by trtdeploy triton from {bundle.root}: encoded images (JPEG/PNG bytes) -> "
                         f"{image.name}, the bundle's {bundle.preprocessing.get('preset')} preprocessing"),
            "backend": "python",
            **_common(name, max_batch, precision, "cpu", opts.instances,
                      dynamic_batching(opts.preferred_batch, max_batch, opts.queue_delay_us)),
            "input": [{"name": IMAGE_INPUT, "data_type": Enum("TYPE_STRING"), "dims": [1]}],
            "output": [tensor(image.name, image.dtype, image.shape, f"{bundle.root} {image.name}")]}


def ensemble_config(bundle: Bundle, name: str, classifier: str, preprocess: str, precision: str,
                    max_batch: int) -> dict[str, Any]:
    """Image bytes -> class scores. An ensemble has no instance_group or batcher of its own
    (model_configuration.md, "Ensemble Model Instance Groups"); its steps batch."""
    (image,) = bundle.inputs
    _, outputs = bundle_io(bundle)
    return {"#": Comment(f"written by trtdeploy triton from {bundle.root}: {preprocess} then {classifier}"),
            "name": name, "platform": "ensemble", "max_batch_size": max_batch,
            "input": [{"name": IMAGE_INPUT, "data_type": Enum("TYPE_STRING"), "dims": [1]}],
            "output": outputs,
            "ensemble_scheduling": {"step": [
                {"model_name": preprocess, "model_version": -1, "input_map": Map({IMAGE_INPUT: IMAGE_INPUT}),
                 "output_map": Map({image.name: PREPROCESSED})},
                {"model_name": classifier, "model_version": -1, "input_map": Map({image.name: PREPROCESSED}),
                 "output_map": Map({o["name"]: o["name"] for o in outputs})},
            ]},
            "parameters": string_parameters({PRECISION_PARAMETER: precision})}
