"""Ctrl-C and SIGTERM end a command, always: with a non-zero status, one line and no traceback.

Python raises KeyboardInterrupt wherever the main thread happens to be, and where that is a
finalizer or a callback (TensorFlow runs many), the exception is printed as "Exception
ignored in ..." and dropped: the command ran on to exit 0. So the CLI's handlers also
remember the signal; the command ends with 128 + the signal's number when it returns, and
no update is committed after it (`raise_if_interrupted`). SIGTERM unwinds like SIGINT, so the
same clean-up runs (temporaries removed, the bundle's lock released).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, Iterator

_received: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound like Ctrl-C."""


def _on_signal(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _unraisable(unraisable: Any) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return  # remembered by _on_signal: the command still ends as interrupted
    sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """The CLI's handlers for the block, the previous ones restored after it (a library import
    changes no signal handling; `main()` called in-process leaves its caller's as they were)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers, and only it receives signals
        return
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), sys.unraisablehook)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    sys.unraisablehook = _unraisable
    try:
        yield
    finally:
        _received.clear()
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
        sys.unraisablehook = before[2]


def received() -> int | None:
    """The first SIGINT/SIGTERM this command got, or None."""
    return _received[0] if _received else None


def raise_if_interrupted() -> None:
    """Stop here if a signal arrived, even one whose KeyboardInterrupt was swallowed."""
    signum = received()
    if signum is not None:
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def exit_status(exc: BaseException | None = None) -> int:
    signum = received() or (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    return 128 + int(signum)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block: a set of renames is never cut in half by
    Ctrl-C; a signal that came meanwhile is handled right after the block (so the command
    still ends). Done by Python handlers that only record, not by blocking the signal: the
    kernel may deliver a process-directed signal to any thread (ONNX Runtime's, TensorFlow's),
    and Python runs the handler in the main thread whichever thread received it."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run in the main thread only; its own commits are the ones to protect
        return
    came: list[int] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in before:
        signal.signal(s, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        for signum in came:
            handler = before[signum]
            if callable(handler):
                handler(signum, None)  # ours, or Python's default: raises KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)  # what the signal would have done, now
