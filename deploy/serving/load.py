"""`trtdeploy bench --triton URL`: a bounded load test against a live Triton server.

C client threads, each with its own tritonclient (gevent connections are per thread), send
requests back to back until K requests in all are answered or S seconds have passed. Reported:
throughput, latency min/p50/p90/p99/max (wall time of each request, at the client), errors by
kind with one example each, and the server's own view from `/v2/models/NAME/stats` over the
run (the difference of the counters before and after, as perf_analyzer reports it): requests,
executions and the batch sizes it formed, and the average queue and compute time per request,
for the model and, for an ensemble, each of its steps.

Inputs are the bundle's: reference.npz rows for a tensor model, the encoded --data files for a
model taking image bytes; request k sends sample k mod N, so a caller can check every answer.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UsageError
from ..runners.triton import ServerError, TritonRunner, server_message


@dataclass(frozen=True)
class LoadConfig:
    concurrency: int
    requests: int | None = None  # in all, over every client
    duration_s: float | None = None
    batch: int = 1  # samples per request

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError(f"--concurrency {self.concurrency}: give at least 1 client")
        if (self.requests is None) == (self.duration_s is None):
            raise UsageError("give one of --requests K (in all) or --duration S to bound the load test")
        if self.requests is not None and self.requests < 1:
            raise UsageError(f"--requests {self.requests}: give at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise UsageError(f"--duration {self.duration_s}: give a positive number of seconds")
        if self.batch < 1:
            raise UsageError(f"--batch {self.batch}: give at least 1 sample per request")


@dataclass
class Answer:
    index: int  # which request (its sample is index mod the number of samples)
    latency_ms: float
    outputs: dict[str, np.ndarray] | None  # None for an error
    error: str | None = None


def error_kind(message: str) -> str:
    """A short kind for grouping: the server's message up to its first detail."""
    text = message.split(": ", 1)[-1].lower()
    for kind, words in (("timeout", ("timed out", "timeout")), ("connection", ("connection", "refused", "reset")),
                        ("unavailable", ("unavailable", "not ready")), ("bad request", ("expected", "unexpected",
                                                                                        "must be", "invalid"))):
        if any(w in text for w in words):
            return kind
    return "server error"


def _stats(runner: TritonRunner, models: Sequence[str]) -> dict[str, dict[str, Any]]:
    client = runner.clients.get()
    out = {}
    for m in models:
        got = client.get_inference_statistics(m)
        out[m] = got["model_stats"][0] if got.get("model_stats") else {}
    return out


def _settled_stats(runner: TritonRunner, models: Sequence[str], before: dict[str, dict[str, Any]], answered: int,
                   wait_s: float = 2.0) -> dict[str, dict[str, Any]]:
    """The statistics once the server has counted every request it answered.

    Triton sends a response before it records the request's statistics (an ensemble's success
    count lagged its last two answers in a run of 1600), so read again, for at most `wait_s`,
    until the first model's success count covers every answered request."""
    deadline = time.perf_counter() + wait_s
    while True:
        after = _stats(runner, models)
        counted = _ns(after[models[0]], "success")[0] - _ns(before[models[0]], "success")[0]
        if counted >= answered or time.perf_counter() >= deadline:
            return after
        time.sleep(0.02)


