"""One runner interface for every backend (TensorFlow, ONNX Runtime, TensorRT).

`Runner.infer(feed)` validates the feed against the runner's input specs, then calls
`_infer`. Runners are context managers; parity and benchmarks loop over them. A runner
whose calls take at most `max_batch` samples (a TensorRT engine's profile) still takes
any batch through `infer_any_batch`, which splits it.
Needs only numpy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None for a dynamic dimension) and numpy dtype of one input."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


class Runner:
    """Base class. Subclasses set `name`, implement `input_specs`, `_infer`, and
    optionally `activate` / `close` and `check_feed`."""

    name = "runner"
    # The most samples one `infer` call takes (dimension 0 of every input); None: no limit.
    max_batch: int | None = None

    def __enter__(self) -> "Runner":
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def activate(self) -> None:
        """Acquire resources (sessions, GPU buffers). Idempotent."""

    def close(self) -> None:
        """Release everything `activate` acquired. Idempotent."""

    def input_specs(self) -> list[TensorSpec]:
        raise NotImplementedError

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check `feed` against the input specs, then run it. Subclasses implement `_infer`; one
        that checks a feed of shapes it has seen faster overrides `check_feed`, not this."""
        return self._infer(self.check_feed(feed))

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """The feed, validated (InputError otherwise)."""
        self.validate(feed)
        return feed

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def split_batch(self, feed: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """`feed` as consecutive slices of at most `max_batch` samples (one slice when it fits)."""
        limit = self.max_batch
        arrays = list(feed.values())
        if limit is None or not arrays or not all(isinstance(a, np.ndarray) and a.ndim for a in arrays):
            return [dict(feed)]  # nothing to split, or a feed `validate` will refuse with the reason
        n = max(a.shape[0] for a in arrays)
        if n <= limit:
            return [dict(feed)]
        return [{k: v[i:i + limit] for k, v in feed.items()} for i in range(0, n, limit)]

    def infer_any_batch(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`infer` for a batch of any size: slices of at most `max_batch`, outputs concatenated."""
        parts = [self.infer(chunk) for chunk in self.split_batch(feed)]
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def validate(self, feed: Mapping[str, np.ndarray]) -> None:
        """Check names, dtypes, ranks, static dimensions and contiguity before running."""
        specs = {s.name: s for s in self.input_specs()}
        missing = sorted(set(specs) - set(feed))
        extra = sorted(set(feed) - set(specs))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {missing}")
            if extra:
                parts.append(f"unexpected {extra}")
            raise InputError(f"{self.name}: feed has {'; '.join(parts)}; inputs are {sorted(specs)}")
        for name, spec in specs.items():
            arr = feed[name]
            if not isinstance(arr, np.ndarray):
                raise InputError(f"{self.name}: input {name!r} is {type(arr).__name__}, expected a numpy array")
            if arr.dtype != spec.dtype:
                raise InputError(
                    f"{self.name}: input {name!r} has dtype {arr.dtype}, expected {np.dtype(spec.dtype)}; "
                    f"convert with arr.astype(np.{np.dtype(spec.dtype).name})"
                )
            if arr.ndim != len(spec.shape):
                raise InputError(
                    f"{self.name}: input {name!r} has shape {arr.shape}, expected rank {len(spec.shape)} "
                    f"{_fmt_shape(spec.shape)}"
                )
            for got, want in zip(arr.shape, spec.shape):
                if want is not None and want >= 0 and got != want:
                    raise InputError(
                        f"{self.name}: input {name!r} has shape {arr.shape}, expected {_fmt_shape(spec.shape)} "
                        "(check the layout: NCHW vs NHWC)"
                    )
            if not arr.flags.c_contiguous:
                raise InputError(
                    f"{self.name}: input {name!r} is not C-contiguous; pass np.ascontiguousarray(arr)"
                )


def _fmt_shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("N" if (d is None or d < 0) else str(d) for d in shape) + "]"
