"""The latency summary every timing in the project reports. Needs only numpy."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import UsageError


def summarize_ms(values: Sequence[float]) -> dict[str, float]:
    """Median, mean, p90, p99 (linear interpolation, numpy's default), min, max, std of
    timings in milliseconds. No timings is a usage error (nothing was run)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise UsageError("no timings to summarise")
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "min": float(a.min()), "max": float(a.max()),
            "std": float(a.std())}
