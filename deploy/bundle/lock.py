"""The bundle's lock: one writer at a time, readers never beside a writer.

A writer (export --force, calibrate, fp16, build, parity/profile/bench writing reports)
holds `BUNDLE/.trtdeploy.lock` exclusively from reading the manifest to committing its
update; readers (infer, doctor, a parity whose report goes elsewhere) hold it shared. The
kernel releases it on every exit path, SIGKILL included (flock(2)). A second command waits,
saying for whom, and gives up with one line after TRTDEPLOY_LOCK_TIMEOUT seconds (default
900). Locks are re-entrant within a process: the CLI takes it, the library calls it makes
take it again.

A read-only copy of a bundle (no lock file can be made) has no writers: it is read without
a lock.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import BundleBusyError
from ..fsutil import write_error
from .layout import LOCK

log = logging.getLogger("trtdeploy.bundle")

DEFAULT_TIMEOUT_S = 900.0
POLL_S = 0.1


@dataclass
class _Held:
    fd: int | None
    exclusive: bool
    depth: int = 1


_held: dict[str, _Held] = {}


def lock_timeout() -> float:
    raw = os.environ.get("TRTDEPLOY_LOCK_TIMEOUT")
    try:
        return DEFAULT_TIMEOUT_S if raw is None else max(0.0, float(raw))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def _open(root: Path, exclusive: bool) -> int | None:
    path = root / LOCK
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise write_error(path, e) from None
        try:
            return os.open(path, os.O_RDONLY)  # flock works on a read-only descriptor
        except FileNotFoundError:
            if exclusive:
                raise write_error(root, e) from None
            return None  # a read-only bundle without a lock file: nobody can write it


def holder(root: Path) -> str:
    """Who holds the lock, as its last exclusive holder wrote it ("trtdeploy calibrate, pid 12")."""
    with contextlib.suppress(OSError):
        text = (root / LOCK).read_text().strip()
        if text:
            return text
    return "another trtdeploy command"


def _same_file(fd: int, root: Path) -> bool:
    """Still the lock file of `root` (export --force may have replaced the bundle meanwhile)."""
    try:
        return os.fstat(fd).st_ino == os.stat(root / LOCK).st_ino
    except OSError:
        return False


def _acquire(fd: int, exclusive: bool, root: Path, command: str, timeout: float) -> None:
    op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    start = time.monotonic()
    said = False
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waited = time.monotonic() - start
        if not said:
            log.warning("%s: waiting for %s to finish with it (trtdeploy %s)", root, holder(root), command)
            said = True
        if waited >= timeout:
            raise BundleBusyError(f"{root}: {holder(root)} has held it for {waited:.0f} s; wait for it to finish "
                                  "and run this again (TRTDEPLOY_LOCK_TIMEOUT=SECONDS waits longer)")
        time.sleep(POLL_S)


@contextlib.contextmanager
def bundle_lock(root: str | os.PathLike, exclusive: bool, command: str,
                timeout: float | None = None) -> Iterator[None]:
    """Hold the lock of bundle `root` for the block (`exclusive` for writers)."""
    root = Path(root)
    key = os.path.realpath(root)
    held = _held.get(key)
    if held is not None:
        if exclusive and not held.exclusive:
            raise RuntimeError(f"{root}: a reader of the bundle cannot become a writer; take the lock as a writer")
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
        return
    timeout = lock_timeout() if timeout is None else timeout
    while True:
        fd = _open(root, exclusive)
        if fd is None:
            break
        _acquire(fd, exclusive, root, command, timeout)
        if _same_file(fd, root):
            break
        os.close(fd)
    if fd is not None and exclusive:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"trtdeploy {command}, pid {os.getpid()}\n".encode(), 0)
    _held[key] = _Held(fd, exclusive)
    try:
        yield
    finally:
        del _held[key]
        if fd is not None:
            os.close(fd)  # releases the lock


def holds(root: str | os.PathLike, exclusive: bool = True) -> bool:
    held = _held.get(os.path.realpath(root))
    return held is not None and (held.exclusive or not exclusive)
