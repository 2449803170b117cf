"""Labels files: class names, one a line, as `infer --labels`, `triton --labels` and
`deepstream --labels` read them. Standard library only."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError


def read_labels(path: Path, num_outputs: int, offset: int) -> list[str]:
    """Class names, one a line (trailing blank lines ignored): one per class, or, for a model
    with `offset` background outputs first, one per model output. Any other count is a labels
    file for another model, and would name every class wrongly."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines()]
    except OSError as e:
        raise UsageError(f"{path}: cannot read labels ({e.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file; --labels takes class names, one per line") from None
    while lines and not lines[-1]:
        lines.pop()
    classes = num_outputs - offset
    if len(lines) != classes and not (offset and len(lines) == num_outputs):
        both = f" or {num_outputs} (one per model output, background first)" if offset else ""
        raise UsageError(f"{path}: {len(lines)} class names, but the model has {classes} classes; expected "
                         f"{classes} lines (one per class){both}")
    return lines
