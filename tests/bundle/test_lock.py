"""deploy.bundle.lock: one writer at a time, waiting with a message, failing in one line after
the timeout; re-entrant in a process; a read-only copy read without a lock."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from deploy.bundle.layout import LOCK
from deploy.bundle import lock as lock_module
from deploy.bundle.lock import bundle_lock, holds
from deploy.errors import BundleBusyError, WriteError


def hold_elsewhere(root, exclusive=True):
    """A second process holding the lock (flock locks are per open file, so a thread would do
    too; a process is what users have)."""
    code = textwrap.dedent(f"""
        import sys, time
        from deploy.bundle.lock import bundle_lock
        with bundle_lock({str(root)!r}, exclusive={exclusive}, command="test-holder"):
            print("held", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def release(proc):
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(timeout=30) == 0


def test_a_second_writer_waits_saying_for_whom_then_fails_in_one_line(tmp_path, caplog):
    holder = hold_elsewhere(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="trtdeploy.bundle"):
            with pytest.raises(BundleBusyError, match=r"trtdeploy test-holder, pid \d+ has held it for 0 s"):
                with bundle_lock(tmp_path, exclusive=True, command="fp16", timeout=0.3):
                    pass
        assert "waiting for trtdeploy test-holder, pid" in caplog.text
        # A reader waits for a writer just the same.
        with pytest.raises(BundleBusyError):
            with bundle_lock(tmp_path, exclusive=False, command="infer", timeout=0.2):
                pass
    finally:
        release(holder)
    with bundle_lock(tmp_path, exclusive=True, command="fp16", timeout=0.2):
        assert holds(tmp_path)
    assert not holds(tmp_path)


def test_readers_share_and_keep_writers_out(tmp_path):
    reader = hold_elsewhere(tmp_path, exclusive=False)
    try:
        with bundle_lock(tmp_path, exclusive=False, command="infer", timeout=0.2):
            pass  # two readers at once
        with pytest.raises(BundleBusyError):
            with bundle_lock(tmp_path, exclusive=True, command="calibrate", timeout=0.2):
                pass
    finally:
        release(reader)


def test_reentrant_in_one_process_and_released_on_errors(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with bundle_lock(tmp_path, exclusive=True, command="calibrate"):
            with bundle_lock(tmp_path, exclusive=True, command="calibrate", timeout=0.1):
                with bundle_lock(tmp_path, exclusive=False, command="calibrate", timeout=0.1):
                    raise RuntimeError("boom")
    fd = os.open(tmp_path / LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it any more
    finally:
        os.close(fd)


def test_a_killed_holder_releases_it(tmp_path):
    holder = hold_elsewhere(tmp_path)
    holder.kill()
    holder.wait(timeout=30)
    with bundle_lock(tmp_path, exclusive=True, command="calibrate", timeout=1):
        pass


def test_a_lock_file_replaced_meanwhile_is_locked_anew(tmp_path):
    """export --force swaps the bundle directory while others wait on the old lock file: a
    waiter that then holds the old file's lock must not believe it holds the new bundle."""
    with bundle_lock(tmp_path, exclusive=True, command="export"):
        old = os.stat(tmp_path / LOCK).st_ino
    (tmp_path / LOCK).rename(tmp_path / "old-lock")
    (tmp_path / LOCK).touch()
    with bundle_lock(tmp_path, exclusive=True, command="calibrate"):
        assert os.stat(tmp_path / LOCK).st_ino != old


def test_a_read_only_copy_is_read_without_a_lock_and_refused_for_writing(tmp_path, monkeypatch):
    """EROFS (a bundle on a read-only mount), injected at the open: root writes anywhere else."""
    real_open = os.open

    def read_only(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(lock_module.os, "open", read_only)
    with bundle_lock(tmp_path, exclusive=False, command="infer"):
        pass
    assert not (tmp_path / LOCK).exists()
    with pytest.raises(WriteError, match=r"cannot write \(Read-only file system, EROFS\); the file system is read-only"):
        with bundle_lock(tmp_path, exclusive=True, command="calibrate"):
            pass
