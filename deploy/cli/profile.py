"""`trtdeploy profile BUNDLE --engine PLAN`: time per engine layer (TensorRT's IProfiler)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_bundle, add_engine_and_batch, add_out, held_bundle, inside, non_negative_int, positive_int


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "profile", help="time per engine layer, slowest first (JSON in BUNDLE/reports, shown by the parity report)",
        description="Run an engine on random inputs with TensorRT's IProfiler attached and report each layer's "
                    "median time and share of the total, slowest first. Writes "
                    "BUNDLE/reports/profile.NAME.json (NAME: the plan's name), which `trtdeploy parity` shows "
                    "beside the per-layer error. Needs TensorRT and a GPU.",
    )
    add_bundle(p)
    add_engine_and_batch(p)
    p.add_argument("--iters", type=positive_int, default=50, metavar="K", help="profiled calls (default: %(default)s)")
    p.add_argument("--warmup", type=non_negative_int, default=10, metavar="K",
                   help="calls before profiling (default: %(default)s)")
    p.add_argument("--top", type=positive_int, default=15, metavar="N", help="layers to print (default: %(default)s)")
    add_out(p, "FILE.json", "where to write the JSON (default: BUNDLE/reports/profile.NAME.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fsutil import atomic_write_json, check_writable_dir
    from ..parity.layer_timing import profile_path
    from ..trt.profiler import profile_engine, top_layers_text

    with held_bundle(args, "profile", write=inside(args.out, args.bundle)) as bundle:
        plan = bundle.choose_engine(args.engine)
        out = args.out or profile_path(bundle.reports_dir, plan)
        check_writable_dir(out.parent)
        result = profile_engine(plan, batch=args.batch, iters=args.iters, warmup=args.warmup)
        atomic_write_json(out, result)
    print(f"{plan.name}, batch {result['batch']}: {result['total_ms']['median']:.4f} ms per call "
          f"(sum of layer times, median of {result['calls']} calls)")
    print(top_layers_text(result, args.top))
    print(f"profile: {out}")
    return 0
