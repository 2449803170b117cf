"""Atomic file writes, sets of files committed as one unit, and hashes.

Nothing half-written ever sits under its final name:

- every file or directory is written to a temporary beside its final name, named
  `.NAME.trtdeploy-PID-TOKEN.tmp`, and renamed over it when complete;
- a set of files that belong together (the calibration files and the manifest; parity.json
  and parity.html) is committed by `commit_files`: a journal listing every rename is written
  first, then the renames run with SIGINT/SIGTERM held back, then the journal is removed. A
  process killed between the journal and its removal leaves the journal, and the next
  command completes it (`recover`); one killed before the journal leaves only temporaries,
  which `sweep_temps` removes once their process is gone. Either way a reader sees the old
  set or the new one.

Errors of the operating system while writing (a full disk, a read-only file system, a
directory where a file should go) become one-line `WriteError`s naming the path.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import BundleError, WriteError
from .interrupts import raise_if_interrupted, signals_deferred

TEMP_TAG = "trtdeploy"
# .NAME.trtdeploy-PID-TOKEN.tmp[SUFFIX]: ours by name, and whose by the pid.
_TEMP_RE = re.compile(rf"^\.(?P<name>.+)\.{TEMP_TAG}-(?P<pid>\d+)-(?P<token>[A-Za-z0-9_]+)\.tmp.*$")
_OLD_TOKEN = "old"  # a directory moved aside while its replacement is renamed in
JOURNAL_FORMAT = 1

_ADVICE = {
    errno.ENOSPC: "free some space on that disk, or write somewhere else",
    errno.EDQUOT: "free some of your disk quota, or write somewhere else",
    errno.EROFS: "the file system is read-only: copy the files somewhere writable, or choose another output",
    errno.EACCES: "you may not write there: change its permissions, or choose another output",
    errno.EPERM: "you may not write there: change its permissions, or choose another output",
    errno.ENOTDIR: "a file stands where a directory should be: choose another output",
    errno.EISDIR: "a directory stands where a file should be: choose another output",
}


def write_error(path: str | os.PathLike, e: OSError) -> WriteError:
    """One line for an OS error while writing `path`: the path, the error and what to do."""
    code = errno.errorcode.get(e.errno or 0, "error")
    advice = _ADVICE.get(e.errno or 0, "check that location and try again")
    return WriteError(f"{path}: cannot write ({e.strerror or e}, {code}); {advice}")


def temp_name(final: Path, token: str | None = None) -> Path:
    return final.with_name(f".{final.name}.{TEMP_TAG}-{os.getpid()}-{token or secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Works for files and directories (a directory replaces an existing one by two renames,
    the old one moved aside first; see `sweep_temps` for a crash between them). On failure
    the temporary is removed; OS errors become `WriteError`.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(final.parent, e) from None
    tmp = Path(str(temp_name(final)) + suffix)
    try:
        yield tmp
        if tmp.is_dir() and final.is_dir():
            replace_dir(tmp, final)
        else:
            os.replace(tmp, final)
    except OSError as e:
        if e.filename is not None and not str(e.filename).startswith(str(tmp)) and Path(e.filename) != final:
            raise  # not about this write (the block read something else)
        raise write_error(final, e) from None
    finally:
        remove_path(tmp)


def replace_dir(new: Path, final: Path) -> None:
    """Put directory `new` where `final` is (if it is): the old one is moved aside, the new one
    renamed in, the old one removed. A crash between the renames leaves the old one aside under
    our temporary name, and `sweep_temps` puts it back."""
    if not final.exists():
        os.replace(new, final)
        return
    old = temp_name(final, _OLD_TOKEN)
    with signals_deferred():
        os.replace(final, old)
        os.replace(new, final)
    remove_path(old)


def remove_path(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _fsync_file(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system syncs directories
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes_to(tmp: Path, data: bytes) -> None:
    """Write and sync a temporary (no rename: `commit_files` or `atomic_path` does that)."""
    with open(tmp, "wb") as f:
        f.write(data)
        _fsync_file(f)


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        write_bytes_to(tmp, data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json_text(obj))


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays end up in reports; keep numpy an optional import here.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def check_writable_dir(path: str | os.PathLike, what: str = "--out") -> None:
    """Before the work: refuse an output directory that is a file, or that cannot be written
    (read-only, no permission), by writing and removing a probe where it is or will be made."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise WriteError(f"{d}: exists and is not a directory; choose another {what}")
    probe_dir = d
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise WriteError(f"{probe_dir}: is a file, so {d} cannot be created; choose another {what}")
    probe = temp_name(probe_dir / "probe")
    try:
        probe.write_bytes(b"")
    except OSError as e:
        raise write_error(d, e) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


# --- sets of files ---------------------------------------------------------------------


