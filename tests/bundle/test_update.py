"""deploy.bundle updates: staged files and the manifest committed as one unit; an error or an
interrupt before the commit leaves the old set, a kill during it is completed by the next
command, stale temporaries of ours are swept; readers check what they read."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from deploy import interrupts
from deploy.bundle import Bundle, open_bundle
from deploy.bundle.layout import JOURNAL, MANIFEST
from deploy.errors import BundleError
from deploy.fsutil import sha256_file, sweep_temps, temp_name

MINIMAL = {
    "format": 1,
    "model": {"name": "tiny", "num_classes": 2},
    "inputs": [{"name": "input", "shape": [-1, 2], "dtype": "float32"}],
    "outputs": [{"name": "logits", "shape": [-1, 2], "dtype": "float32"}],
    "preprocessing": {"preset": "digits"},
}
FILES = ("model.int8.onnx", "calibration/scales.json", "calibration/trt.cache")


def tiny_bundle(root, version="old"):
    root.mkdir(parents=True, exist_ok=True)
    b = Bundle(root, json.loads(json.dumps(MINIMAL)))
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"{version} {rel}")
        b.record_file(rel)
    b.manifest["version"] = version
    b.save()
    return open_bundle(root)


def update_all(b, version="new"):
    with b.update("test") as up:
        for rel in FILES:
            up.write_bytes(rel, f"{version} {rel}".encode())
        up.bundle.manifest["version"] = version
        up.commit()


def state(root):
    """The version every file and the manifest agree on; fails if they disagree or a file does
    not match its recorded hash."""
    m = json.loads((root / MANIFEST).read_text())
    versions = {(root / rel).read_text().split()[0] for rel in FILES}
    for rel in FILES:
        assert m["files"][rel] == sha256_file(root / rel), rel
    assert versions == {m["version"]}, (versions, m["version"])
    return m["version"]


def ours_left(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(".*trtdeploy-*"))


def test_commit_writes_every_file_and_the_manifest(tmp_path):
    b = tiny_bundle(tmp_path / "b")
    update_all(b)
    assert state(b.root) == "new" and b.manifest["version"] == "new"
    assert not (b.root / JOURNAL).exists() and ours_left(b.root) == []
    stats = json.loads((b.root / MANIFEST).read_text())["file_stats"]
    assert stats["model.int8.onnx"][0] == len("new model.int8.onnx")


def test_an_error_before_the_commit_leaves_the_old_set(tmp_path):
    b = tiny_bundle(tmp_path / "b")
    with pytest.raises(RuntimeError):
        with b.update("test") as up:
            up.write_bytes(FILES[0], b"new")
            up.bundle.manifest["version"] = "new"
            raise RuntimeError("validation failed")
    assert state(b.root) == "old" and b.manifest["version"] == "old"  # the in-memory manifest too
    assert ours_left(b.root) == []


def test_ctrl_c_during_the_renames_lets_the_commit_finish_then_stops(tmp_path, monkeypatch):
    """SIGINT sent after the second rename (injected): the commit completes, then the command
    stops; the bundle holds the new set."""
    b = tiny_bundle(tmp_path / "b")
    real, count = os.replace, []

    def replace(src, dst):
        real(src, dst)
        count.append(dst)
        if len(count) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    with interrupts.handled():
        with pytest.raises(KeyboardInterrupt):
            update_all(b)
        assert interrupts.received() == signal.SIGINT
    monkeypatch.undo()
    assert len(count) == 1 + len(FILES) + 1  # journal, files, manifest: none skipped
    assert state(b.root) == "new" and not (b.root / JOURNAL).exists()


def test_a_swallowed_ctrl_c_commits_nothing(tmp_path):
    """A KeyboardInterrupt lost in a finalizer still stops the next commit."""
    b = tiny_bundle(tmp_path / "b")
    with interrupts.handled():
        with pytest.raises(KeyboardInterrupt):
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt:
                pass  # what a finalizer does with it
            update_all(b)
    assert state(b.root) == "old" and ours_left(b.root) == []


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from bundle.test_update import update_all
    from deploy.bundle import open_bundle
    real, count, at, before = os.replace, [0], {at}, {before}
    def replace(src, dst):
        count[0] += 1
        if before and count[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)
        if not before and count[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    update_all(open_bundle({root!r}))
""")


@pytest.mark.parametrize("at,before,expect", [
    (1, True, "old"),  # killed before the journal: only temporaries, swept
    (1, False, "new"),  # the journal is written: the next command completes the update
    (2, False, "new"), (3, False, "new"), (4, False, "new"),
    (5, False, "new"),  # the manifest renamed, the journal not yet removed
])
def test_sigkill_at_every_rename_leaves_the_old_set_or_the_new(tmp_path, at, before, expect):
    b = tiny_bundle(tmp_path / "b")
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", KILLER.format(tests=tests, at=at, before=before, root=str(b.root))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert ours_left(b.root), "the kill left nothing to clean up: the injection missed"
    reopened = open_bundle(b.root)  # completes a pending update
    assert state(b.root) == expect and reopened.manifest["version"] == expect
    with reopened.update("next"):  # the next writer sweeps what the dead one left
        pass
    assert ours_left(b.root) == [] and not (b.root / JOURNAL).exists()


def test_sweep_removes_only_our_temporaries_of_dead_processes(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = temp_name(tmp_path / "a")
    theirs_alive = tmp_path / ".b.trtdeploy-1-abcd.tmp"  # pid 1 is alive
    theirs_dead = tmp_path / f".c.trtdeploy-{dead.pid}-abcd.tmp"
    users = [tmp_path / ".c.tmp", tmp_path / f".c.other-{dead.pid}-abcd.tmp", tmp_path / "c"]
    for p in (mine, theirs_alive, theirs_dead, *users):
        p.write_text("x")
    assert sweep_temps(tmp_path) == [theirs_dead]
    assert all(p.exists() for p in (mine, theirs_alive, *users))


def test_a_directory_moved_aside_by_a_killed_replace_is_put_back(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    aside = tmp_path / f".bundle.trtdeploy-{dead.pid}-old.tmp"
    aside.mkdir()
    (aside / "manifest.json").write_text("{}")
    sweep_temps(tmp_path)
    assert (tmp_path / "bundle" / "manifest.json").is_file() and not aside.exists()


def test_readers_check_size_and_time_then_the_hash(tmp_path):
    b = tiny_bundle(tmp_path / "b")
    p = b.root / FILES[0]
    assert b.file(FILES[0]) == p
    st = p.stat()
    p.write_text("OLD model.int8.onnx")  # same size; given back its time: the cheap check passes
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert open_bundle(b.root).file(FILES[0]) == p
    with pytest.raises(BundleError, match=r"model.int8.onnx: does not match manifest.json .*"
                                          r"trtdeploy calibrate .* --data DATA --recalibrate"):
        open_bundle(b.root, verify=True).file(FILES[0])
    p.write_text("a longer, changed model.int8.onnx")
    with pytest.raises(BundleError, match="does not match manifest.json"):
        open_bundle(b.root).file(FILES[0])
    (b.root / "model.fp16.onnx").write_text("not recorded")
    with pytest.raises(BundleError, match=r"model.fp16.onnx: not recorded in .*trtdeploy fp16"):
        b.file("model.fp16.onnx")
    with pytest.raises(BundleError, match=r"reference.npz: missing; make it with `trtdeploy export"):
        b.file("reference.npz")