def _ns(stats: dict[str, Any], key: str) -> tuple[int, int]:
    d = stats.get("inference_stats", {}).get(key, {})
    return int(d.get("count", 0)), int(d.get("ns", 0))


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the server counted during the run: requests, executions, batch sizes, mean times."""
    success = _ns(after, "success")[0] - _ns(before, "success")[0]
    out: dict[str, Any] = {"requests": success,
                           "executions": int(after.get("execution_count", 0)) - int(before.get("execution_count", 0)),
                           "inferences": int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))}
    for key in ("queue", "compute_input", "compute_infer", "compute_output"):
        count = _ns(after, key)[0] - _ns(before, key)[0]
        ns = _ns(after, key)[1] - _ns(before, key)[1]
        out[f"{key}_us_per_request"] = ns / count / 1e3 if count else None
    old = {int(b["batch_size"]): int(b.get("compute_infer", {}).get("count", 0)) for b in before.get("batch_stats", [])}
    batches = {}
    for b in after.get("batch_stats", []):
        n = int(b.get("compute_infer", {}).get("count", 0)) - old.get(int(b["batch_size"]), 0)
        if n:
            batches[int(b["batch_size"])] = n
    out["batch_sizes"] = dict(sorted(batches.items()))  # batch size -> executions of that size
    return out


def _steps(runner: TritonRunner) -> list[str]:
    steps = (runner.config.get("ensemble_scheduling") or {}).get("step") or []
    return [runner.model] + [s["model_name"] for s in steps]


def run_load(runner: TritonRunner, samples: Callable[[int, int], dict[str, np.ndarray]], config: LoadConfig,
             keep_answers: bool = False) -> tuple[dict[str, Any], list[Answer]]:
    """The load test's numbers, and (`keep_answers`) every request's answer, ordered by index.

    `samples(k, n)`: the feed of request k (n samples each)."""
    runner.activate()
    models = _steps(runner)
    before = _stats(runner, models)
    counter, lock = itertools.count(), threading.Lock()
    answers: list[Answer] = []
    deadline = None if config.duration_s is None else time.perf_counter() + config.duration_s

    def client() -> None:
        while True:
            with lock:
                k = next(counter)
            if (config.requests is not None and k >= config.requests) or (deadline and time.perf_counter() >= deadline):
                return
            feed = samples(k, config.batch)
            t0 = time.perf_counter()
            try:
                out, err = runner.request(feed), None
            except ServerError as e:
                out, err = None, server_message(e)
            a = Answer(k, (time.perf_counter() - t0) * 1e3, out if keep_answers else None, err)
            with lock:
                answers.append(a)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"triton-load-{i}") for i in range(config.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    after = _settled_stats(runner, models, before, sum(a.error is None for a in answers))
    answers.sort(key=lambda a: a.index)
    return _result(runner, config, answers, wall, {m: stats_delta(before[m], after[m]) for m in models}), answers


def _result(runner: TritonRunner, config: LoadConfig, answers: list[Answer], wall: float,
            server: dict[str, Any]) -> dict[str, Any]:
    from ..runners.timing import summarize_ms
    from ..env import machine_info

    ok = [a.latency_ms for a in answers if a.error is None]
    kinds: dict[str, dict[str, Any]] = {}
    for kind, message in ((error_kind(a.error), a.error) for a in answers if a.error is not None):
        entry = kinds.setdefault(kind, {"count": 0, "example": message})
        entry["count"] += 1
    lat = summarize_ms(ok) if ok else None
    return {"url": runner.clients.url, "model": runner.model, "concurrency": config.concurrency,
            "batch": config.batch, "requests_asked": config.requests, "duration_asked_s": config.duration_s,
            "requests_sent": len(answers), "requests_ok": len(ok), "wall_s": wall,
            "throughput_requests_per_s": len(ok) / wall if wall else None,
            "throughput_samples_per_s": len(ok) * config.batch / wall if wall else None,
            "latency_ms": None if lat is None else {"min": lat["min"], "p50": lat["median"], "p90": lat["p90"],
                                                    "p99": lat["p99"], "max": lat["max"], "mean": lat["mean"]},
            "errors": kinds, "server": server, "machine": machine_info().to_json()}


def summary_text(result: dict[str, Any]) -> str:
    lines = [f"Triton {result['url']} model {result['model']}: {result['requests_ok']}/{result['requests_sent']} "
             f"requests answered by {result['concurrency']} clients in {result['wall_s']:.2f} s"]
    if result["throughput_requests_per_s"] is not None:
        lines.append(f"  throughput {result['throughput_requests_per_s']:.1f} requests/s "
                     f"({result['throughput_samples_per_s']:.1f} samples/s)")
    lat = result["latency_ms"]
    if lat:
        lines.append("  latency ms: " + ", ".join(f"{k} {lat[k]:.2f}" for k in ("min", "p50", "p90", "p99", "max")))
    for kind, e in result["errors"].items():
        lines.append(f"  errors ({kind}): {e['count']}, e.g. {e['example']}")
    for model, s in result["server"].items():
        queue, infer = s["queue_us_per_request"], s["compute_infer_us_per_request"]
        lines.append(f"  server {model}: {s['requests']} requests in {s['executions']} executions, batch sizes "
                     f"{s['batch_sizes'] or '-'}; queue {_us(queue)}, compute {_us(infer)} per request")
    return "\n".join(lines)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} us"


def bundle_samples(bundle, runner: TritonRunner, data=None) -> tuple[Callable[[int, int], dict[str, np.ndarray]], str]:
    """`samples(k, n)` for `run_load` and what they are: the encoded --data files for a model taking
    bytes; else the rows of --data (any input set) or of reference.npz."""
    from ..data.inputs import InputSet
    from ..data.preprocess import Preprocess
    from ..bundle.reference import load_reference_npz
    from .live import image_paths

    (spec,) = runner.input_specs()
    if runner.takes_bytes():
        paths = image_paths(bundle, data, None, 0, False)
        if isinstance(paths, str):
            raise UsageError(f"--triton-model {runner.model}: {paths}")
        pool = [np.array([p.read_bytes()], dtype=np.object_) for p in paths]
        what = f"{len(pool)} encoded images of {data}"
    elif data is not None:
        dataset = InputSet.from_path(data, input=bundle.inputs[0], preprocess=Preprocess.from_json(bundle.preprocessing))
        pool = [row for feed in dataset.batches(64, desc=None) for row in feed[bundle.inputs[0].name]]
        what = f"{len(pool)} inputs of {data}"
    else:
        pool = list(load_reference_npz(bundle)["input"].astype(spec.dtype))
        what = f"the {len(pool)} inputs of reference.npz"

    def samples(k: int, n: int) -> dict[str, np.ndarray]:
        rows = [pool[(k * n + j) % len(pool)] for j in range(n)]
        return {spec.name: np.ascontiguousarray(np.stack(rows))}
    return samples, what


def bench_triton(args) -> int:
    """The CLI's `bench --triton`: run, print, write BUNDLE/reports/bench.triton.MODEL.json."""
    from ..bundle import open_bundle
    from ..fsutil import atomic_write_json, check_writable_dir

    if not args.triton:
        raise UsageError("--requests bounds a load test of a Triton server; add --triton URL (engines take --iters)")
    for flag in ("engine", "iters", "warmup", "cuda_graph"):
        if getattr(args, flag, None) not in (None, False):
            raise UsageError(f"--{flag.replace('_', '-')} is for engines; a Triton load test takes --concurrency, "
                             "--requests or --duration, --batch")
    bundle = open_bundle(args.bundle, verify=args.verify)
    config = LoadConfig(args.concurrency, args.requests, args.duration, args.batch or 1)
    runner = TritonRunner(args.triton, args.triton_model or bundle.model_name)
    out = Path(args.out or bundle.reports_dir / f"bench.triton.{runner.model}.json")
    inside = out.resolve().is_relative_to(bundle.root.resolve())
    with bundle.update("bench") if inside else bundle.reading("bench"):  # the report goes in, or only reads
        check_writable_dir(out.parent)
        with runner:
            samples, what = bundle_samples(bundle, runner, args.data)
            result, _ = run_load(runner, samples, config)
        result["inputs"] = what
        atomic_write_json(out, result)
    print(summary_text(result))
    print(f"bench: {out}")
    return 1 if result["errors"] else 0
