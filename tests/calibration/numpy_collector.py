"""The numpy histogram collector that calibration.histograms replaced (commit 20a5f22, unchanged but
for this header and its imports): the reference its compiled pass must match bit for bit.

Binning by numpy calls over blocks of values (a float64 product, np.bincount), the range of
each step from x.max() and x.min() first, a Relu output from its input's values through one
signed histogram when both have the same range and a second pass when not.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from calibration.histograms import TRT_NUM_BINS, ZERO_TENSOR_AMAX
from deploy.errors import CalibrationError, UsageError

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

