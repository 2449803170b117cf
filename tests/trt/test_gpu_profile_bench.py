"""`trtdeploy profile` and `trtdeploy bench` on real engines of the default bundle (or
TRTDEPLOY_TEST_BUNDLE). Needs TensorRT and a CUDA device (`gpu` marker)."""
from __future__ import annotations

import json

import pytest

from .test_gpu_engines import bundle  # noqa: F401 - the module's bundle fixture

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def engines(bundle, tmp_path_factory):  # noqa: F811
    from deploy.trt.build import BuildConfig, build_engine

    cache = tmp_path_factory.mktemp("timing") / "timing.cache"
    return {p: build_engine(bundle, BuildConfig(precision=p, batch=(1, 4, 8), timing_cache=cache))
            for p in ("fp16", "int8")}


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_profile_reports_every_layer(bundle, engines, precision, capsys):  # noqa: F811
    from deploy.cli import main
    from deploy.parity.layer_timing import load_profiles, profile_path

    plan = engines[precision]
    assert main(["profile", str(bundle.root), "--engine", str(plan), "--batch", "1", "--iters", "20"]) == 0
    result = json.loads(profile_path(bundle.reports_dir, plan).read_text())
    print(capsys.readouterr().out)
    assert result["calls"] == 20 and len(result["layers"]) > 5
    assert sum(r["share"] for r in result["layers"]) == pytest.approx(1.0)
    medians = [r["median_ms"] for r in result["layers"]]
    assert medians == sorted(medians, reverse=True) and medians[0] > 0
    assert result["machine"]["gpu"]["compute_capability"].startswith("sm_")
    assert any(p.engine == str(plan) and not p.stale for p in load_profiles(bundle.reports_dir))


@pytest.mark.parametrize("options", [[], ["--cuda-graph"], ["--streams", "2"]])
def test_bench_measures_the_engine(bundle, engines, options, tmp_path, capsys):  # noqa: F811
    from deploy.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", str(bundle.root), "--engine", str(engines["int8"]), "--batch", "1", "--iters", "200",
                 "--warmup", "0.2", "--out", str(out), *options]) == 0
    print(capsys.readouterr().out)
    r = json.loads(out.read_text())
    streams = 2 if "--streams" in options else 1
    assert r["calls"] == 200 * streams and r["throughput"]["images_per_s"] > 0
    assert 0 < r["gpu_compute_ms"]["median"] <= r["host_latency_ms"]["median"]
    assert r["h2d_ms"]["median"] > 0 and r["d2h_ms"]["median"] > 0
    # a call's wall time contains its GPU time (the runner synchronizes), so the overhead is >= 0
    # up to the disagreement of the host clock and CUDA events (microseconds)
    assert r["runner_overhead_ms"]["min"] > -0.01
    assert r["wall_ms"]["median"] >= r["gpu_compute_ms"]["median"]
    if "--cuda-graph" in options:
        assert r["cuda_graph"]["used"] or r["cuda_graph"]["fallback"]


def test_cuda_graphs_replay_full_and_remainder_batches_like_plain_runs(bundle, engines):  # noqa: F811
    """Batches above the profile's 8 split into 8, 8, 3, again and again (parity's and infer's
    path): with graphs, each shape replays on its own context and gives what a plain run gives."""
    import numpy as np

    from deploy.trt.runtime import TrtRunner

    (tensor,) = bundle.inputs
    x = np.random.default_rng(0).standard_normal((19, *tensor.shape[1:]), dtype=np.float32)
    with TrtRunner(engines["fp16"], timing=False) as plain:
        want = plain.infer_any_batch({tensor.name: x})
    with TrtRunner(engines["fp16"], timing=False, cuda_graph=True) as graphed:
        for _ in range(3):
            got = graphed.infer_any_batch({tensor.name: x})
            for name, value in want.items():
                # a replay runs the captured kernels on the same inputs: equal but for reductions whose order
                # a kernel leaves free (atomics), a few FP16 roundings of 2^-11 = 4.9e-4 each: 1e-3 allows two
                np.testing.assert_allclose(got[name], value, rtol=1e-3, atol=1e-3)
        assert graphed.graph_fallback is None, graphed.graph_fallback
