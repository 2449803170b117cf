"""Progress for long work: a tqdm bar when tqdm is installed and stderr is a terminal, plain
log lines otherwise (in a CI log, a file or a pipe a bar is carriage returns and escape
codes; the device side may have neither tqdm nor a terminal)."""
from __future__ import annotations

import logging
import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger("trtdeploy")

# Without a bar: a line every this many seconds while the work goes on, and one at the end.
LOG_INTERVAL_S = 10.0


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # no stderr, or a closed one
        return False


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             clock: Callable[[], float] = time.monotonic) -> Iterator[T]:
    tqdm = None
    if _stderr_is_terminal():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
    if tqdm is not None:
        yield from tqdm(items, desc=desc, total=total, unit=unit, file=sys.stderr,
                        leave=False, dynamic_ncols=True, mininterval=0.5)
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    start = last = clock()
    count = 0
    for count, item in enumerate(items, 1):
        yield item
        now = clock()
        if now - last >= LOG_INTERVAL_S and count != total:
            log.info("%s: %d/%s %s", desc, count, total if total is not None else "?", unit)
            last = now
    if count:
        log.info("%s: %d/%d %s in %.1f s", desc, count, total if total is not None else count, unit, clock() - start)
