"""`trtdeploy bench BUNDLE --engine PLAN --batch N`: throughput and latency, trtexec's metrics."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import (add_bundle, add_engine_and_batch, add_out, held_bundle, inside, non_negative_float, positive_float,
                   positive_int)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="engine throughput and latency (trtexec's metrics) and the runner's overhead",
        description="Run an engine on random inputs through the pycuda runner: throughput (images/s), host "
                    "latency (H2D + GPU compute + D2H), GPU compute, H2D and D2H times from CUDA events "
                    "(min/mean/median/p90/p99), and the runner's overhead per call (wall time minus GPU "
                    "compute). Writes JSON with the machine (GPU, driver, clocks, TensorRT). Needs TensorRT "
                    "and a GPU.",
    )
    add_bundle(p)
    add_engine_and_batch(p)
    length = p.add_mutually_exclusive_group()
    length.add_argument("--duration", type=positive_float, metavar="S",
                        help="timed seconds per stream (default: 3)")
    length.add_argument("--iters", type=positive_int, metavar="K", help="timed calls per stream instead of --duration")
    p.add_argument("--warmup", type=non_negative_float, metavar="S",
                   help="warm-up seconds before timing (default: 0.2)")
    p.add_argument("--streams", type=positive_int, default=1, metavar="K",
                   help="K runners (execution contexts) on K CUDA streams in K threads; throughput is their sum "
                        "(default: %(default)s)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="replay execute_async_v3 as a CUDA graph (falls back, saying why, if the engine cannot "
                        "be captured)")
    add_out(p, "FILE.json", "where to write the JSON (default: BUNDLE/reports/bench.NAME.json)")
    served = p.add_argument_group("a live Triton server (deploy.serving.load)")
    served.add_argument("--triton", metavar="URL", help="load-test the server at host:port instead of an engine: "
                        "throughput, latency percentiles, errors by kind, the server's queue and compute times")
    served.add_argument("--triton-model", metavar="NAME", help="the served model (default: the bundle's model name)")
    served.add_argument("--concurrency", type=positive_int, default=1, metavar="C", help="client threads (default: 1)")
    length.add_argument("--requests", type=positive_int, metavar="K", help="--triton: K requests in all, over every client")
    served.add_argument("--data", type=Path, metavar="PATH", help="--triton: inputs (images for a model taking image "
                        "bytes; default: reference.npz)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.triton or args.requests is not None:
        from ..serving.load import bench_triton

        return bench_triton(args)
    from ..fsutil import atomic_write_json, check_writable_dir
    from ..trt.enginebench import BenchConfig, bench_engine, summary_text
    from ..bundle.engines import plan_stem

    config = BenchConfig(batch=args.batch, iters=args.iters, duration_s=args.duration, warmup_s=args.warmup,
                         streams=args.streams, cuda_graph=args.cuda_graph)
    with held_bundle(args, "bench", write=inside(args.out, args.bundle)) as bundle:
        plan = bundle.choose_engine(args.engine)
        name = plan_stem(plan)
        out = args.out or bundle.reports_dir / f"bench.{name}.json"
        check_writable_dir(out.parent)
        result = bench_engine(plan, config)
        atomic_write_json(out, result)
    print(summary_text(result))
    print(f"bench: {out}")
    return 0
