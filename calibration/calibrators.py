"""Activation statistics and the calibrators that turn them into INT8 ranges (amax).

`HistogramCollector` streams batches of activations into per-tensor statistics of |x|
(bounded memory: nothing is stored but a histogram and a max per tensor). The methods
then choose amax, the clipping threshold of symmetric INT8 (scale = amax / 127):

- max: the largest |x| seen.
- percentile: the given percentile of |x| (99.99 by default).
- entropy: TensorRT's EntropyCalibration2 (minimum KL divergence), see `entropy_amax`.
- mse: the threshold minimising the expected squared quantization error, see `mse_amax`.

numpy only.
"""
from __future__ import annotations

import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from deploy.errors import CalibrationError, UsageError
from deploy.int8 import CALIBRATION_METHODS, INT8_MAX

log = logging.getLogger("trtdeploy.calibration")

TRT_NUM_BINS = 2048
TRT_NUM_LEVELS = 128  # the non-negative half of int8: |x| maps to 0..127

# amax for a tensor that was all zeros in calibration. Zero quantizes to zero exactly under
# any scale, so the value matters only for non-zeros inference sees that calibration did
# not; it must be positive (a zero scale divides by zero in QuantizeLinear and TensorRT
# rejects it). scale = amax/127 = 2**-14 is the smallest normal float16, so the scale is
# exact in float32 and survives FP16 models too.
ZERO_TENSOR_AMAX = INT8_MAX * 2.0**-14

# KL values closer than this are treated as equal when choosing the entropy threshold.
_KL_TIE = 1e-12

# Values per range step: `top` is set and grown from the max of each step of this many values
# of an update (a whole batch of all but the largest activations).
_CHUNK = 1 << 22
# Values binned per numpy call: the per-thread scratch (int64 indices + the values) stays in
# cache and is allocated once, so binning makes no temporaries the size of an activation.
_BLOCK = 1 << 16


