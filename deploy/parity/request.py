"""What one parity run compares, and how: one request, as export and build take theirs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..data import DEFAULT_BATCH_SIZE
from ..errors import UsageError
from .thresholds import ThresholdOverride


@dataclass(frozen=True)
class ParityRequest:
    """`backends`: names from deploy.runners.BACKENDS (None: all of them); `data`: an input set
    to compare on (None: the bundle's reference.npz), `num_images` of it chosen by `seed`,
    `skip_bad` leaving unreadable images out; `engines`: plans to use instead of the bundle's
    own, by precision; `thresholds`: overrides of the defaults; `per_layer`: also rank the
    layers by their FP32-vs-FP16/INT8 error where ONNX Runtime runs; `out`: the report
    directory (None: BUNDLE/reports)."""

    backends: tuple[str, ...] | None = None
    data: Path | None = None
    num_images: int | None = None
    seed: int = 0
    skip_bad: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    engines: dict[str, Path] = field(default_factory=dict)
    thresholds: tuple[ThresholdOverride, ...] = ()
    per_layer: bool = True
    out: Path | None = None
    # Backends beside deploy.runners.BACKENDS, by name (NAME-PRECISION): a runner factory each
    # (`parity --triton`, `--deepstream`: deploy.serving.live).
    extra_backends: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.num_images is not None and self.num_images < 1:
            raise UsageError(f"the number of images must be at least 1, got {self.num_images}")

    @classmethod
    def of(cls, backends: str | Sequence[str] | None = None, **fields) -> ParityRequest:
        """A request with `backends` given as the CLI gives them ("tf,ort-int8"), checked."""
        from .backends import parse_backends

        extra = list(fields.get("extra_backends") or ())
        return cls(backends=None if backends is None else tuple(parse_backends(backends, extra)), **fields)

    @property
    def names(self) -> list[str]:
        """The backends to run, in order (None given: every one, the extra ones last)."""
        from .backends import parse_backends

        return parse_backends(self.backends, list(self.extra_backends))

    def make_runner(self, backend: str, bundle: Any) -> Any:
        """A runner for `backend` or a Skip saying why it cannot run here."""
        from . import backends

        factory = self.extra_backends.get(backend)
        return factory(bundle) if factory is not None else backends.make_runner(backend, bundle, self.engines)
