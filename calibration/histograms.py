"""Streaming histograms of activations, per tensor: what the range methods (ranges.py) choose from.

`HistogramCollector` takes batches of activations and keeps, per tensor, a histogram of |x|
and its max (bounded memory: nothing else is stored). Each batch is binned by one compiled
pass per tensor (calibration.binning), which also finds the range, and a Relu output's
histogram comes from its input's values in the same pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from deploy.errors import CalibrationError, UsageError
from deploy.int8 import INT8_MAX

TRT_NUM_BINS = 2048
TRT_NUM_LEVELS = 128  # the non-negative half of int8: |x| maps to 0..127

# amax for a tensor that was all zeros in calibration. Zero quantizes to zero exactly under
# any scale, so the value matters only for non-zeros inference sees that calibration did
# not; it must be positive (a zero scale divides by zero in QuantizeLinear and TensorRT
# rejects it). scale = amax/127 = 2**-14 is the smallest normal float16, so the scale is
# exact in float32 and survives FP16 models too.
ZERO_TENSOR_AMAX = INT8_MAX * 2.0**-14

# Values per range step: `top` is set and grown from the max of each step of this many values
# of an update (a whole batch of all but the largest activations).
_CHUNK = 1 << 22


@dataclass
class _Stats:
    amax: float = 0.0
    count: int = 0
    pending_zeros: int = 0  # zeros seen before any non-zero fixed the range
    top: float = 0.0  # the fine histogram covers [0, top]; 0 until a non-zero arrives
    counts: np.ndarray | None = field(default=None, repr=False)
    # Values of the open range step binned at the top of the range (one past the last fine bin):
    # they go to the last bin when the step ends, to the bin they fall in if the range grows first.
    at_top: int = 0
    # Values of an open step that has no range yet and no known max (see `update_part`).
    held: list = field(default_factory=list, repr=False)

    def step(self, hi: float, size: int, fine_bins: int) -> bool:
        """Account for `size` values of magnitude at most `hi`: count, max, and the range
        (set at the first non-zero, doubled while `hi` exceeds it, merging bin pairs; doubling
        k times maps bin j to j >> k exactly, the values at the top to fine_bins >> k).
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
        doublings = 0
        while hi > self.top:
            self.counts = np.concatenate([self.counts.reshape(-1, 2).sum(axis=1),
                                          np.zeros(fine_bins // 2, dtype=np.int64)])
            self.top *= 2.0
            doublings += 1
        if doublings and self.at_top:
            self.counts[fine_bins >> doublings] += self.at_top
            self.at_top = 0
        return True

    def end_step(self) -> None:
        if self.at_top:
            self.counts[-1] += self.at_top
            self.at_top = 0


def _scale(name: str, fine_bins: int, top: float) -> float:
    scale = fine_bins / top
    if not math.isfinite(scale):  # a float64 tensor whose largest |x| is below ~1e-304
        raise CalibrationError(f"tensor {name!r}: activations too close to zero to bin ({top:g}); check the model")
    return scale


def non_finite(name: str) -> CalibrationError:
    return CalibrationError(f"tensor {name!r}: non-finite values (inf/NaN) in calibration activations; "
                            "check the calibration inputs and their preprocessing")


def flat_values(array: np.ndarray) -> np.ndarray:
    """`array` as the contiguous 1-D float32/float64 values the collector bins."""
    flat = np.ascontiguousarray(np.asarray(array).reshape(-1))
    return flat if flat.dtype in (np.float32, np.float64) else flat.astype(np.float64)


def range_steps(offset: int, size: int, total: int) -> list[tuple[int, int, int]]:
    """(step, start, stop) of each range step that values [offset, offset + size) of a batch of
    `total` values meet: the step's index in the batch, and its slice of those values."""
    out = []
    pos = offset
    while pos < offset + size:
        step = pos // _CHUNK
        end = min((step + 1) * _CHUNK, total, offset + size)
        out.append((step, pos - offset, end - offset))
        pos = end
    return out


class HistogramCollector:
    """Streaming histogram of |x| per tensor name, whose range grows as needed.

    Each tensor keeps `fine_bins` (a power of two) equal bins over [0, top]. `top` starts
    at the first non-zero batch's max; when a larger value arrives, `top` doubles (as
    often as needed) and pairs of neighbouring bins merge. The new bins are unions of old
    ones, so growing loses no information beyond the coarser resolution. (A batch larger
    than _CHUNK values is taken in steps of _CHUNK for this.) A value v lands in fine bin
    floor(|v| * fine_bins / top), the product taken in float64, the values equal to top in
    the last bin. The float64 product never rounds across an integer there (its error is
    below 2**-37 at 2**15, and a non-integer x * fine_bins / top is at least 2**-24 from the
    next integer for 24-bit mantissas), so every value lands in the bin exact arithmetic gives.

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

    def has_range(self, name: str) -> bool:
        return self._get(name).counts is not None

    def update(self, name: str, array: np.ndarray, relu_outputs: Sequence[str] = ()) -> None:
        """Add the values of `array` (one batch, any shape) to the statistics of tensor `name`,
        and those of Relu(array) to each tensor named in `relu_outputs`.

        The Relu outputs get exactly what updating them with max(array, 0) would add, without
        that array being made: the first one is binned in the same pass as `name`. Updates of
        different tensors may run in parallel threads (the compiled pass releases the GIL) once
        `declare` has created them.
        """
        flat = flat_values(array)
        self.update_part(name, flat, relu_outputs, offset=0, total=flat.size)

    def update_part(self, name: str, values: np.ndarray, relu_outputs: Sequence[str] = (), *, offset: int,
                    total: int, step_max: Sequence[tuple[float, float]] | None = None) -> None:
        """`update` with values [offset, offset + size) of a batch of `total` values, the batch's
        parts given in order: the statistics are those of `update` with the whole batch.

        The range of a step is grown from the values as they come, which is exact; only the
        first non-zero step of a tensor takes its range from the step's max, before any of its
        values is binned: `step_max` gives (max, min) of each step of the batch (a first pass
        over the batch), else that step's values are held until its last part.
        """
        flat = flat_values(values)
        st = self._stats.setdefault(name, _Stats())
        relus = [self._stats.setdefault(r, _Stats()) for r in relu_outputs]
        for step, start, stop in range_steps(offset, flat.size, total):
            x = flat[start:stop]
            step_end = min((step + 1) * _CHUNK, total)
            whole, ends = offset + start == step * _CHUNK and offset + stop == step_end, offset + stop == step_end
            known = step_max[step] if step_max is not None else None
            self._piece(name, x, [(st, False), *[(r, True) for r in relus[:1]]], whole, ends, known)
            for r in relus[1:]:
                self._piece(name, x, [(r, True)], whole, ends, known)

    def _piece(self, name: str, x: np.ndarray, targets: list, whole: bool, ends: bool,
               known: tuple[float, float] | None) -> None:
        """Values `x` of one range step (`whole`: all of it; `ends`: its last part) into `targets`,
        (stats, is_relu) pairs of one tensor and its Relu.

        The histograms that have a range are binned first, in one pass that stops at a value
        outside it; the max of the values is then known, the ranges grow, and what was not
        binned yet is binned in a second pass: the rest of the values for those, all of them
        for a histogram whose range this step set."""
        from . import binning

        fine = self.fine_bins
        for t, is_relu in targets:
            if t.counts is None and known is not None and not t.held:
                t.step(max(known[0], 0.0) if is_relu else max(known[0], -known[1]), 0, fine)
        ready = [(t, is_relu, t.top) for t, is_relu in targets if t.counts is not None]
        stop, hi_pos, lo, at_top = self._pass(name, x, 0, ready)
        if stop < x.size:
            rest_hi, rest_lo, bad = binning.scan(x, stop)
            if bad:
                raise non_finite(name)
            hi_pos, lo = max(hi_pos, rest_hi), min(lo, rest_lo)
        for (t, _, _), count in zip(ready, at_top):
            t.at_top += count
        rest, new = [], []
        for t, is_relu in targets:
            hi = (hi_pos if hi_pos > 0.0 else 0.0) if is_relu else max(hi_pos, -lo)
            if t.held or (t.counts is None and hi > 0.0 and not whole):
                t.held.append(x.copy())  # no range and no max for this step yet: binned at its end
                continue
            had_range = t.counts is not None
            if t.step(hi, x.size, fine):
                (rest if had_range else new).append((t, is_relu, t.top))
        for group, begin in ((rest, stop), (new, 0)):
            if group and begin < x.size:
                done, _, _, at_top = self._pass(name, x, begin, group)
                assert done == x.size, "the grown ranges hold every value"
                for (t, _, _), count in zip(group, at_top):
                    t.at_top += count
        if ends:
            for t, is_relu in targets:
                if t.held:
                    held, t.held = np.concatenate(t.held), []
                    self._piece(name, held, [(t, is_relu)], True, True, None)
                elif t.counts is not None:
                    t.end_step()

    def _pass(self, name: str, x: np.ndarray, start: int, targets: list) -> tuple[int, float, float, list[int]]:
        """binning.bin_values over x[start:] for up to two (stats, is_relu, top) targets, the |x|
        one first: (stop, max, min, the at-top count of each target)."""
        from . import binning

        if not targets:
            return start, -math.inf, math.inf, []
        empty = np.zeros(0, dtype=np.int64)
        mag = next(((t, top) for t, is_relu, top in targets if not is_relu), None)
        rel = next(((t, top) for t, is_relu, top in targets if is_relu), None)
        mode = (binning.MAGNITUDE if rel is None else binning.RELU if mag is None
                else binning.SIGNED if mag[1] == rel[1] else binning.BOTH)
        stop, hi, lo, at_top, r_at_top = binning.bin_values(
            x, start, mode,
            mag[1] if mag else 0.0, _scale(name, self.fine_bins, mag[1]) if mag else 0.0,
            mag[0].counts if mag else empty,
            rel[1] if rel else 0.0, _scale(name, self.fine_bins, rel[1]) if rel else 0.0,
            rel[0].counts if rel else empty)
        return int(stop), float(hi), float(lo), [r_at_top if is_relu else at_top for _, is_relu, _ in targets]

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