def commit_files(moves: Sequence[tuple[Path, Path]], journal: Path, what: str) -> None:
    """Rename each (temporary, final) pair, as one unit: all of them or, after a crash, none
    until the next command's `recover(journal)` completes them. `what` names the update in
    the journal (the command that made it). Temporaries must be complete and synced."""
    if not moves:
        return
    base = journal.parent
    record = {"format": JOURNAL_FORMAT, "what": what, "pid": os.getpid(),
              "moves": [[tmp.relative_to(base).as_posix(), final.relative_to(base).as_posix()]
                        for tmp, final in moves]}
    raise_if_interrupted()  # a command told to stop commits nothing more
    try:
        with signals_deferred():
            atomic_write_text(journal, json_text(record))
            fsync_dir(base)
            for tmp, final in moves:
                os.replace(tmp, final)
            for d in {final.parent for _, final in moves}:
                fsync_dir(d)
            journal.unlink()
    except OSError as e:
        raise write_error(getattr(e, "filename", None) or journal, e) from None


class FileSet:
    """Files outside a bundle that belong together (parity.json and parity.html; an engine, its
    layers file and its sidecar), staged beside their final names and committed as one unit,
    with the journal in `directory` (`.trtdeploy-journal.json`)."""

    JOURNAL = ".trtdeploy-journal.json"

    def __init__(self, directory: str | os.PathLike, what: str):
        self.directory = Path(directory)
        self.what = what
        self._staged: dict[Path, Path] = {}  # final -> temporary

    def __enter__(self) -> FileSet:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(self.directory, e) from None
        recover(self.directory / self.JOURNAL)
        sweep_temps(self.directory)
        return self

    def __exit__(self, *exc: Any) -> None:
        for tmp in self._staged.values():
            remove_path(tmp)
        self._staged.clear()

    def write_bytes(self, final: str | os.PathLike, data: bytes) -> None:
        final = Path(final)
        tmp = self._staged.setdefault(final, temp_name(final))
        try:
            write_bytes_to(tmp, data)
        except OSError as e:
            raise write_error(final, e) from None

    def write_text(self, final: str | os.PathLike, text: str) -> None:
        self.write_bytes(final, text.encode("utf-8"))

    def write_json(self, final: str | os.PathLike, obj: Any) -> None:
        self.write_text(final, json_text(obj))

    def commit(self) -> None:
        commit_files([(tmp, final) for final, tmp in self._staged.items()], self.directory / self.JOURNAL, self.what)
        self._staged.clear()


def recover(journal: Path) -> str | None:
    """Complete the update a killed process left in `journal`; return what it was (None: none
    was pending). Every temporary was complete before the journal was written, so finishing
    its renames gives the new set."""
    if not journal.is_file():
        return None
    base = journal.parent
    try:
        record = json.loads(journal.read_text())
        moves = [(base / tmp, base / final) for tmp, final in record["moves"]]
        what = str(record.get("what", "an update"))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{journal}: unreadable record of an interrupted update ({e}); "
                          "re-run the command that was interrupted") from None
    try:
        for tmp, final in moves:
            if tmp.exists():
                os.replace(tmp, final)
            elif not final.exists():
                raise BundleError(f"{journal}: the interrupted update lost {final}; re-run {what}")
        journal.unlink()
    except OSError as e:
        raise write_error(journal.parent, e) from None
    return what


def is_temp(p: Path) -> bool:
    """Whether `p` is named as our temporaries are."""
    return _TEMP_RE.match(p.name) is not None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_temps(directory: Path, protect: Sequence[Path] = ()) -> list[Path]:
    """Remove the temporaries of our naming in `directory` whose process is gone (a crash or
    SIGKILL before its rename); return what was removed. A directory moved aside by
    `atomic_path` whose replacement never arrived is put back instead. Nothing of another
    name is touched, nor a temporary listed in `protect` (a pending journal's)."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    keep = {p.resolve() for p in protect}
    for p in directory.iterdir():
        m = _TEMP_RE.match(p.name)
        if not m or _pid_alive(int(m["pid"])) or p.resolve() in keep:
            continue
        final = p.with_name(m["name"])
        try:
            if m["token"] == _OLD_TOKEN and not final.exists():
                os.replace(p, final)
                continue
            remove_path(p)
        except OSError:
            continue  # a read-only copy: left as it is
        removed.append(p)
    return removed


# --- hashes ----------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_tree(root: str | os.PathLike) -> str:
    """One hash for a directory: relative paths and contents, in sorted order."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def file_stat(path: Path) -> list[int]:
    """[size, mtime_ns] of a file; of a directory, [total size of its files, newest mtime_ns]:
    the cheap check readers make before hashing."""
    if path.is_dir():
        files = [q.stat() for q in path.rglob("*") if q.is_file()]
        return [sum(s.st_size for s in files), max((s.st_mtime_ns for s in files), default=0)]
    s = path.stat()
    return [s.st_size, s.st_mtime_ns]
