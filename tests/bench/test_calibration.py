"""deploy.bench.calibration and `tools/benchmark.py calibration`: ours against ONNX Runtime's
quantize_static on the same model and images."""
from __future__ import annotations

import json

import pytest

from .fakes import load_tool


def test_calibration_benchmark_runs_both_sides(tmp_path, capsys):
    """The real thing on the default model's architecture (random weights, 8 noise images):
    both calibrations run, the JSON says so, and each side leaves a Q/DQ model behind."""
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
    assert result["ours_seconds"] > 0 and result["peer_seconds"] > 0
    assert result["ratio_peer_over_ours"] == pytest.approx(result["peer_seconds"] / result["ours_seconds"], rel=0.05)
    assert result["ours_tensors_observed"] > 0
    # The same machine record as every other JSON we write.
    assert {"cpu", "cpu_count", "tools"} <= set(result["machine"]) and "trtdeploy" in result["machine"]["tools"]
    # One fresh process per extra --num-images value: seconds per image and its peak RSS.
    assert [p["num_images"] for p in result["points"]] == [4, 12]
    for point in result["points"]:
        assert point["seconds_per_image"] == pytest.approx(point["seconds"] / point["num_images"], abs=1e-3)
        assert 100 < point["peak_rss_mb"] < 4000 and 0 < point["statistics_seconds"] <= point["seconds"]
    assert "VmHWM" in result["peak_rss_method"]
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
