"""The compiled loop of the histogram collector: range and bins of a tensor (and of its Relu) in one pass.

`bin_values` bins floor(|x| * scale) and, for a Relu output binned from its input,
floor(max(x, 0) * rscale), while it finds the max and min of the values it binned. It stops
at the first value outside a histogram's range (or not finite); the caller then grows the
range (histograms.py) and bins the rest. Compiled by numba without fast-math, so every
product is the float64 multiplication numpy does (the bins are those of the numpy collector
this replaced, bit for bit) and the GIL is released: tensors are binned in parallel threads.

Compiled on first use, once per input dtype (float32, float64), and cached on disk
(`cache_location`): a later process loads the machine code instead of compiling it.
"""
from __future__ import annotations

import logging

import numpy as np

from deploy.errors import ToolMissingError

log = logging.getLogger("trtdeploy.calibration")

try:
    import numba
except ImportError:  # pragma: no cover - numba is part of the export extra
    raise ToolMissingError("numba is not installed; `pip install 'trtdeploy[export]'` (or numba)") from None

# Which histograms one pass fills: |x| only; max(x, 0) only; both, on grids of their own; both
# on one grid (one signed histogram folded into the two, one increment per value).
MAGNITUDE, RELU, BOTH, SIGNED = 0, 1, 2, 3
# Non-positive values of a Relu histogram are counted in a few scratch slots in turn: one
# counter for half the values makes every increment wait for the previous one (4.0 against
# 9.5 ns per value with a branch instead, resnet-like data on this machine).
_SPREAD = 4


def _jit(func):
    """numba.njit with the GIL released, cached on disk where a cache directory is writable.

    numba looks for one when the function is decorated: $NUMBA_CACHE_DIR, else __pycache__ beside
    this file, else the user's cache directory (~/.cache/numba); it raises RuntimeError when
    none is writable (a read-only install for a user without a home), and the kernels are then
    compiled in every process instead."""
    try:
        return numba.njit(nogil=True, cache=True)(func)
    except RuntimeError as e:
        log.info("numba cannot cache the calibration kernels (%s); they are compiled in each process", e)
        return numba.njit(nogil=True)(func)


@_jit
def scan(x, start):
    """(max, min, any non-finite) of x[start:]."""
    hi = -np.inf
    lo = np.inf
    bad = False
    for i in range(start, x.size):
        v = x[i]
        if v > hi:
            hi = v
        if v < lo:
            lo = v
        if not abs(v) < np.inf:
            bad = True
    return np.float64(hi), np.float64(lo), bad


@_jit
def bin_values(x, start, mode, top, scale, counts, rtop, rscale, rcounts):
    """Bin x[start:] into `counts` (|x| over [0, top]) and/or `rcounts` (max(x, 0) over
    [0, rtop]) as `mode` says, until a value does not fit.

    A value's bin is int(v * scale) with v in float64 and `scale` = fine_bins / top; the
    values whose bin is fine_bins (equal to top) are counted apart (`at_top`), for the caller
    to place once it knows whether the range grows. Returns (stop, max, min, at_top,
    r_at_top): `stop` the first index not binned (x.size when all were), max and min over
    x[start:stop]. A value that does not fit: |v| > top, v > rtop, NaN.
    """
    n = x.size
    fine = counts.size if mode != RELU else rcounts.size
    hi = -np.inf
    lo = np.inf
    at_top = 0
    r_at_top = 0
    stop = n
    if mode == MAGNITUDE:
        for i in range(start, n):
            v = x[i]
            a = abs(v)
            if not a <= top:
                stop = i
                break
            hi = max(hi, v)
            lo = min(lo, v)
            k = np.int64(np.float64(a) * scale)
            if k >= fine:
                at_top += 1
            else:
                counts[k] += 1
    elif mode == SIGNED:
        # trunc(v * scale) is symmetric in v: bin fine + k holds |v| in bin |k| with v's sign,
        # and the non-positive half (with the positive values of bin 0) is Relu's bin 0.
        signed = np.zeros(2 * fine + 1, np.int64)
        for i in range(start, n):
            v = x[i]
            if not abs(v) <= top:
                stop = i
                break
            hi = max(hi, v)
            lo = min(lo, v)
            signed[np.int64(np.float64(v) * scale) + fine] += 1
        counts[0] += signed[fine]
        for k in range(1, fine):
            counts[k] += signed[fine + k] + signed[fine - k]
            rcounts[k] += signed[fine + k]
        rcounts[0] += signed[:fine + 1].sum()
        at_top = signed[0] + signed[2 * fine]
        r_at_top = signed[2 * fine]
    else:
        relu = np.zeros(fine + 1 + _SPREAD, np.int64)  # bins, at top, the non-positive slots
        for i in range(start, n):
            v = x[i]
            a = abs(v)
            if not (v <= rtop and (mode == RELU or a <= top)):
                stop = i
                break
            hi = max(hi, v)
            lo = min(lo, v)
            if mode == BOTH:
                k = np.int64(np.float64(a) * scale)
                if k >= fine:
                    at_top += 1
                else:
                    counts[k] += 1
            # Both indices computed and one selected: a branch on the sign mispredicts half the time.
            r = np.int64(np.float64(v) * rscale)
            relu[r if v > 0 else fine + 1 + (i & (_SPREAD - 1))] += 1
        for k in range(fine):
            rcounts[k] += relu[k]
        rcounts[0] += relu[fine + 1:].sum()
        r_at_top = relu[fine]
    return stop, np.float64(hi), np.float64(lo), at_top, r_at_top


def cache_location() -> str | None:
    """The directory numba caches the kernels in; None when they are compiled in each process."""
    return bin_values.stats.cache_path
