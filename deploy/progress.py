"""Progress for long work: tqdm when it is installed and stderr is a terminal or CI log,
plain log lines otherwise (the device side may have neither tqdm nor a terminal)."""
from __future__ import annotations

import logging
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("trtdeploy")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr,
                        leave=False, dynamic_ncols=True, mininterval=0.5)
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    step = max(1, (total or 10) // 10)
    for i, item in enumerate(items, 1):
        if i == 1 or i % step == 0 or i == total:
            log.info("%s: %d/%s %s", desc, i, total if total is not None else "?", unit)
        yield item
