"""`trtdeploy triton BUNDLE --out REPO`: a Triton model repository (classifier, preprocessing, ensemble)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_bundle, add_out, held_bundle, non_negative_int, positive_int

PLATFORMS = ("tensorrt_plan", "onnxruntime_onnx", "python")  # deploy.serving.configs.PLATFORMS, without importing it


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "triton", help="a Triton model repository: the classifier, a preprocessing model for image bytes, an ensemble",
        description="Write REPO/NAME (the classifier on the platform asked for), REPO/NAME_preprocess (the bundle's "
                    "preprocessing, from JPEG/PNG bytes, python backend) and REPO/NAME_ensemble (image bytes -> class "
                    "scores), with labels and dynamic batching. A re-run on the same REPO says what changed.",
    )
    add_bundle(p)
    add_out(p, "REPO", "the model repository (created if missing; other models in it are left alone)", required=True)
    p.add_argument("--platform", choices=PLATFORMS, default="tensorrt_plan",
                   help="tensorrt_plan (an engine of the bundle), onnxruntime_onnx (its ONNX), or python (trtdeploy's "
                        "runners inside the python backend) (default: %(default)s)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="which model to serve (default: the --engine's precision, else fp32)")
    p.add_argument("--engine", type=Path, nargs="+", action="extend", default=[], metavar="PLAN",
                   help="TensorRT plan(s); several, one per GPU compute capability, become cc_model_filenames "
                        "(default: BUNDLE/engines/NAME.PRECISION.plan)")
    p.add_argument("--max-batch", type=positive_int, metavar="N",
                   help="max_batch_size (default: the engine profile's max batch; 8 for ONNX and python models)")
    p.add_argument("--instances", type=positive_int, default=1, metavar="K", help="instances of each model (default: 1)")
    p.add_argument("--preferred-batch", type=positive_int, nargs="+", default=[], metavar="N",
                   help="dynamic_batching preferred_batch_size (default: the engine profile's opt batch)")
    p.add_argument("--queue-delay-us", type=non_negative_int, metavar="T",
                   help="dynamic_batching max_queue_delay_microseconds (default: Triton's, 0)")
    p.add_argument("--name", metavar="NAME", help="model name (default: the bundle's model name)")
    p.add_argument("--kind", choices=("cpu", "gpu"),
                   help="instance kind of onnxruntime_onnx (default gpu) and python models (gpu with --engine)")
    p.add_argument("--ort-tensorrt", action="store_true",
                   help="onnxruntime_onnx: the TensorRT execution accelerator on the GPU")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="tensorrt_plan: CUDA graphs (refused for an engine that cannot be captured)")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="class names, one per line (default: class 0, class 1, ...; background first for label "
                        "offset 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..serving.configs import TritonOptions
    from ..serving.repository import write_repository

    opts = TritonOptions(platform=args.platform, precision=args.precision, engines=tuple(args.engine),
                         max_batch=args.max_batch, instances=args.instances,
                         preferred_batch=tuple(args.preferred_batch), queue_delay_us=args.queue_delay_us,
                         name=args.name, kind=args.kind, ort_tensorrt=args.ort_tensorrt, cuda_graphs=args.cuda_graphs,
                         labels=args.labels)
    with held_bundle(args, "triton", write=False) as bundle:  # read only: REPO is elsewhere
        written = write_repository(bundle, opts, args.out)
    print("\n".join(written.summary()))
    return 0
