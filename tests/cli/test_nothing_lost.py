"""Nothing lost (issue 21, items 1, 2, 7, 9, 12, 13), through the CLI: export never deletes a
directory that is not a bundle, inputs are validated before anything is written, OS errors
on write are one line with nothing half-written, non-finite inputs are refused by name, and
the smaller argument checks."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")

import deploy.fsutil  # noqa: E402
from deploy.bundle.layout import LOCK  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.fsutil import sha256_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def errors(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != LOCK}


@pytest.fixture
def bundle(default_bundle_dir, tmp_path) -> Path:
    return shutil.copytree(default_bundle_dir, tmp_path / "bundle")


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    from deploy.digits import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("digits") / "train", "train")


# --- items 1 and 2: --out and --force ----------------------------------------------------------


@pytest.mark.parametrize("out,which", [(".", "the working directory"), ("..", "a directory above the working"),
                                       ("HOME", "your home directory"), ("/", "the root directory")])
def test_out_that_holds_the_working_or_home_directory_is_refused(tmp_path, monkeypatch, capsys, out, which):
    work = tmp_path / "x"
    work.mkdir()
    (work / "keep").write_text("mine")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work if out == "HOME" else tmp_path / "home"))
    home = str(work) if out == "HOME" else out
    assert main(["export", "--model", "default", "--out", home, "--force"]) == 2
    (line,) = errors(capsys)
    assert f"is {which}" in line
    assert (work / "keep").read_text() == "mine" and sorted(p.name for p in work.iterdir()) == ["keep"]


@pytest.mark.parametrize("content,said", [
    ({"f": "x"}, "holds f, without a manifest.json written by trtdeploy"),
    ({"manifest.json": '{"name": "my notes"}', "notes.txt": "x"}, "has a manifest.json that trtdeploy did not write"),
])
def test_force_replaces_nothing_but_a_bundle(tmp_path, capsys, content, said):
    d = tmp_path / "d"
    d.mkdir()
    for name, text in content.items():
        (d / name).write_text(text)
    assert main(["export", "--model", "default", "--out", str(d), "--force"]) == 2
    (line,) = errors(capsys)
    assert said in line and "--force replaces a trtdeploy bundle and nothing else" in line
    assert {p.name: p.read_text() for p in d.iterdir()} == content


def test_force_keeps_a_users_file_inside_a_bundle(bundle, capsys):
    (bundle / "my-notes.txt").write_text("mine")
    assert main(["export", "--model", "default", "--out", str(bundle), "--force"]) == 2
    (line,) = errors(capsys)
    assert "also holds my-notes.txt, which is not part of a bundle" in line
    assert (bundle / "my-notes.txt").read_text() == "mine"


def test_force_replaces_a_bundle_whole_under_its_lock(bundle, capsys):
    before = json.loads((bundle / "manifest.json").read_text())
    assert main(["export", "--model", "default", "--out", str(bundle), "--force", "--seed", "1",
                 "--num-reference", "3"]) == 0
    after = json.loads((bundle / "manifest.json").read_text())
    assert after["files"]["reference.npz"] != before["files"]["reference.npz"]
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")], "temporaries beside the bundle"


def test_an_export_killed_earlier_leaves_nothing_the_next_one_keeps(tmp_path):
    out = tmp_path / "b"
    code = ("import os, signal, deploy.export as e\n"
            "real = e._write_bundle\n"
            "def write(config, tmp):\n"
            "    (tmp / 'half').write_text('x'); os.kill(os.getpid(), signal.SIGKILL)\n"
            "e._write_bundle = write\n"
            f"from deploy.cli import main; main(['export', '--model', 'default', '--out', {str(out)!r}])\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == -9 and [p.name for p in tmp_path.iterdir() if p.name.startswith(".b.trtdeploy-")]
    assert main(["export", "--model", "default", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# --- item 7: every input validated before anything is written -----------------------------------


@pytest.mark.parametrize("label", [99, -5])
def test_a_label_outside_the_classes_fails_before_anything_is_written(bundle, train, tmp_path, capsys, label):
    images = sorted(train.rglob("*.png"))[:20]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p} {label if i == 7 else i % 10}\n" for i, p in enumerate(images)))
    assert main(["calibrate", str(bundle), "--data", str(train), "--num-images", "16"]) == 0  # files to keep
    before = snapshot(bundle)
    assert main(["calibrate", str(bundle), "--data", str(listing), "--recalibrate"]) == 2
    (line,) = errors(capsys)
    assert line.startswith(f"error: {listing}: label {label} of entry ") and "outside 0..9" in line
    assert snapshot(bundle) == before


# --- item 9: the disk fills, the file system is read-only, --out is a file ------------------------


def fail_writes(monkeypatch, code: int, after: int = 0) -> list[Path]:
    """Make the (after+1)-th and later writes of a temporary fail with `code`."""
    real, seen = deploy.fsutil.write_bytes_to, []

    def write(tmp, data):
        seen.append(tmp)
        if len(seen) > after:
            raise OSError(code, os.strerror(code), str(tmp))
        real(tmp, data)

    for module in (deploy.fsutil, sys.modules["deploy.bundle"]):
        monkeypatch.setattr(module, "write_bytes_to", write)
    return seen


@pytest.mark.parametrize("code,name,advice", [(errno.ENOSPC, "ENOSPC", "free some space"),
                                              (errno.EROFS, "EROFS", "the file system is read-only")])
@pytest.mark.parametrize("command", ["calibrate", "fp16"])
def test_a_failing_write_is_one_line_and_leaves_the_bundle_as_it_was(bundle, train, monkeypatch, capsys, code, name,
                                                                      advice, command):
    before = snapshot(bundle)
    fail_writes(monkeypatch, code, after=1)  # the second file of the update fails
    argv = ["calibrate", str(bundle), "--data", str(train), "--num-images", "16"] if command == "calibrate" \
        else ["fp16", str(bundle)]
    assert main(argv) == 2
    (line,) = errors(capsys)
    assert f", {name}); {advice}" in line and str(bundle) in line, line
    assert snapshot(bundle) == before
    assert not [p for p in bundle.rglob(".*trtdeploy-*")]


def test_parity_commits_its_json_and_html_together(bundle, monkeypatch, capsys):
    assert main(["parity", str(bundle), "--backends", "ort-fp32"]) == 0
    reports = bundle / "reports"
    before = snapshot(reports)
    fail_writes(monkeypatch, errno.ENOSPC, after=1)  # parity.json written, parity.html fails
    assert main(["parity", str(bundle), "--backends", "ort-fp32"]) == 2
    assert "ENOSPC" in errors(capsys)[0]
    assert snapshot(reports) == before  # the old pair, not a new json beside the old html


def test_parity_out_that_cannot_be_written_is_refused_before_the_run(bundle, tmp_path, monkeypatch, capsys):
    import deploy.parity as parity

    monkeypatch.setattr(parity, "run_parity", lambda *a, **k: pytest.fail("ran before checking --out"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["parity", str(bundle), "--out", str(blocker)]) == 2
    assert errors(capsys) == [f"error: {blocker}: exists and is not a directory; choose another --out"]
    assert main(["parity", str(bundle), "--out", str(blocker / "reports")]) == 2
    assert "is a file, so" in errors(capsys)[0]
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "parity.json").write_text("[1, 2]")  # not ours: never replaced
    assert main(["parity", str(bundle), "--out", str(tmp_path / "r")]) == 2
    assert "is not a trtdeploy parity report" in errors(capsys)[0]


# --- item 12: non-finite inputs ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["parity", "calibrate"])
def test_nan_inputs_are_refused_naming_the_file_and_rows(bundle, tmp_path, capsys, command):
    x = np.random.default_rng(0).uniform(-1, 1, (6, 3, 32, 32)).astype(np.float32)
    x[2, 0, 0, 0] = np.nan
    x[4, 1, 2, 3] = np.inf
    path = tmp_path / "inputs.npy"
    np.save(path, x)
    before = snapshot(bundle)
    assert main([command, str(bundle), "--data", str(path)]) == 2
    assert errors(capsys) == [f"error: {path}: NaN or inf values in row(s) 2, 4; inputs must be finite "
                              "(fix or drop those rows)"]
    assert snapshot(bundle) == before


# --- item 13: the smaller checks ------------------------------------------------------------------


@pytest.mark.parametrize("threshold,said", [
    ("ort-int8:logits:top1_agreement=-5", "top1_agreement must be between 0 and 1, got -5"),
    ("cosine_min=2", "cosine_min must be between -1 and 1"),
    ("trt-fp64:top1_agreement=0.9", "unknown backend or precision 'trt-fp64'"),
])
def test_thresholds_out_of_range_or_for_unknown_backends_are_refused(bundle, capsys, threshold, said):
    assert main(["parity", str(bundle), "--threshold", threshold]) == 2
    (line,) = errors(capsys)
    assert said in line


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_bench_warmup_must_be_finite(bundle, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["bench", str(bundle), "--warmup", value])
    assert e.value.code == 2 and f"argument --warmup: must be a finite number >= 0, got '{value}'" in \
        capsys.readouterr().err


def test_a_bad_trt_version_fails_before_the_statistics_pass(bundle, train, monkeypatch, capsys):
    import calibration.stats

    monkeypatch.setattr(calibration.stats, "collect_statistics", lambda *a, **k: pytest.fail("statistics ran"))
    assert main(["calibrate", str(bundle), "--data", str(train), "--trt-version", "ten"]) == 2
    assert errors(capsys) == ["error: cannot parse TensorRT version 'ten'; expected MAJOR.MINOR.PATCH"]


def test_a_huge_image_is_said_in_one_line_not_by_pil(bundle, tmp_path):
    path = tmp_path / "huge.png"
    Image.new("RGB", (12000, 12000), (40, 80, 120)).save(path)  # 144 megapixels, above PIL's warning limit
    r = subprocess.run([sys.executable, "-m", "deploy", "infer", str(bundle), str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "DecompressionBombWarning" not in r.stderr
    assert f"{path}: 144 megapixels" in r.stderr and r.stderr.count("144 megapixels") == 1


@pytest.mark.parametrize("command", [["infer", "BUNDLE", "IMAGE", "--engine", "PLAN"], ["doctor", "BUNDLE"]])
def test_a_sidecar_that_is_a_json_list_is_one_line(bundle, train, capsys, command):
    plan = bundle / "engines" / "resnet_v2_digits.fp16.plan"
    plan.parent.mkdir()
    plan.write_bytes(b"plan")
    plan.with_suffix(".json").write_text("[1, 2, 3]")
    argv = [{"BUNDLE": str(bundle), "IMAGE": str(next(train.rglob("*.png"))), "PLAN": str(plan)}.get(a, a)
            for a in command]
    assert main(argv) == 2
    lines = errors(capsys)
    assert any(f"{plan.with_suffix('.json')}: not an engine sidecar (a JSON list, not an object)" in ln for ln in lines)


@pytest.mark.parametrize("out,hit", [("calibration/scales.plan", "calibration/scales.json"),
                                     ("manifest.plan", "manifest.json"), ("model.plan", None)])
def test_build_out_never_lands_on_a_bundle_file_or_one_no_build_wrote(bundle, train, capsys, out, hit):
    assert main(["calibrate", str(bundle), "--data", str(train), "--num-images", "16"]) == 0
    capsys.readouterr()
    if hit is None:  # model.json: not a bundle file, but a file no build wrote
        (bundle / "model.json").write_text('{"mine": true}')
    before = snapshot(bundle)
    assert main(["build", str(bundle), "--precision", "fp16", "--out", str(bundle / out)]) == 2
    (line,) = errors(capsys)
    assert (f"would overwrite the bundle's {hit}" in line) if hit else \
        ("model.json: exists and was not written by `trtdeploy build`" in line), line
    assert snapshot(bundle) == before
