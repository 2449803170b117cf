"""One bundle, one truth, through the commands users run (issue 21, items 4-6, 8, 10, 11):
two writers at once, a calibrate killed or interrupted at every rename of its commit, readers
that check what they read, a corrupt or stale scales.json, truncated files, a swallowed Ctrl-C.
Faults are injected (tests/bundle/inject.py wraps os.replace; the lock is held by the test),
never left to timing."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")

from deploy.bundle import open_bundle  # noqa: E402
from deploy.bundle.layout import JOURNAL, LOCK  # noqa: E402
from deploy.bundle.lock import bundle_lock  # noqa: E402
from deploy.fsutil import sha256_file, sha256_tree  # noqa: E402
from deploy.trt.calibration_cache import read_cache  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEEP = "resnet_v2_digits/block2/unit_1/bottleneck_v2/conv2/Conv2D"
NUM = "16"  # calibration images per run: enough to calibrate, few enough to run it many times


def trtdeploy(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploy", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    """The `error:` lines (the rest of stderr is logging and progress); never with a traceback."""
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    from deploy.digits import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("digits") / "train", "train")


@pytest.fixture(scope="module")
def calibrated(default_bundle_dir, train, tmp_path_factory):
    """The default bundle calibrated (entropy) and converted to FP16, once per module."""
    root = shutil.copytree(default_bundle_dir, tmp_path_factory.mktemp("calibrated") / "bundle")
    for args in (["calibrate", str(root), "--data", str(train), "--num-images", NUM, "--batch-size", NUM],
                 ["fp16", str(root)]):
        r = trtdeploy(*args)
        assert r.returncode == 0, r.stderr
    return root


@pytest.fixture
def bundle(calibrated, tmp_path) -> Path:
    return shutil.copytree(calibrated, tmp_path / "bundle")


def consistent(root: Path) -> dict:
    """Check that every file matches the manifest and the calibration set belongs together;
    return the manifest."""
    m = json.loads((root / "manifest.json").read_text())
    for rel, digest in m["files"].items():
        p = root / rel
        assert (sha256_tree(p) if p.is_dir() else sha256_file(p)) == digest, f"{rel} disagrees with the manifest"
    int8 = m["precision"]["int8"]
    scales = json.loads((root / "calibration/scales.json").read_text())
    # entropy and max differ in all three: a cache or ranges of one under the other's manifest shows
    assert scales["algorithm"] == int8["algorithm"] == read_cache(root / "calibration/trt.cache").algorithm
    assert scales["dataset_sha256"] == int8["dataset_sha256"]
    assert not (root / JOURNAL).exists()
    assert not [p for p in root.rglob(".*trtdeploy-*")], "temporaries left behind"
    return m


# --- item 4: two writers ------------------------------------------------------------------


def test_two_writers_at_once_wait_for_each_other_and_both_land(bundle, train):
    """calibrate --method auto --recalibrate and fp16 --keep-fp32 NODE, two real processes held
    back by the test's own lock until both run, then let go together: each waits for the other
    (one says so), both exit 0, and the manifest has both updates with every file matching."""
    with bundle_lock(bundle, exclusive=True, command="test"):
        calib = subprocess.Popen([sys.executable, "-m", "deploy", "calibrate", str(bundle), "--data", str(train),
                                  "--num-images", "40", "--method", "auto", "--recalibrate"],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        fp16 = subprocess.Popen([sys.executable, "-m", "deploy", "fp16", str(bundle), "--keep-fp32", KEEP],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(_is_waiting(p) for p in (calib, fp16)):
            time.sleep(0.2)
    outs = [p.communicate(timeout=300) for p in (calib, fp16)]
    assert calib.returncode == 0 and fp16.returncode == 0, outs
    assert all("waiting for trtdeploy test" in err for _, err in outs)
    m = consistent(bundle)
    assert json.loads((bundle / "calibration/scales.json").read_text())["method"] == "auto"
    assert KEEP in m["precision"]["fp16"]["kept_fp32"]
    r = trtdeploy("parity", str(bundle), "--backends", "ort-fp16,ort-int8", "--verify")
    assert r.returncode in (0, 1) and "error:" not in r.stderr, r.stderr  # every file read checks out


def _is_waiting(proc: subprocess.Popen) -> bool:
    """Whether `proc` is blocked on the bundle lock: its open lock file shows in /proc."""
    try:
        return any(os.readlink(f"/proc/{proc.pid}/fd/{fd}").endswith(LOCK) for fd in os.listdir(f"/proc/{proc.pid}/fd"))
    except OSError:
        return False


def test_a_writer_that_waits_too_long_fails_in_one_line(bundle):
    before = consistent(bundle)
    with bundle_lock(bundle, exclusive=True, command="calibrate"):
        r = trtdeploy("fp16", str(bundle), env={"TRTDEPLOY_LOCK_TIMEOUT": "0.5"})
    assert r.returncode == 2
    assert error_lines(r.stderr)[0].startswith(f"error: {bundle}: trtdeploy calibrate, pid {os.getpid()} has held")
    assert consistent(bundle) == before


# --- item 5: calibrate interrupted or killed at every rename of its commit -----------------


def inject(bundle: Path, train: Path, at: int, sig: str, before: bool = False) -> subprocess.CompletedProcess:
    """calibrate --method max (the bundle holds entropy ranges) with `sig` at the at-th rename
    in the bundle: 1 the commit's journal, 2-5 the four files, 6 the manifest."""
    args = [sys.executable, "-m", "tests.bundle.inject", "--root", str(bundle), "--at", str(at), "--signal", sig,
            *(["--before"] if before else []), "--", "calibrate", str(bundle), "--data", str(train),
            "--num-images", NUM, "--batch-size", NUM, "--method", "max", "--recalibrate"]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("at,before,expect", [
    (1, True, "entropy"),  # killed before the journal: the temporaries are swept, the old set stays
    (1, False, "max"),  # the journal is written: the next command completes the update
    (3, False, "max"), (6, False, "max"),  # some files renamed; all of them and the manifest
])
def test_sigkill_during_the_commit_leaves_old_or_new_never_a_mix(bundle, train, at, before, expect):
    r = inject(bundle, train, at, "KILL", before)
    assert r.returncode == -signal.SIGKILL, r.stderr
    left = [p.name for p in bundle.rglob(".*trtdeploy-*")]
    assert left, "the kill left nothing behind: the injection missed the commit"
    if before:  # every staged file, the Q/DQ model among them, is there and not yet renamed
        assert any(n.startswith(".model.int8.onnx.trtdeploy-") for n in left), left
    r = trtdeploy("fp16", str(bundle))  # the next writer completes or rolls back, and sweeps
    assert r.returncode == 0, r.stderr
    assert consistent(bundle)["precision"]["int8"]["method"] == expect


