"""deploy.bench.calibration and `tools/benchmark.py calibration`: ours against ONNX Runtime's
quantize_static and the plain FP32 forward pass on the same model and images, and the memory of
`trtdeploy calibrate` itself."""
from __future__ import annotations

import json

import pytest

from .fakes import load_tool


def test_calibration_benchmark_runs_both_sides(tmp_path, capsys):
    """The real thing on the default model's architecture (random weights, 8 noise images): both
    calibrations and the forward pass run, the JSON says so with the ratios, each calibration
    leaves a Q/DQ model behind, and the memory points are `trtdeploy calibrate` processes."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tensorflow")
    import onnx

    tool = load_tool()
    out_file = tmp_path / "calib.json"
    rc = tool.main(["calibration", "--model", "resnet_v2_digits", "--image-size", "32", "--num-images", "8", "4",
                    "12", "--batch-size", "4", "--workdir", str(tmp_path / "work"), "--out", str(out_file)])
    assert rc == 0
    result = json.loads(out_file.read_text())
    assert json.loads(capsys.readouterr().out) == result  # stdout carries the JSON and nothing else
    assert result["num_images"] == 8 and result["model"] == "resnet_v2_digits"
    assert result["ours_seconds"] > 0 and result["peer_seconds"] > 0 and result["forward_seconds"] > 0
    # The ratios come from the unrounded seconds (ours and the peer's rounded to 0.01 s, the forward
    # pass's to 0.001 s): each lies between the ratios of the rounded values moved by half a unit.
    ours, peer, forward = result["ours_seconds"], result["peer_seconds"], result["forward_seconds"]
    assert (peer - 0.005) / (ours + 0.005) <= result["ratio_peer_over_ours"] <= (peer + 0.005) / (ours - 0.005)
    assert (ours - 0.005) / (forward + 0.0005) <= result["ratio_ours_over_forward"] <= (ours + 0.005) / (forward - 0.0005)
    kernel = result["kernel"]
    assert kernel["first_run_seconds"] > 0 and kernel["cached_run_seconds"] > 0
    assert result["ours_tensors_observed"] > 0
    # The same machine record as every other JSON we write.
    assert {"cpu", "cpu_count", "tools"} <= set(result["machine"]) and "trtdeploy" in result["machine"]["tools"]
    # One `trtdeploy calibrate` process per extra --num-images value: seconds per image, its peak RSS.
    assert [p["num_images"] for p in result["points"]] == [4, 12]
    for point in result["points"]:
        assert point["seconds_per_image"] == pytest.approx(point["seconds"] / point["num_images"], abs=1e-3)
        assert 100 < point["peak_rss_mb"] < 4000 and point["exit_status"] == 0
        assert point["summary"].startswith("calibrated resnet_v2_digits") and f"{point['num_images']} images" in point[
            "summary"]
    assert "VmHWM" in result["peak_rss_method"] and result["points_command"].startswith("trtdeploy calibrate")
    assert len(list((tmp_path / "work" / "labelled_12_256").glob("*/*.png"))) == 12  # labelled: scored too
    # A fresh process's own peak: not this (TensorFlow-holding) process's memory, which a
    # forked child's ru_maxrss also counts.
    from deploy.bench.calibration import peak_rss_mb

    assert max(p["peak_rss_mb"] for p in result["points"]) < peak_rss_mb()
    peer = onnx.load(str(tmp_path / "work" / "peer.int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in peer.graph.node)
    ours = onnx.load(str(tmp_path / "work" / "resnet_v2_digits_32" / "model.int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in ours.graph.node)
    with pytest.raises(SystemExit):
        tool.main(["calibration", "--method", "max"])
    assert tool.main(["calibration", "--num-images", "0"]) == 2  # refused before any export


@pytest.mark.parametrize("option", [["--warmup", "3"], ["--iters", "3"], ["--backends", "tf"]])
def test_calibration_refuses_the_timing_options_it_would_ignore(option, capsys):
    with pytest.raises(SystemExit) as e:
        load_tool().build_parser().parse_args(["calibration", *option])
    assert e.value.code == 2 and f"unrecognized arguments: {option[0]}" in capsys.readouterr().err
    # forward times with them
    assert load_tool().build_parser().parse_args(["forward", *option]).func.__name__ == "run_forward"
