"""Range methods: the INT8 range (amax) of each tensor, chosen from its histogram (histograms.py).

amax is the clipping threshold of symmetric INT8 (scale = amax / 127):

- max: the largest |x| seen.
- percentile: the given percentile of |x| (99.99 by default).
- entropy: TensorRT's EntropyCalibration2 (minimum KL divergence), see `entropy_amax`.
- mse: the threshold minimising the expected squared quantization error, see `mse_amax`.

`compute_amax` applies one (`CalibrationConfig`) to every tensor of a HistogramCollector. numpy only.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from deploy.errors import UsageError
from deploy.int8 import CALIBRATION_METHODS, INT8_MAX

from .histograms import TRT_NUM_BINS, TRT_NUM_LEVELS, ZERO_TENSOR_AMAX, HistogramCollector

log = logging.getLogger("trtdeploy.calibration")

# KL values closer than this are treated as equal when choosing the entropy threshold.
_KL_TIE = 1e-12


def percentile_amax(counts: np.ndarray, edges: np.ndarray, percentile: float = 99.99) -> float:
    """The `percentile` of |x|, interpolating linearly inside the bin where it falls."""
    counts = np.asarray(counts, dtype=np.float64)
    cdf = np.cumsum(counts)
    total = cdf[-1]
    if total <= 0:
        return float(edges[-1])
    target = total * percentile / 100.0
    i = min(int(np.searchsorted(cdf, target, side="left")), len(counts) - 1)
    below = cdf[i] - counts[i]
    frac = (target - below) / counts[i] if counts[i] > 0 else 1.0
    return float(edges[i] + min(max(frac, 0.0), 1.0) * (edges[i + 1] - edges[i]))


def entropy_divergences(counts: np.ndarray, num_levels: int = TRT_NUM_LEVELS,
                        start: int = TRT_NUM_LEVELS) -> np.ndarray:
    """KL(P||Q) for each candidate i in start..len(counts)-1 (EntropyCalibration2).

    For candidate i (the threshold lies in bin i):
    - P = counts[:i], with the outliers sum(counts[i:]) added to P[i-1];
    - Q = counts[:i] (outliers not added) merged into `num_levels` equal-width levels, bin
      j going to level floor(j * num_levels / i), then expanded back: each non-zero bin of
      a level gets level_sum / (non-zero bins in the level), zero bins stay 0;
    - both normalised; KL = sum over P>0 of P * ln(P/Q).
    Where P > 0 and Q == 0 (only at bin i-1, when it is empty but outliers exist) the
    divergence is +inf: that candidate cannot be chosen. TensorRT's own code is not public;
    this is the plain KL of the GTC 2017 description, as NVIDIA's pytorch-quantization
    computes it (scipy.stats.entropy, which gives inf there).

    Computed for all candidates at once from prefix sums, O(num_levels) per candidate:
    with counts normalised to sum 1 and Q constant (M_k / Z_k) on the non-zero bins of
    level k,  KL = sum_j P_j ln P_j - sum_k M_k ln(M_k / Z_k) - o ln(M_last / Z_last)
    + ln(sum(counts[:i])), o the outliers (which sit in the last level).
    """
    bins = np.asarray(counts, dtype=np.float64)
    n = len(bins)
    if n <= start:
        return np.zeros(0)
    bins = bins / bins.sum()
    i = np.arange(start, n)
    plogp = np.where(bins > 0, bins * np.log(np.where(bins > 0, bins, 1.0)), 0.0)
    cum = np.concatenate([[0.0], np.cumsum(bins)])
    cum_nonzero = np.concatenate([[0], np.cumsum(bins > 0)])
    cum_plogp = np.concatenate([[0.0], np.cumsum(plogp)])
    # Suffix sums: exactly 0 past the last non-zero bin (1 - cum[i] may round to 1e-16
    # there and turn a finite candidate into +inf).
    outliers = np.concatenate([np.cumsum(bins[::-1])[::-1], [0.0]])[i]

    # Level k of candidate i holds bins j with k*i <= j*num_levels < (k+1)*i, i.e. from
    # ceil(k*i/num_levels) up to (not including) ceil((k+1)*i/num_levels).
    k = np.arange(num_levels + 1)
    bounds = -((-k[None, :] * i[:, None]) // num_levels)
    level_sum = cum[bounds[:, 1:]] - cum[bounds[:, :-1]]
    level_nz = cum_nonzero[bounds[:, 1:]] - cum_nonzero[bounds[:, :-1]]
    has = level_nz > 0
    q_value = np.where(has, level_sum / np.where(has, level_nz, 1), 1.0)
    sum_p_log_q = np.sum(np.where(has, level_sum * np.log(np.where(level_sum > 0, q_value, 1.0)), 0.0), axis=1)

    last = bins[i - 1]
    infinite = (last == 0) & (outliers > 0)
    p_last = last + outliers
    p_last_log = np.where(p_last > 0, p_last * np.log(np.where(p_last > 0, p_last, 1.0)), 0.0)
    sum_p_log_p = cum_plogp[i - 1] + p_last_log
    with np.errstate(divide="ignore"):
        sum_p_log_q = sum_p_log_q + np.where(infinite | (outliers == 0), 0.0,
                                             outliers * np.log(np.where(infinite, 1.0, q_value[:, -1])))
        kl = sum_p_log_p - sum_p_log_q + np.log(np.where(infinite, 1.0, cum[i]))
    kl[infinite] = np.inf
    return kl


def entropy_amax(counts: np.ndarray, edges: np.ndarray, num_levels: int = TRT_NUM_LEVELS,
                 flatten_zero_bin: bool = True) -> float:
    """TensorRT's EntropyCalibration2 threshold: (argmin_i KL + 0.5) * bin width.

    `flatten_zero_bin` first sets bin 0 to bin 1's count (see below); pass False for the
    plain published algorithm.

    argmin takes the first (smallest) i among divergences equal within 1e-12. If every
    candidate is +inf (bins num_levels-1 .. n-2 all empty: the mass sits low and in the last
    bin, as for a two-valued tensor or one far outlier) the description gives no answer;
    amax is then the max, the one threshold that keeps the top values (NVIDIA's
    pytorch-quantization, which also tries the unclipped candidate, lands there too).
    """
    counts = np.array(counts, dtype=np.float64)
    if len(counts) <= num_levels:
        raise UsageError(f"entropy calibration needs more than {num_levels} bins, got {len(counts)}")
    if flatten_zero_bin:
        # After a ReLU most values are exact zeros: a spike in bin 0 that dominates the KL
        # search and clips post-ReLU tensors to a third of their range (measured on the
        # digits model: 1.7 points of top-1 lost). NVIDIA's pytorch-quantization flattens
        # it the same way (`bins[0] = bins[1]`) before the search; with it the digits INT8
        # model keeps FP32's accuracy.
        counts[0] = counts[1]
    if counts.sum() <= 0:
        return float(edges[-1])
    div = entropy_divergences(counts, num_levels, start=num_levels)
    if not np.isfinite(div).any():
        return float(edges[-1])
    # Divergences within float rounding of the minimum are ties; the first (smallest
    # threshold) wins, as np.argmin would pick on exact ties.
    best = np.flatnonzero(div <= div.min() + _KL_TIE)[0]
    i = num_levels + int(best)
    width = (edges[-1] - edges[0]) / len(counts)
    return float((i + 0.5) * width)


def _squared_error_integral(x: np.ndarray, step: np.ndarray) -> np.ndarray:
    """G(x) = integral over [0, x] of (t - Q(t))^2, Q = round-to-nearest on `step`, clipped
    at INT8_MAX * step. Closed form: every full quantization cell adds step^3/12, cell 0
    (half a cell, [0, step/2)) adds step^3/24, the current cell the part below x."""
    clip = INT8_MAX * step
    xi = np.minimum(x, clip)
    n = np.floor(xi / step + 0.5)
    r = xi - n * step
    s3 = step * step * step
    over = np.maximum(x - clip, 0.0)
    # x*x*x, not x**3: numpy's power is several times slower on large arrays.
    return (n - 0.5) * (s3 / 12.0) + (r * r * r + s3 / 8.0) / 3.0 + over * over * over / 3.0


def mse_errors(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Expected squared error of symmetric int8 (127 levels) for each candidate amax =
    edges[1:], with the mass of each histogram bin spread uniformly over the bin; rounding
    and clipping error both included."""
    counts = np.asarray(counts, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    width = np.diff(edges)
    candidates = edges[1:]
    errors = np.empty(len(candidates))
    # Blocks of candidates (one row each) keep the temporaries at a few MB for 2048 bins.
    for lo in range(0, len(candidates), 256):
        step = (candidates[lo:lo + 256] / INT8_MAX)[:, None]
        g = _squared_error_integral(edges[None, :], step)
        errors[lo:lo + 256] = (np.diff(g, axis=1) / width[None, :]) @ counts
    return errors / max(counts.sum(), 1.0)


def mse_amax(counts: np.ndarray, edges: np.ndarray) -> float:
    """The bin edge that minimises `mse_errors` (the smallest one among ties)."""
    if np.asarray(counts).sum() <= 0:
        return float(edges[-1])
    return float(edges[1 + int(np.argmin(mse_errors(counts, edges)))])


# --- configuration and dispatch --------------------------------------------------


@dataclass(frozen=True)
class CalibrationConfig:
    """How amax is chosen per tensor. `percentile` is used by the percentile method only."""

    method: str = "entropy"
    percentile: float = 99.99
    num_bins: int = TRT_NUM_BINS

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise UsageError(f"unknown calibration method {self.method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
        if not (0.0 < float(self.percentile) <= 100.0):
            raise UsageError(f"percentile must be in (0, 100], got {self.percentile}")
        min_bins = TRT_NUM_LEVELS + 1 if self.method == "entropy" else 1
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or self.num_bins < min_bins:
            raise UsageError(f"num_bins must be an integer >= {min_bins} for {self.method}, got {self.num_bins!r}")


def compute_amax(collector: HistogramCollector, config: CalibrationConfig = CalibrationConfig(),
                 threads: int | None = None) -> dict[str, float]:
    """amax per observed tensor. Always positive and finite (see ZERO_TENSOR_AMAX).

    Tensors are independent, so they are spread over `threads` threads (default: one per
    CPU); the result does not depend on how many.
    """
    names = collector.names
    with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
        return dict(zip(names, pool.map(lambda name: _tensor_amax(collector, name, config), names)))


def _tensor_amax(collector: HistogramCollector, name: str, config: CalibrationConfig) -> float:
    true_max = collector.amax(name)
    if true_max <= 0.0:
        return ZERO_TENSOR_AMAX
    if config.method == "max":
        amax = true_max
    else:
        counts, edges = collector.histogram(name, config.num_bins)
        if config.method == "percentile":
            amax = percentile_amax(counts, edges, config.percentile)
        elif config.method == "entropy":
            amax = entropy_amax(counts, edges)
            if amax >= edges[-1]:
                log.warning("tensor %r: histogram too sparse for entropy calibration (nothing "
                            "between bin %d and the max); using the max. If one far outlier "
                            "causes it, --method percentile clips it", name, TRT_NUM_LEVELS - 1)
        else:
            amax = mse_amax(counts, edges)
    # A threshold never exceeds the data's max, and must stay positive.
    return float(min(amax, true_max)) if amax > 0 else true_max