@pytest.mark.parametrize("sig,at,status", [("INT", 1, 130), ("INT", 3, 130), ("INT", 6, 130), ("TERM", 3, 143)])
def test_ctrl_c_or_sigterm_during_the_commit_finishes_it_then_ends(bundle, train, sig, at, status):
    r = inject(bundle, train, at, sig)
    assert r.returncode == status, r.stderr
    assert error_lines(r.stderr) == ["error: terminated" if sig == "TERM" else "error: interrupted"]
    assert consistent(bundle)["precision"]["int8"]["method"] == "max"


# --- item 6: readers check what they read ---------------------------------------------------


def test_a_mixed_bundle_is_refused_by_its_readers(bundle, calibrated, train, tmp_path):
    """A model.int8.onnx from another calibration copied in: parity used to pass on it."""
    other = shutil.copytree(calibrated, tmp_path / "other")
    assert trtdeploy("calibrate", str(other), "--data", str(train), "--num-images", NUM, "--method", "max",
                     "--recalibrate").returncode == 0
    shutil.copy(other / "model.int8.onnx", bundle / "model.int8.onnx")
    r = trtdeploy("parity", str(bundle), "--backends", "ort-int8")
    assert r.returncode == 2, r.stderr
    (line,) = error_lines(r.stderr)
    assert line.startswith(f"error: {bundle / 'model.int8.onnx'}: does not match manifest.json") and \
        f"trtdeploy calibrate {bundle} --data DATA --recalibrate" in line, line


