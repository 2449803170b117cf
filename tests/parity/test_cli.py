"""`trtdeploy parity` as a user meets it: exit codes, engine profiles, input data errors and
--skip-bad, paths that do not exist, a report that compared less than the one it would replace,
random-weight warnings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy.bundle import Bundle
from deploy.cli import main
from deploy.errors import InputError
from deploy.parity import Skip, backends
from deploy.runners.base import Runner, TensorSpec

from . import fakes
from .fakes import record

C = 3
SIDE = 8


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class ImageRunner(Runner):
    """A linear 'model' over 3x8x8 NCHW images: the whole run without TensorFlow or ONNX files."""

    def __init__(self, w: np.ndarray, name: str):
        self.w, self.name = w, name

    def input_specs(self):
        return [TensorSpec("input", (None, 3, SIDE, SIDE), np.dtype(np.float32))]

    def _infer(self, feed):
        z = feed["input"].reshape(len(feed["input"]), -1).astype(np.float64) @ self.w
        return {"logits": z, "predictions": softmax(z)}


def image_bundle(root: Path, weights: str = "random") -> Bundle:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    manifest = {
        "format": 1,
        "model": {"name": "tiny", "num_classes": C, "weights": weights, "image_size": [SIDE, SIDE]},
        "inputs": [{"name": "input", "shape": [-1, 3, SIDE, SIDE], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": "logits", "shape": [-1, C], "dtype": "float32"},
                    {"name": "predictions", "shape": [-1, C], "dtype": "float32"}],
        "preprocessing": {"preset": "digits", "height": SIDE, "width": SIDE, "layout": "NCHW"},
        "label_offset": 0,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    w = rng.standard_normal((3 * SIDE * SIDE, C))
    x = rng.uniform(0, 1, (6, 3, SIDE, SIDE)).astype(np.float32)
    z = ImageRunner(w, "ref")._infer({"input": x})
    np.savez(root / "reference.npz", input=x, **{f"output:{k}": v for k, v in z.items()})
    record(root, "reference.npz")
    bundle = Bundle(root)
    bundle.w = w
    return bundle


@pytest.fixture
def bundle(tmp_path, monkeypatch) -> Bundle:
    """ort-fp32 and ort-int8 run (as the linear model), everything else is skipped."""
    b = image_bundle(tmp_path / "bundle")
    runners = {n: ImageRunner(b.w, n) for n in ("ort-fp32", "ort-int8")}
    monkeypatch.setattr(backends, "make_runner",
                        lambda name, bundle, engines=None: runners.get(name, Skip(f"{name}: not in this test")))
    return b


@pytest.fixture
def images(tmp_path) -> Path:
    """Two class folders of PNGs and one file that is not an image."""
    root = tmp_path / "images"
    rng = np.random.default_rng(1)
    for label in ("0", "1"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    (root / "1" / "broken.png").write_bytes(b"not a png")
    return root


def one_error_line(capsys) -> str:
    # Progress bars (stderr) are not messages; they end in "\r" or carry a "|" bar.
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if line.strip() and "|" not in line]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# --- exit codes and engine profiles, on the tiny linear model --------------------------------


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    bundle = fakes.make_bundle(tmp_path / "b")
    fakes.install_runners(monkeypatch, bundle, {"ort-fp32": None, "ort-int8": fakes.swap_top2(every=2)})
    out = tmp_path / "reports"
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,trt-fp16", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PASS: all 1 backend(s) that ran met their thresholds" in text
    assert str(out / "parity.html") in text and "skipped trt-fp16" in text
    assert (out / "parity.html").is_file() and json.loads((out / "parity.json").read_text())["pass"] is True

    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,ort-int8"]) == 1
    assert "FAIL ort-int8" in capsys.readouterr().out
    assert (bundle.root / "reports" / "parity.html").is_file()  # default --out
    # The same failure passes once its threshold is relaxed.
    assert main(["parity", str(bundle.root), "--backends", "ort-int8", "--threshold", "int8:top1_agreement=0.4",
                 "--threshold", "int8:accuracy_drop=none", "--threshold", "int8:cosine_mean=none"]) == 0

    assert main(["parity", str(bundle.root), "--backends", "trt"]) == 2
    assert main(["parity", str(bundle.root), "--threshold", "int8:bogus=1"]) == 2
    assert main(["parity", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err


class ProfileRunner(fakes.FakeRunner):
    """Takes at most `max_batch` samples a call and refuses more, as a TensorRT engine does."""

    max_batch = 8

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def validate(self, feed):
        super().validate(feed)
        if len(feed["input"]) > self.max_batch:
            raise InputError(f"{self.name}: batch {len(feed['input'])} is outside the engine's profile "
                             f"[1, {self.max_batch}]")
        self.batches.append(len(feed["input"]))


def test_cli_splits_batches_above_an_engine_profile(tmp_path, monkeypatch, capsys):
    """parity's default --batch-size 16 against an engine built with --batch 1 8 8."""
    bundle = fakes.make_bundle(tmp_path / "b", n=40)
    engine = ProfileRunner(bundle.w, "trt-fp32")
    fakes.install_runners(monkeypatch, bundle, {"ort-fp32": None, "trt-fp32": engine})
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,trt-fp32", "--out", str(tmp_path / "r")]) == 0
    assert "PASS: all 2 backend(s)" in capsys.readouterr().out
    assert engine.batches == [8, 8] * 2 + [8]  # 40 images in batches of 16 = 16 + 16 + 8
    result = json.loads((tmp_path / "r" / "parity.json").read_text())
    assert result["backends"]["trt-fp32"]["outputs"]["logits"]["samples"] == 40


