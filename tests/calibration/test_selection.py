"""`calibrate --max-drop` and `--method auto` end to end on the default model, the held-out
split they evaluate on, and what they record (scales.json, manifest, parity report)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from deploy.bundle import TensorInfo
from deploy.data.inputs import InputSet
from deploy.data.preprocess import Preprocess
from deploy.errors import UsageError

INPUT = TensorInfo("input", (-1, 3, 4, 4), "float32", "NCHW")


def _array_set(tmp_path, n=50):
    path = tmp_path / "x.npz"
    np.savez(path, input=np.arange(n * 48, dtype=np.float32).reshape(n, 3, 4, 4), labels=np.arange(n) % 3)
    return InputSet.from_path(path, input=INPUT, preprocess=Preprocess("digits", 4, 4))


def test_held_out_split_is_seeded_disjoint_and_not_the_subset(tmp_path):
    ds = _array_set(tmp_path)
    rest, held = ds.split(10, seed=0)
    rows = lambda s: [int(r) for r in s.manifest()["indices"]]  # noqa: E731
    assert len(held) == 10 and len(rest) == 40
    assert not set(rows(rest)) & set(rows(held)) and sorted(rows(rest) + rows(held)) == list(range(50))
    assert rows(ds.split(10, seed=0)[1]) == rows(held)  # the same split every time
    assert rows(ds.split(10, seed=1)[1]) != rows(held)
    assert rows(ds.subset(10, seed=0)) != rows(held)  # its own key: not calibration's subset choice
    assert held.labels.tolist() == [r % 3 for r in rows(held)]
    with pytest.raises(UsageError, match="hold out"):
        ds.split(50)


pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")

from calibration.pipeline import CalibrationRequest, calibrate, evaluate_accuracy  # noqa: E402
from deploy.bundle import open_bundle  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.parity import ParityRequest, render_html, run_parity  # noqa: E402

# Calibration images (after the held-out 20% of the training digits is set aside): enough for
# stable ranges, few enough for CI.
NUM_CALIB = 256


def _held_out_accuracy(bundle, test_folder):
    acc = evaluate_accuracy(open_bundle(bundle.root), test_folder, batch_size=128)
    assert acc.num_images == 360
    return acc


def _kept_nodes_have_no_quantized_inputs(bundle, nodes):
    int8 = onnx.load(str(bundle.root / "model.int8.onnx"))
    by_name = {n.name: n for n in int8.graph.node}
    for name in nodes:
        assert not any(i.endswith("_dequantized") for i in by_name[name].input), name


def test_percentile_90_within_one_point_by_keeping_layers_in_float(bundle, digits, capsys):
    """The issue's case: percentile 90 loses ~40 points of top-1; --max-drop 1.0 keeps the most
    sensitive layers in float until the held-out part of the training digits is within 1 point,
    and the model written is within 1 point on the held-out test digits too."""
    assert main(["calibrate", str(bundle.root), "--data", str(digits[0]), "--num-images", str(NUM_CALIB),
                 "--method", "percentile", "--percentile", "90", "--max-drop", "1.0"]) == 0
    out = capsys.readouterr().out
    scales = json.loads((bundle.root / "calibration/scales.json").read_text())
    budget = scales["budget"]
    kept = budget["kept_nodes"]
    with capsys.disabled():  # the issue asks the test to say it; shown in CI's log
        print(f"\npercentile 90, --max-drop 1.0: {len(kept)} node(s) kept in high precision "
              f"({len(budget['kept_layers'])} layers, {len(budget['trials'])} trials): {kept}")
    assert budget["met"] and budget["trials"][0]["drop_points"] > 10  # it had something to fix
    assert 0 < len(kept) and budget["chosen"]["drop_points"] <= 1.0
    assert f"with {len(kept)} node(s) kept in high precision: {kept[0]}" in out and "nodes kept" in out
    # Each trial's line: nodes kept -> top-1, drop, fidelity.
    assert out.count("%") >= len(budget["trials"])
    assert scales["evaluation"]["held_out"] and scales["evaluation"]["count"] == 287  # 20% of 1437
    info = json.loads((bundle.root / "manifest.json").read_text())["precision"]["int8"]
    assert info["budget"]["kept_nodes"] == kept and info["budget"]["max_drop_points"] == 1.0
    assert set(kept) <= set(scales["keep_fp32"]) and set(kept) <= set(info["keep_fp32"])
    _kept_nodes_have_no_quantized_inputs(bundle, kept)
    acc = _held_out_accuracy(bundle, digits[1])
    assert abs(acc.top1["fp32"] - acc.top1["int8"]) <= 0.01

    result = run_parity(open_bundle(bundle.root), ParityRequest.of("ort-fp32,ort-int8", data=digits[1]))
    section = result.int8_choice
    assert section.budget["kept_nodes"] == kept and section.method == "percentile"
    assert result.to_json()["int8_selection"]["budget"]["kept_nodes"] == kept
    html = render_html(result)
    assert 'id="int8-selection"' in html and kept[0] in html and f"({len(kept)} node(s))" in html


def test_auto_within_half_a_point_and_reused_on_rerun(bundle, digits, capsys):
    args = ["calibrate", str(bundle.root), "--data", str(digits[0]), "--num-images", str(NUM_CALIB),
            "--method", "auto", "--max-drop", "0.5"]
    assert main(args) == 0
    out = capsys.readouterr().out
    scales = json.loads((bundle.root / "calibration/scales.json").read_text())
    kept = scales["budget"]["kept_nodes"]
    chosen = scales["auto"]["chosen"]
    with capsys.disabled():
        print(f"\nauto, --max-drop 0.5: chose {chosen}, {len(kept)} node(s) kept in high precision: {kept}")
    candidates = scales["auto"]["candidates"]
    assert [(c["method"], c["percentile"]) for c in candidates] == [
        ("entropy", None), ("percentile", 99.9), ("percentile", 99.99), ("percentile", 99.999), ("mse", None)]
    best = min(candidates, key=lambda c: (-c["int8"], c["fidelity"]))
    assert (best["method"], best["percentile"]) == (chosen["method"], chosen["percentile"])
    assert "<- chosen" in out and "fidelity" in out
    assert scales["method"] == "auto" and scales["budget"]["met"]
    info = json.loads((bundle.root / "manifest.json").read_text())["precision"]["int8"]
    assert info["method"] == chosen["method"] and info["requested_method"] == "auto"
    assert info["algorithm"] == ("EntropyCalibration2" if chosen["method"] == "entropy" else "MinMaxCalibration")
    _kept_nodes_have_no_quantized_inputs(bundle, kept)
    acc = _held_out_accuracy(bundle, digits[1])
    assert abs(acc.top1["fp32"] - acc.top1["int8"]) <= 0.01

    before = (bundle.root / "model.int8.onnx").read_bytes()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reused calibration/scales.json" in out and "reused the recorded choice" in out
    assert (bundle.root / "model.int8.onnx").read_bytes() == before


def test_eval_data_without_labels_is_judged_by_agreement(bundle, digits, tmp_path):
    unlabelled = tmp_path / "flat"
    unlabelled.mkdir()
    for i, png in enumerate(sorted(digits[1].rglob("*.png"))[:40]):
        shutil.copy(png, unlabelled / f"{i:03d}.png")
    result = calibrate(bundle, CalibrationRequest(digits[0], num_images=64, max_drop=0.0, eval_data=unlabelled))
    assert result.budget.chosen.evaluation.metric == "agreement"
    assert result.evaluation == {**result.evaluation, "held_out": False, "count": 40, "labels": False}
    assert result.budget.met and result.budget.chosen.evaluation.agreement == 1.0
    assert result.evaluation["int8"] == result.budget.chosen.evaluation.to_json()


def test_eval_data_alone_scores_the_written_model(bundle, digits, capsys):
    assert main(["calibrate", str(bundle.root), "--data", str(digits[0]), "--num-images", "64",
                 "--eval-data", str(digits[1])]) == 0
    out = capsys.readouterr().out
    scales = json.loads((bundle.root / "calibration/scales.json").read_text())
    final = scales["evaluation"]["int8"]
    assert "budget" not in scales and "auto" not in scales and not scales["evaluation"]["held_out"]
    assert final["num_images"] == 360 and final["metric"] == "accuracy" and final["fp32"] == 1.0
    assert f"model.int8.onnx on the evaluation images: top-1 {final['int8']:.2%} (FP32 100.00%)" in out
    acc = _held_out_accuracy(bundle, digits[1])
    assert acc.top1["int8"] == pytest.approx(final["int8"])  # the very model written was scored


def test_a_budget_no_set_meets_exits_1_after_one_trial_per_layer(bundle, digits, capsys, monkeypatch):
    import calibration.budget

    monkeypatch.setattr(calibration.budget, "_within", lambda evaluation, max_drop: False)
    assert main(["calibrate", str(bundle.root), "--data", str(digits[0]), "--num-images", "64",
                 "--max-drop", "0.1"]) == 1
    out = capsys.readouterr().out
    budget = json.loads((bundle.root / "calibration/scales.json").read_text())["budget"]
    assert not budget["met"] and len(budget["trials"]) == len(budget["ranking"]) + 1
    assert "no set of ranked layers meets 0.1 points" in out and "written as that" in out
    best = min(budget["trials"], key=lambda t: (-t["int8"], t["fidelity"], len(t["nodes"])))
    assert budget["kept_nodes"] == best["nodes"]
    _kept_nodes_have_no_quantized_inputs(bundle, best["nodes"])


@pytest.mark.parametrize("argv, message", [
    (["--max-drop", "-1"], "argument --max-drop: must be a finite number >= 0, got '-1'"),
    (["--max-drop", "nan"], "argument --max-drop: must be a finite number >= 0, got 'nan'"),
    (["--max-drop", "1", "--eval-data", "/no/such/dir"], "/no/such/dir: no such file"),
])
def test_bad_budget_arguments_are_usage_errors(bundle, digits, capsys, argv, message):
    before = sorted(p.name for p in bundle.root.rglob("*"))
    try:  # an option's type refuses it in argparse (SystemExit), the rest in the command
        status = main(["calibrate", str(bundle.root), "--data", str(digits[0]), "--num-images", "16", *argv])
    except SystemExit as e:
        status = e.code
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err
    assert sorted(p.name for p in bundle.root.rglob("*")) == before
