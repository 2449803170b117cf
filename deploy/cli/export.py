"""`trtdeploy export`: model -> bundle (SavedModel, ONNX, manifest, reference outputs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_out


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a slim-style model to a bundle (SavedModel + ONNX + manifest)",
                       description="Export a registry model to BUNDLE: saved_model/, model.onnx (tf2onnx, "
                                   "opset >= 17, dynamic batch), manifest.json, reference.npz; prints "
                                   "TF-vs-ONNX-Runtime parity.")
    p.add_argument("--model", required=True, help="registry name: resnet_v2_50/101/152/200, resnet_v2_digits (or 'default')")
    p.add_argument("--checkpoint", type=Path, help="tf-slim checkpoint prefix (model.ckpt); default: the "
                   "model's embedded weights, else seeded random weights (recorded in the manifest)")
    p.add_argument("--num-classes", type=int, help="logits width (default: from the checkpoint, else the registry)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="input height and width (default: the model's registry size)")
    p.add_argument("--output-stride", type=int, help="atrous output stride (e.g. 16)")
    p.add_argument("--no-global-pool", action="store_true", help="dense prediction: no global average pool")
    p.add_argument("--layout", choices=("nchw", "nhwc"), default="nchw", help="ONNX input layout (default nchw)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset for tf2onnx (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights and reference inputs")
    p.add_argument("--num-reference", type=int, default=8, help="samples stored in reference.npz")
    add_out(p, "BUNDLE", "bundle directory to create", required=True)
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=run)


def parity_numbers(m: dict) -> str:
    """One output's export parity; top-1 agreement exists only for [N, classes] outputs (a
    --no-global-pool model's dense [N, H, W, classes] outputs have none)."""
    text = f"max abs {m['max_abs']:.3g}, max rel {m['max_rel']:.3g}"
    if m.get("top1_agreement") is not None:
        text += f", top-1 agreement {m['top1_agreement']:.1%}"
    return text


def run(args: argparse.Namespace) -> int:
    from ..export import ExportConfig, check_out_dir, export
    from ..slim.registry import get_model_info

    # Usage errors first, before TensorFlow's slow import.
    get_model_info(args.model)
    check_out_dir(args.out, args.force)
    config = ExportConfig(model=args.model, checkpoint=args.checkpoint, num_classes=args.num_classes,
                          image_size=tuple(args.image_size) if args.image_size else None,
                          output_stride=args.output_stride, global_pool=not args.no_global_pool,
                          layout=args.layout, opset=args.opset, seed=args.seed, num_reference=args.num_reference)
    bundle = export(config, args.out, force=args.force)
    parity = bundle.manifest["export_parity"]
    print(f"exported {bundle.model_name} to {bundle.root}")
    for name, m in parity["outputs"].items():
        print(f"  TF vs ONNX Runtime [{name}]: {parity_numbers(m)}")
    print(f"  parity {'PASS' if parity['pass'] else 'FAIL'} (max abs logits <= {parity['tolerance_max_abs_logits']:.3g})")
    for warning in bundle.warnings:
        print(f"  WARNING: {warning}")
    return 0 if parity["pass"] else 1
