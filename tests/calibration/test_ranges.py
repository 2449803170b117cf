"""Range methods: known answers, the entropy method against a plain-loop reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.histograms import ZERO_TENSOR_AMAX, HistogramCollector
from calibration.ranges import (
    CalibrationConfig,
    compute_amax,
    entropy_amax,
    entropy_divergences,
    mse_amax,
    mse_errors,
    percentile_amax,
)
from deploy.errors import UsageError


def reference_entropy_threshold(hist: list[float], width: float, levels: int = 128) -> float:
    """EntropyCalibration2 as the GTC 2017 slides write it, with loops and nothing shared
    with the module: P = first i bins plus the outliers in the last; Q = the first i bins
    merged into `levels` levels (bin j -> level j*levels//i) and spread back over each
    level's non-zero bins; KL(P/sum P || Q/sum Q), +inf where P > 0 = Q; the first i
    within 1e-12 of the smallest KL; threshold (i + 0.5) * width."""
    n = len(hist)
    divergences = []
    for i in range(levels, n):
        p = [float(v) for v in hist[:i]]
        p[i - 1] += math.fsum(hist[i:])
        level_sum = [0.0] * levels
        level_nonzero = [0] * levels
        for j in range(i):
            lev = j * levels // i
            level_sum[lev] += hist[j]
            if hist[j] > 0:
                level_nonzero[lev] += 1
        q = [0.0] * i
        for j in range(i):
            if hist[j] > 0:
                lev = j * levels // i
                q[j] = level_sum[lev] / level_nonzero[lev]
        sp, sq = math.fsum(p), math.fsum(q)
        kl = 0.0
        for pj, qj in zip(p, q, strict=True):
            if pj == 0:
                continue
            if qj == 0:
                kl = math.inf
                break
            kl += (pj / sp) * math.log((pj / sp) / (qj / sq))
        divergences.append(kl)
    smallest = min(divergences)
    first = next(k for k, d in enumerate(divergences) if d <= smallest + 1e-12)
    return (levels + first + 0.5) * width


def _random_histograms():
    rng = np.random.default_rng(1234)
    hists = []
    # Activation-like shapes: half-normal, ReLU'd normal with a spike at 0, long tails.
    samples = [np.abs(rng.standard_normal(200_000)),
               np.maximum(rng.normal(0.3, 1.0, 200_000), 0.0),
               rng.lognormal(0.0, 0.8, 200_000),
               np.abs(rng.standard_t(3, 200_000))]
    for x in samples:
        counts, _ = np.histogram(x, bins=2048, range=(0.0, float(x.max())))
        hists.append(counts.astype(np.float64))
    # Decaying random counts, 20% of the bins emptied (many +inf candidates), sparse tail.
    for n, scale in ((512, 30.0), (2048, 150.0)):
        counts = rng.poisson(3000 * np.exp(-np.arange(n) / scale)).astype(np.float64)
        counts[rng.random(n) < 0.2] = 0
        counts[n // 2:] += rng.poisson(0.01, n - n // 2)
        hists.append(counts)
    return hists


def test_entropy_matches_reference_on_random_histograms():
    for counts in _random_histograms():
        amax = 7.0
        edges = np.linspace(0.0, amax, len(counts) + 1)
        ours = entropy_amax(counts, edges, flatten_zero_bin=False)
        ref = reference_entropy_threshold(counts.tolist(), amax / len(counts))
        assert ours == pytest.approx(ref, rel=1e-12), (ours / (amax / len(counts)), ref / (amax / len(counts)))
        # the default flattens bin 0 first (pytorch-quantization's bins[0] = bins[1])
        flat = counts.copy()
        flat[0] = flat[1]
        ref_flat = reference_entropy_threshold(flat.tolist(), amax / len(counts))
        assert entropy_amax(counts, edges) == pytest.approx(ref_flat, rel=1e-12)


def test_flattening_the_zero_bin_stops_relu_zeros_from_clipping():
    """Post-ReLU data: half exact zeros. The zero spike must not pull the threshold down."""
    rng = np.random.default_rng(7)
    x = np.maximum(rng.standard_normal(400_000), 0.0)
    counts, edges = np.histogram(x, bins=2048, range=(0.0, float(x.max())))
    plain = entropy_amax(counts, edges, flatten_zero_bin=False)
    flat = entropy_amax(counts, edges)
    assert flat > plain


def test_reference_comparison_covers_infinite_candidates_and_inner_thresholds():
    # Guards the comparison above against trivial agreement (everything at the last bin,
    # no +inf candidates exercised).
    chosen, with_inf = set(), 0
    for counts in _random_histograms():
        edges = np.linspace(0.0, 1.0, len(counts) + 1)
        chosen.add(int(entropy_amax(counts, edges, flatten_zero_bin=False) * len(counts)))
        with_inf += bool(np.isinf(entropy_divergences(counts)).any())
    assert len(chosen) >= 5 and min(chosen) < 0.8 * 2048 and with_inf >= 2


def test_entropy_two_valued_tensor_keeps_the_max():
    counts = np.zeros(2048)
    counts[0], counts[-1] = 1000, 10
    edges = np.linspace(0.0, 4.0, 2049)
    assert entropy_amax(counts, edges) == 4.0


def _collector(name: str, x: np.ndarray) -> HistogramCollector:
    c = HistogramCollector()
    c.update(name, x)
    return c


def test_max_is_the_largest_magnitude():
    x = np.array([[0.5, -3.25], [2.0, 1.0]], dtype=np.float32)
    assert compute_amax(_collector("t", x), CalibrationConfig("max")) == {"t": 3.25}


def test_percentile_of_uniform_matches_the_quantile():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 2.0, 400_000)
    c = _collector("u", x)
    counts, edges = c.histogram("u")
    for q in (50.0, 90.0, 99.0):
        assert percentile_amax(counts, edges, q) == pytest.approx(np.percentile(np.abs(x), q), rel=2e-3)
    assert percentile_amax(counts, edges, 100.0) == pytest.approx(np.abs(x).max())


@pytest.mark.parametrize("method", ["entropy", "mse"])
def test_uniform_magnitudes_keep_nearly_the_whole_range(method):
    rng = np.random.default_rng(1)
    x = rng.uniform(-3.0, 3.0, 500_000)
    amax = compute_amax(_collector("u", x), CalibrationConfig(method))["u"]
    assert 0.98 * np.abs(x).max() <= amax <= np.abs(x).max()


def test_outliers_are_clipped_except_by_max():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1_000_000)
    x[:4] = [60.0, -55.0, 58.0, -61.0]
    c = _collector("g", x)
    got = {m: compute_amax(c, CalibrationConfig(m))["g"] for m in ("max", "percentile", "entropy", "mse")}
    assert got["max"] == 61.0
    assert got["percentile"] < 5.0
    assert got["entropy"] < 10.0
    # MSE weighs the outliers' squared clipping error, so it keeps more range, but still
    # far less than the max.
    assert got["mse"] < 0.6 * got["max"]
    assert got["entropy"] > 2.5 and got["percentile"] > 3.0


def test_mse_picks_the_minimum_of_its_error_curve():
    rng = np.random.default_rng(3)
    counts, edges = np.histogram(np.abs(rng.laplace(size=100_000)), bins=256)
    errors = mse_errors(counts, edges)
    assert mse_amax(counts, edges) == edges[1 + int(np.argmin(errors))]
    # Clipping at the first edge loses almost everything; no clipping has rounding error
    # only: the curve must be far above the minimum at the low end.
    assert errors[0] > 10 * errors.min()


def test_mse_error_model_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(4)
    x = np.abs(rng.standard_normal(400_000))
    counts, edges = np.histogram(x, bins=512)
    errors = mse_errors(counts, edges)
    for k in (100, 300, 511):
        amax = edges[k + 1]
        step = amax / 127
        q = np.clip(np.round(x / step), 0, 127) * step
        assert errors[k] == pytest.approx(np.mean((x - q) ** 2), rel=0.05)


def test_all_zero_tensor_gets_a_tiny_positive_amax():
    c = HistogramCollector()
    c.update("z", np.zeros((4, 8)))
    c.update("z", np.zeros(3))
    for method in ("max", "percentile", "entropy", "mse"):
        amax = compute_amax(c, CalibrationConfig(method))["z"]
        assert amax == ZERO_TENSOR_AMAX and 0 < amax < 0.01 and math.isfinite(amax)
    counts, _ = c.histogram("z")
    assert counts[0] == 35 and counts[1:].sum() == 0


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "kl"}, "entropy, max, percentile, mse"),
    ({"method": "percentile", "percentile": 0.0}, r"\(0, 100\]"),
    ({"percentile": 100.5}, r"\(0, 100\]"),
    ({"num_bins": 64}, "num_bins"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(UsageError, match=match):
        CalibrationConfig(**kwargs)