# --- D: one set of words for input data; suggest only options parity has --------------------


def test_unreadable_image_suggests_parities_own_skip_bad(bundle, images, capsys):
    argv = ["parity", str(bundle.root), "--data", str(images), "--backends", "ort-fp32,ort-int8"]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert "1/broken.png" in line and "pass --skip-bad" in line and "calibrat" not in line.replace(str(images), "")
    assert not (bundle.reports_dir / "parity.json").exists()
    # The option it names exists and does what it says; the report lists what was left out.
    assert main(argv + ["--skip-bad"]) == 0
    result = json.loads((bundle.reports_dir / "parity.json").read_text())
    assert result["data"]["skipped"] == ["1/broken.png"] and result["data"]["num_images"] == 6


def test_empty_data_speaks_of_input_data(bundle, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["parity", str(bundle.root), "--data", str(tmp_path / "empty")]) == 2
    line = one_error_line(capsys)
    assert "input data is an image folder" in line and "calibrat" not in line.replace(str(tmp_path), "")


# --- E: a path the user typed that does not exist is a usage error ------------------------


@pytest.mark.parametrize("extra,named", [
    (["--engine", "/no/such.fp16.plan", "--backends", "trt-fp16"], "--engine /no/such.fp16.plan: no such engine file"),
    (["--engine", "/no/such.plan"], "--engine /no/such.plan: no such engine file"),
    (["--data", "/no/such/folder"], "--data /no/such/folder: no such file or directory"),
    (["--threshold", "/no/such.json"], "/no/such.json: unreadable threshold file"),
])
def test_missing_typed_paths_exit_2_before_any_work(bundle, capsys, extra, named):
    assert main(["parity", str(bundle.root), *extra]) == 2
    assert named in one_error_line(capsys)
    assert not bundle.reports_dir.exists()


def test_missing_bundle_exits_2(tmp_path, capsys):
    assert main(["parity", str(tmp_path / "nope")]) == 2
    assert "no such bundle directory" in one_error_line(capsys)


# --- F: a report that compared less never silently replaces a fuller one --------------------


def test_report_that_compared_less_is_written_beside_the_previous(bundle, capsys, caplog):
    reports = bundle.reports_dir
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,ort-int8"]) == 0
    full_json, full_html = (reports / "parity.json").read_bytes(), (reports / "parity.html").read_bytes()
    capsys.readouterr()

    # Nothing runs (no engine here): exit 1 as before, but the full report stays where it was.
    caplog.clear()
    assert main(["parity", str(bundle.root), "--backends", "trt-fp16"]) == 1
    printed = capsys.readouterr()
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")  # stderr in a shell
    assert (reports / "parity.json").read_bytes() == full_json and (reports / "parity.html").read_bytes() == full_html
    beside = sorted(reports.glob("parity-*.html"))
    assert len(beside) == 1 and beside[0].with_suffix(".json").is_file()
    assert json.loads(beside[0].with_suffix(".json").read_text())["backends"]["trt-fp16"]["status"] == "skipped"
    assert f"{reports / 'parity.html'}: kept the previous report" in warned
    assert "ort-fp32, ort-int8 ran there, not in this run, where no backend ran" in warned
    assert str(beside[0]) in warned and f"report: {beside[0]}" in printed.out

    # Fewer images, or fewer backends, is less too; a second one gets a name of its own.
    caplog.clear()
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32,ort-int8", "--num-images", "2"]) == 0
    assert "6 images there, 2 in this run" in caplog.text
    assert len(list(reports.glob("parity-*.html"))) == 2
    assert (reports / "parity.json").read_bytes() == full_json

    # A run that compares as much replaces it, as before.
    caplog.clear()
    assert main(["parity", str(bundle.root), "--backends", "ort-int8,ort-fp32"]) == 0
    assert "kept the previous report" not in caplog.text
    assert (reports / "parity.json").read_bytes() != full_json