@dataclass
class _Stats:
    amax: float = 0.0
    count: int = 0
    pending_zeros: int = 0  # zeros seen before any non-zero fixed the range
    top: float = 0.0  # the fine histogram covers [0, top]; 0 until a non-zero arrives
    counts: np.ndarray | None = field(default=None, repr=False)

    def step(self, hi: float, size: int, fine_bins: int) -> bool:
        """Account for `size` values of magnitude at most `hi`: count, max, and the range
        (set at the first non-zero, doubled while `hi` exceeds it, merging bin pairs).
        False when the values need no binning (all zeros before any non-zero)."""
        self.count += size
        self.amax = max(self.amax, hi)
        if self.counts is None:
            if hi == 0.0:
                self.pending_zeros += size
                return False
            self.top = hi
            self.counts = np.zeros(fine_bins, dtype=np.int64)
            self.counts[0] = self.pending_zeros
            self.pending_zeros = 0
        while hi > self.top:
            self.counts = np.concatenate([self.counts.reshape(-1, 2).sum(axis=1),
                                          np.zeros(fine_bins // 2, dtype=np.int64)])
            self.top *= 2.0
        return True

    def add(self, bins: np.ndarray) -> None:
        """Add fine_bins + 1 counts: the last one (values equal to top) belongs to the top bin."""
        self.counts += bins[:-1]
        self.counts[-1] += bins[-1]


class _Scratch(threading.local):
    """Per-thread binning buffers, so collector updates of different tensors may run in parallel."""

    def buffers(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        have = getattr(self, "values", None)
        if have is None or have.dtype != dtype or len(have) < _BLOCK:
            self.values = np.empty(_BLOCK, dtype=dtype)
            self.index = np.empty(_BLOCK, dtype=np.intp)
        return self.values, self.index


_SCRATCH = _Scratch()


def _bin_magnitudes(x: np.ndarray, scale: float, fine_bins: int, relu: bool = False) -> np.ndarray:
    """Counts of floor(|x| * scale) (of floor(max(x, 0) * scale) with `relu`) over 0..fine_bins.

    The product is taken in float64, as floor(|x| * fine_bins / top) of float32 or float64 x
    with |x| <= top: a float64 product never rounds across an integer there (its error is
    below 2**-37 at 2**15, and a non-integer x * fine_bins / top is at least 2**-24 from the
    next integer for 24-bit mantissas), so every value lands in the bin exact arithmetic gives.
    """
    values, index = _SCRATCH.buffers(x.dtype)
    s = np.float64(scale)  # a numpy float64 scalar: float32 inputs are multiplied in float64 (NEP 50)
    out = np.zeros(fine_bins + 1, dtype=np.int64)
    for start in range(0, x.size, _BLOCK):
        block = x[start:start + _BLOCK]
        n = block.size
        if relu:
            np.maximum(block, 0, out=values[:n])
        else:
            np.abs(block, out=values[:n])
        np.multiply(values[:n], s, out=index[:n], casting="unsafe")  # truncation = floor for >= 0
        out += np.bincount(index[:n], minlength=fine_bins + 1)
    return out


def _bin_signed(x: np.ndarray, scale: float, fine_bins: int) -> np.ndarray:
    """Counts of trunc(x * scale) + fine_bins over 0..2*fine_bins (|x| * scale <= fine_bins).

    Truncation is symmetric, so the bins fold exactly into those of |x| (k and -k) and of
    max(x, 0) (every bin at or below zero becomes bin 0): one pass serves a tensor and its Relu.
    """
    _, index = _SCRATCH.buffers(x.dtype)
    s = np.float64(scale)
    out = np.zeros(2 * fine_bins + 1, dtype=np.int64)
    for start in range(0, x.size, _BLOCK):
        block = x[start:start + _BLOCK]
        n = block.size
        np.multiply(block, s, out=index[:n], casting="unsafe")
        index[:n] += fine_bins
        out += np.bincount(index[:n], minlength=2 * fine_bins + 1)
    return out


def _fold_abs(signed: np.ndarray, fine_bins: int) -> np.ndarray:
    """|x| counts (0..fine_bins) from `_bin_signed` counts."""
    out = signed[fine_bins:].copy()
    out[1:] += signed[fine_bins - 1::-1]
    return out


def _fold_relu(signed: np.ndarray, fine_bins: int) -> np.ndarray:
    """max(x, 0) counts (0..fine_bins) from `_bin_signed` counts."""
    out = signed[fine_bins:].copy()
    out[0] = signed[:fine_bins + 1].sum()
    return out


class HistogramCollector:
    """Streaming histogram of |x| per tensor name, whose range grows as needed.

    Each tensor keeps `fine_bins` (a power of two) equal bins over [0, top]. `top` starts
    at the first non-zero batch's max; when a larger value arrives, `top` doubles (as
    often as needed) and pairs of neighbouring bins merge. The new bins are unions of old
    ones, so growing loses no information beyond the coarser resolution. (A batch larger
    than _CHUNK values is taken in steps of _CHUNK for this.) A value v lands in fine bin
    floor(|v| * fine_bins / top), computed exactly (see `_bin_magnitudes`), the values
    equal to top in the last bin.

    `histogram(name, bins)` re-bins to `bins` equal bins over [0, amax] by linear
    interpolation of the cumulative counts, i.e. each fine bin's count is split between
    the target bins it straddles in proportion to the overlap (uniform density within a
    fine bin). Because amax > top/2, every target bin spans at least fine_bins/(2*bins)
    fine bins (8 by default for 2048 target bins): counts can move by at most one fine
    bin, i.e. 1/8 of a target bin. When the range never grew, top == amax and the target
    edges fall on fine edges, so the re-binned histogram is exact.
    """

    def __init__(self, fine_bins: int = 16 * TRT_NUM_BINS):
        if fine_bins < 2 or fine_bins & (fine_bins - 1):
            raise UsageError(f"fine_bins must be a power of two >= 2, got {fine_bins}")
        self.fine_bins = fine_bins
        self._stats: dict[str, _Stats] = {}

    @property
    def names(self) -> list[str]:
        return list(self._stats)

    def __contains__(self, name: str) -> bool:
        return name in self._stats

    def declare(self, names: Sequence[str]) -> None:
        """Create the (empty) statistics of `names` in this order, before updates from threads."""
        for name in names:
            self._stats.setdefault(name, _Stats())

    def update(self, name: str, array: np.ndarray, relu_outputs: Sequence[str] = ()) -> None:
        """Add the values of `array` (any shape) to the statistics of tensor `name`, and those of
        Relu(array) to each tensor named in `relu_outputs`.

        The Relu outputs get exactly what updating them with max(array, 0) would add, without
        that array being made; where a Relu output's range equals its input's, one binning
        pass serves both. Updates of different tensors may run in parallel threads (numpy
        releases the GIL while binning) once `declare` has created them.
        """
        st = self._stats.setdefault(name, _Stats())
        relus = [self._stats.setdefault(r, _Stats()) for r in relu_outputs]
        flat = np.asarray(array).reshape(-1)
        if flat.dtype not in (np.float32, np.float64):
            flat = flat.astype(np.float64)
        for start in range(0, flat.size, _CHUNK):
            self._update_chunk(name, st, relus, flat[start:start + _CHUNK])

    def _update_chunk(self, name: str, st: _Stats, relus: list[_Stats], x: np.ndarray) -> None:
        if x.size == 0:
            return
        hi_pos, lo = float(x.max()), float(x.min())
        if not (math.isfinite(hi_pos) and math.isfinite(lo)):
            raise CalibrationError(
                f"tensor {name!r}: non-finite values (inf/NaN) in calibration activations; "
                "check the calibration inputs and their preprocessing"
            )
        fine = self.fine_bins
        hi = max(hi_pos, -lo)
        hi_relu = hi_pos if hi_pos > 0.0 else 0.0
        binned = st.step(hi, x.size, fine)
        shared, own = [], []  # Relu outputs on the input's grid, and on a grid of their own
        for r in relus:
            if not r.step(hi_relu, x.size, fine):
                continue
            if hi_relu == 0.0:
                r.counts[0] += x.size
            else:
                (shared if binned and r.top == st.top else own).append(r)
        if binned and hi == 0.0:
            st.counts[0] += x.size
        elif shared:
            signed = _bin_signed(x, fine / st.top, fine)
            st.add(_fold_abs(signed, fine))
            relu = _fold_relu(signed, fine)
            for r in shared:
                r.add(relu)
        elif binned:
            st.add(_bin_magnitudes(x, fine / st.top, fine))
        for r in own:
            r.add(_bin_magnitudes(x, fine / r.top, fine, relu=True))

    def _get(self, name: str) -> _Stats:
        try:
            return self._stats[name]
        except KeyError:
            raise CalibrationError(f"no statistics for tensor {name!r}; it was never observed") from None

    def amax(self, name: str) -> float:
        return self._get(name).amax

    def count(self, name: str) -> int:
        return self._get(name).count

    def histogram(self, name: str, bins: int = TRT_NUM_BINS) -> tuple[np.ndarray, np.ndarray]:
        """(counts float64 [bins], edges float64 [bins+1]) of |x| over [0, amax].

        For an all-zero tensor the range is [0, ZERO_TENSOR_AMAX] with every count in bin 0.
        """
        st = self._get(name)
        if st.counts is None:
            counts = np.zeros(bins)
            counts[0] = st.pending_zeros
            return counts, np.linspace(0.0, ZERO_TENSOR_AMAX, bins + 1)
        fine_width = st.top / self.fine_bins
        # Fine bins past the one holding amax are empty; that one ends at amax, not at its
        # nominal edge, so the interpolation keeps its whole count inside [0, amax].
        last = min(int(st.amax / fine_width), self.fine_bins - 1)
        fine_edges = np.arange(last + 2, dtype=np.float64) * fine_width
        fine_edges[-1] = st.amax
        cdf = np.concatenate([[0.0], np.cumsum(st.counts[:last + 1], dtype=np.float64)])
        edges = np.linspace(0.0, st.amax, bins + 1)
        # Interpolating a non-decreasing CDF can still round to -1e-13 somewhere: clamp.
        return np.maximum(np.diff(np.interp(edges, fine_edges, cdf)), 0.0), edges


# --- methods -------------------------------------------------------------------


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