def test_verify_hashes_a_file_whose_size_and_time_were_kept(bundle):
    p = bundle / "model.fp16.onnx"
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = trtdeploy("parity", str(bundle), "--backends", "ort-fp16", "--out", str(bundle.parent / "r1"))
    assert "does not match manifest.json" not in r.stderr  # the cheap check trusts the recorded size and time
    r = trtdeploy("parity", str(bundle), "--backends", "ort-fp16", "--verify", "--out", str(bundle.parent / "r2"))
    assert r.returncode == 2 and "model.fp16.onnx: does not match manifest.json" in r.stderr


# --- items 8 and 10: bad files in the bundle --------------------------------------------------


@pytest.mark.parametrize("scales,recorded,message", [
    ("{not json", False, "scales.json: does not match manifest.json"),
    ('{"format": 1, "amax": {"input": "abc"}}', True, "amax of tensor 'input' is 'abc'"),
    ('{"format": 1, "amax": {"input": null}}', True, "amax of tensor 'input' is None"),
    ('{"format": 1, "amax": {"input": 1e308}}', True, "amax of tensor 'input' is 1e+308"),
    ("{not json", True, "scales.json: unreadable"),
])
def test_a_bad_scales_json_is_one_line_and_recalibrate_replaces_it(bundle, train, scales, recorded, message):
    (bundle / "calibration/scales.json").write_text(scales)
    if recorded:  # as if an older or broken trtdeploy had written and recorded it
        b = open_bundle(bundle)
        with b.update("test") as up:
            b.record_file("calibration/scales.json")
            up.commit()
    r = trtdeploy("calibrate", str(bundle), "--data", str(train), "--num-images", NUM)
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert message in line and "pass --recalibrate" in line, line
    r = trtdeploy("calibrate", str(bundle), "--data", str(train), "--num-images", NUM, "--recalibrate")
    assert r.returncode == 0, r.stderr
    consistent(bundle)


@pytest.mark.parametrize("rel,argv", [
    ("model.int8.onnx", ["parity", "{b}", "--backends", "ort-int8"]),
    ("model.fp16.onnx", ["parity", "{b}", "--backends", "ort-fp16"]),
    ("reference.npz", ["fp16", "{b}"]),
])
def test_truncated_bundle_files_are_one_line_each(bundle, rel, argv):
    p = bundle / rel
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    r = trtdeploy(*[a.format(b=bundle) for a in argv])
    assert r.returncode == 2
    (line,) = error_lines(r.stderr)
    assert line.startswith(f"error: {p}: does not match manifest.json"), line


# --- item 11: an interrupt always ends the command ------------------------------------------


SWALLOWED = textwrap.dedent("""
    import os, signal, sys
    import deploy.fp16 as fp16
    real = fp16.plan_fp16
    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.{sig})
            for _ in range(10000):  # the handler runs here, inside the finalizer, which drops its exception
                pass
    def plan_fp16(*a, **k):
        Finalized()
        return real(*a, **k)
    fp16.plan_fp16 = plan_fp16
    from deploy.cli import main
    sys.exit(main(["fp16", {root!r}, "--keep-fp32", {keep!r}]))
""")


@pytest.mark.parametrize("sig,status,said", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_an_interrupt_lost_in_a_finalizer_still_ends_the_command(bundle, sig, status, said):
    before = consistent(bundle)
    r = subprocess.run([sys.executable, "-c", SWALLOWED.format(sig=sig, root=str(bundle), keep=KEEP)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == status, r.stderr
    assert error_lines(r.stderr) == [f"error: {said}"], r.stderr
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr
    assert consistent(bundle) == before  # nothing committed after the interrupt