# --- H: random weights are said wherever results are shown ----------------------------------


@pytest.mark.parametrize("weights", ["random", "checkpoint"])
def test_random_weights_are_said_in_the_summary_json_and_html(tmp_path, monkeypatch, capsys, weights):
    b = image_bundle(tmp_path / "b", weights=weights)
    monkeypatch.setattr(backends, "make_runner", lambda name, bundle, engines=None: ImageRunner(b.w, name)
                        if name == "ort-fp32" else Skip("not here"))
    assert main(["parity", str(b.root), "--backends", "ort-fp32"]) == 0
    out = capsys.readouterr().out
    result = json.loads((b.reports_dir / "parity.json").read_text())
    page = (b.reports_dir / "parity.html").read_text()
    assert result["bundle"]["weights"] == weights
    said = "seeded random weights, not a trained model"
    if weights == "random":
        assert out.splitlines()[0] == f"WARNING: {said}: its classes and scores mean nothing (export with --checkpoint)"
        assert result["bundle"]["warnings"] == [out.splitlines()[0].removeprefix("WARNING: ")]
        assert 'class="note model-warning">WARNING: seeded random weights' in page
        assert "Model weights: <b>random</b>; input 8x8, not trained" in page
    else:
        assert "WARNING" not in out and result["bundle"]["warnings"] == [] and "model-warning" not in page
        assert "Model weights: <b>checkpoint</b>; input 8x8, trained at unknown" in page


def test_near_tied_large_logits_pass_fp32_by_what_the_logit_error_allows(tmp_path, monkeypatch, capsys):
    """Logits of random-weight size (~4e5, classes 1 and 2 tied within 3 in every row) and an FP32
    backend whose logits differ by up to 1e-6 relative (summation order): the logits pass at
    1e-6 scaled error, their probabilities differ by ~2e-2, and `predictions` must pass too, as
    what the logit error allows; the report says by how much it stayed within."""
    bundle = fakes.make_bundle(tmp_path / "b", labels=False)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((fakes.FEATURES, fakes.C)).astype(np.float32) * 1e3
    w[0, 1], w[0, 2] = 4e5, 4e5 - 3  # feature 0 is a constant 1: classes 1 and 2 lead, 3 apart
    w[1:, 2] = w[1:, 1]
    bundle.w = w
    x = np.load(bundle.root / "reference.npz")["input"]
    logits = x @ w
    np.savez(bundle.root / "reference.npz", input=x, **{"output:logits": logits,
                                                       "output:predictions": fakes.softmax(logits)})
    record(bundle.root, "reference.npz")
    wobble = rng.uniform(-1, 1, logits.shape[1])

    def summation_order(z):
        return (z * (1 + 1e-6 * wobble)).astype(np.float32)

    fakes.install_runners(monkeypatch, bundle, {"ort-fp32": summation_order})
    out = tmp_path / "reports"
    assert main(["parity", str(bundle.root), "--backends", "ort-fp32", "--out", str(out)]) == 0
    result = json.loads((out / "parity.json").read_text())
    metrics = result["backends"]["ort-fp32"]["outputs"]
    assert metrics["logits"]["max_abs_scaled"] < 2e-6 and metrics["logits"]["top1_agreement"] == 1.0
    assert metrics["predictions"]["max_abs_scaled"] > 1e-3 and metrics["predictions"]["softmax_excess"] <= 0
    page = (out / "parity.html").read_text()
    assert 'id="softmax"' in page and "0 of it beyond what the logit error allows" in page
    assert "max_abs_scaled beyond what the logit error allows ≤ 1.000e-04" in page
    capsys.readouterr()
