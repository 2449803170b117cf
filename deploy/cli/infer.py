"""`trtdeploy infer BUNDLE IMAGE...`: top-k classes for images (and the shape and value range of
feature-map outputs), with TensorRT or ONNX Runtime."""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..bundle import PRECISIONS
from ..errors import UsageError
from .args import add_bundle, held_bundle, positive_int

BACKENDS = ("onnxruntime", "tensorrt")
ORT_CHUNK = 32  # images per ONNX Runtime call: bounds memory for long image lists


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "infer", help="classify images with an engine or the ONNX model",
        description="Apply the bundle's preprocessing, run TensorRT (--engine, or --backend tensorrt) or ONNX "
                    "Runtime (FP32 ONNX, the default), and print the top-k classes; outputs that are feature "
                    "maps (export --outputs) are shown by shape, min, mean and max per image.",
    )
    add_bundle(p)
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                   help="image files (JPEG/PNG), preprocessed as the bundle's manifest says")
    p.add_argument("--engine", type=Path, metavar="PLAN", help="TensorRT engine (implies --backend tensorrt)")
    p.add_argument("--backend", choices=BACKENDS,
                   help="default: tensorrt with --engine, else onnxruntime; tensorrt without --engine uses the "
                        "bundle's only engine")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="onnxruntime: the bundle's ONNX to run, fp32 (model.onnx, the default), fp16 (model.fp16.onnx) "
                        "or int8 (model.int8.onnx): what the FP16 and INT8 models answer for your images, on the CPU; "
                        "a TensorRT engine has its precision built in (--engine)")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K",
                   help="classes shown per image (default: %(default)s)")
    p.add_argument("--labels", type=Path, metavar="FILE", help="class names, one per line")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--cuda-graph", action="store_true",
                   help="tensorrt: replay the engine as a CUDA graph per batch size (falls back, saying why)")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Prediction:
    class_index: int | None  # None for the background class of 1001-class slim models
    label: str
    score: float


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def probabilities(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Class probabilities: the "predictions" output (a softmax) when present, else the
    softmax of "logits" (or of the only output)."""
    if "predictions" in outputs:
        return outputs["predictions"].astype(np.float64)
    if "logits" in outputs:
        return softmax(outputs["logits"])
    if len(outputs) == 1:
        return softmax(next(iter(outputs.values())))
    raise UsageError(f"cannot tell the class scores among outputs {sorted(outputs)}; expected 'predictions' "
                     "or 'logits'")


def label_for(raw: int, offset: int, labels: Sequence[str] | None, num_classes: int) -> Prediction:
    """Name the model's output index `raw`. Class index = raw - offset; raw < offset is the
    background. A labels file lists classes from index 0, or, when it has exactly one
    line per model output (num_classes), the model's outputs including the background."""
    index = raw - offset
    if index < 0:
        return Prediction(None, "background", 0.0)
    if labels is not None:
        line = raw if len(labels) == num_classes and offset else index
        if line < len(labels) and labels[line]:
            return Prediction(index, labels[line], 0.0)
    return Prediction(index, f"class {index}", 0.0)


def top_k(probs: np.ndarray, k: int, offset: int, labels: Sequence[str] | None) -> list[Prediction]:
    order = np.argsort(-probs, kind="stable")[:k]
    out = []
    for raw in order:
        p = label_for(int(raw), offset, labels, probs.shape[-1])
        out.append(Prediction(p.class_index, p.label, float(probs[raw])))
    return out


def run(args: argparse.Namespace) -> int:
    from deploy.data.labels import read_labels
    from deploy.data.preprocess import Preprocess

    backend = args.backend or ("tensorrt" if args.engine else "onnxruntime")
    if args.engine and backend != "tensorrt":
        raise UsageError("--engine runs TensorRT; drop --backend onnxruntime or --engine")
    if args.precision and backend == "tensorrt":
        raise UsageError(f"--precision {args.precision} chooses the ONNX file ONNX Runtime runs; a TensorRT engine has "
                         "its precision built in: choose the engine with --engine PLAN, or add --backend onnxruntime")
    with held_bundle(args, "infer", write=False) as bundle:
        if args.labels and not bundle.class_outputs:
            raise UsageError(f"--labels {args.labels}: {bundle.root} has no [N, classes] output to name (its "
                             "outputs are feature maps, shown by value range); drop --labels")
        labels = read_labels(args.labels, bundle.num_classes, bundle.label_offset) if args.labels else None
        (tensor,) = bundle.inputs  # image classifiers have one input
        preprocess = Preprocess.from_json(bundle.preprocessing)
        images = np.stack([preprocess.load(p) for p in args.images]).astype(tensor.dtype, copy=False)

        if backend == "tensorrt":
            from ..trt.runtime import TrtRunner

            runner = TrtRunner(bundle.choose_engine(args.engine), timing=False, cuda_graph=args.cuda_graph)
        else:
            from ..runners.ort import OrtRunner

            precision = args.precision or "fp32"
            runner = OrtRunner(bundle.onnx_path(precision), name=f"ort-{precision}")
        chunk = runner.max_batch or ORT_CHUNK
        chunks: list[dict[str, np.ndarray]] = []
        with runner:
            for i in range(0, len(images), chunk):
                chunks.append(runner.infer({tensor.name: np.ascontiguousarray(images[i:i + chunk])}))
        outputs = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
        classes = [n for n in bundle.class_outputs if n in outputs]
        # A backbone's feature maps have no classes to rank: each is shown by its shape and value
        # range per image, enough to see that the engine ran and gave finite, non-trivial features.
        dense = [o.name for o in bundle.outputs if o.name in outputs and o.name not in classes]
        probs_all = probabilities({n: outputs[n] for n in classes}) if classes else None
        results = []
        for i, path in enumerate(args.images):
            top = top_k(probs_all[i], min(args.top_k, probs_all.shape[-1]), bundle.label_offset, labels) \
                if probs_all is not None else None
            results.append((path, top, {n: feature_stats(outputs[n][i]) for n in dense}))
        _show(args, bundle, runner.name, results)
    return 0


def _show(args: argparse.Namespace, bundle, backend: str, results: list) -> None:
    # Results of random weights look like any others ("class 294, 1.0000"): say so with them.
    weights = bundle.model.weights
    if args.json:
        print(json.dumps([{"image": str(path), "backend": backend, "weights": weights, "warnings": bundle.warnings,
                           **({"top": [{"class": t.class_index, "label": t.label, "score": t.score} for t in top]}
                              if top is not None else {}),
                           **({"outputs": stats} if stats else {})}
                          for path, top, stats in results], indent=2))
        return
    for warning in bundle.warnings:
        print(f"WARNING: {warning}")
    for path, top, stats in results:
        print(f"{path} ({backend})")
        for t in top or ():
            print(f"  {t.score:8.4f}  {t.label}")
        for name, st in stats.items():
            print(f"  {name} {st['shape']}: min {st['min']:.4g}, mean {st['mean']:.4g}, "
                  f"max {st['max']:.4g}, non-finite {st['nonfinite']}")


def feature_stats(x: np.ndarray) -> dict:
    """Shape and value range of one image's output (finite values only; the non-finite counted)."""
    finite = x[np.isfinite(x)]
    values = finite if finite.size else np.zeros(1)
    return {"shape": list(x.shape), "min": float(values.min()), "mean": float(values.mean()),
            "max": float(values.max()), "nonfinite": int(x.size - finite.size)}
