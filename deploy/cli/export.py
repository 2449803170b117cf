"""`trtdeploy export`: model -> bundle (SavedModel, ONNX, manifest, reference outputs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_out, positive_float, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a slim-style model to a bundle (SavedModel + ONNX + manifest)",
                       description="Export a registry model (--model) or your own (--spec FILE.json) to BUNDLE: "
                                   "saved_model/, model.onnx (tf2onnx, opset >= 17, dynamic batch), "
                                   "manifest.json, reference.npz; prints TF-vs-ONNX-Runtime parity.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="registry name: resnet_v1_50/101/152/200, resnet_v2_50/101/152/200, "
                       "vgg_16, vgg_19, mobilenet_v1(_075/_050/_025), mobilenet_v2(_140/_050/_035), "
                       "inception_v1/v2/v3, resnet_v2_digits (or 'default')")
    which.add_argument("--spec", type=Path, metavar="FILE.json",
                       help="your own network as a JSON spec (family v1/v2/vgg/mobilenet_v1/mobilenet_v2/inception_*, "
                            "blocks, ...; see README \"Models\")")
    p.add_argument("--checkpoint", type=Path, help="tf-slim checkpoint prefix (model.ckpt); default: the "
                   "model's embedded weights, else seeded random weights (recorded in the manifest)")
    p.add_argument("--num-classes", type=int, help="logits width (default: from the checkpoint, else the model's)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="input height and width (default: the model's registry or spec size)")
    p.add_argument("--output-stride", type=int, help="atrous output stride (e.g. 16; ResNets and MobileNets)")
    p.add_argument("--depth-multiplier", type=positive_float, metavar="M",
                   help="slim's width multiplier (MobileNets, Inception v2/v3): every layer M times as wide")
    p.add_argument("--no-global-pool", action="store_true", help="dense prediction: no global average pool")
    p.add_argument("--outputs", metavar="NAME[,NAME...]",
                   help="model outputs by tf-slim end point name (resnet_v2_50/block3, vgg_16/conv5/conv5_3, "
                        "logits, predictions, ...); default: logits,predictions")
    p.add_argument("--list-outputs", action="store_true",
                   help="print the names and shapes --outputs accepts for this model, and export nothing")
    p.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw", help="ONNX input layout (default nchw)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset for tf2onnx (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights and reference inputs")
    p.add_argument("--num-reference", type=positive_int, default=8, help="samples stored in reference.npz")
    add_out(p, "BUNDLE", "bundle directory to create (required unless --list-outputs)")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace):
    from ..export import ExportConfig
    from ..slim.netspec import load_spec_file
    from ..slim.registry import get_model_info

    if args.model is not None:
        get_model_info(args.model)
    spec = load_spec_file(args.spec) if args.spec is not None else None
    outputs = tuple(o.strip() for o in args.outputs.split(",")) if args.outputs is not None else None
    return ExportConfig(model=args.model, spec=spec, checkpoint=args.checkpoint, num_classes=args.num_classes,
                        image_size=tuple(args.image_size) if args.image_size else None,
                        output_stride=args.output_stride, global_pool=False if args.no_global_pool else None,
                        depth_multiplier=args.depth_multiplier,
                        layout=args.layout, opset=args.opset, seed=args.seed, num_reference=args.num_reference,
                        outputs=outputs)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..export import check_out_dir, export, list_outputs

    # Usage errors first, before TensorFlow's slow import.
    config = _config(args)
    if args.list_outputs:
        print(list_outputs(config))
        return 0
    if args.out is None:
        raise UsageError("--out BUNDLE is required to export (or pass --list-outputs to only list the outputs)")
    check_out_dir(args.out, args.force)
    bundle = export(config, args.out, force=args.force)
    from ..parity.summary import export_parity_line

    parity = bundle.export_parity
    print(f"exported {bundle.model_name} to {bundle.root}")
    for name, m in parity["outputs"].items():
        print(f"  TF vs ONNX Runtime [{name}]: {export_parity_line(m)}")
    print(f"  parity {'PASS' if parity['pass'] else 'FAIL'} "
          f"(max abs / max |TF value| <= {parity['tolerance_max_abs_scaled']:.3g} for every output)")
    for warning in bundle.warnings:
        print(f"  WARNING: {warning}")
    return 0 if parity["pass"] else 1
