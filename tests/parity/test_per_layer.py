"""deploy.parity.per_layer: per-layer errors with known answers, the ranking, the calibrate line."""
from __future__ import annotations

import shlex

import numpy as np
import pytest

from deploy.cli import build_parser
from deploy.errors import DataError
from deploy.parity import LayerError, compare_intermediates, keep_in_high_precision, per_layer_section, rank_layers


def test_compare_intermediates_and_rank_layers():
    rng = np.random.default_rng(4)
    order = [f"resnet_v2_50/block{i}" for i in range(1, 6)]
    fp32 = {n: rng.standard_normal((2, 8, 4, 4)) for n in order}
    # Relative error 0.01, 0.012, 0.10 (layer 3 adds most), 0.11, 0.15 (layer 5 adds 0.04).
    target = dict(zip(order, [0.01, 0.012, 0.10, 0.11, 0.15]))
    other = {}
    for n in order:
        noise = rng.standard_normal(fp32[n].shape)
        other[n] = fp32[n] + noise * (target[n] * np.linalg.norm(fp32[n]) / np.linalg.norm(noise))
    stats = compare_intermediates(fp32, other, order)
    assert list(stats) == order
    for n in order:
        assert stats[n].rel_error == pytest.approx(target[n], rel=1e-9)
        assert 0.98 < stats[n].cosine <= 1.0
    ranked = rank_layers(stats)
    assert [r.name for r in ranked][:3] == [order[2], order[4], order[0]]
    assert ranked[0].growth == pytest.approx(0.088)
    assert keep_in_high_precision(ranked, 2) == [order[2], order[4]]
    with pytest.raises(DataError, match="block9"):
        compare_intermediates(fp32, other, order + ["resnet_v2_50/block9"])
    other[order[1]][0, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match="block2.*NaN/inf"):
        compare_intermediates(fp32, other, order)


def test_per_layer_section_names_layers_and_command(tmp_path):
    layers = {"m/block1/unit_1/bottleneck_v2": LayerError(rel_error=0.01, cosine=1.0),
              "m/block1/unit_2/bottleneck_v2": LayerError(rel_error=0.2, cosine=0.98),
              "m/block1/unit_3/bottleneck_v2": LayerError(rel_error=0.15, cosine=0.99)}
    nodes = [("Conv__7", "Conv"),  # tf2onnx renamed the root conv: unmappable by scope
             ("m/block1/unit_1/bottleneck_v2/conv1/Conv2D", "Conv"),
             ("m/block1/unit_1/bottleneck_v2/conv1/BatchNorm/Relu", "Relu"),
             ("m/block1/unit_2/bottleneck_v2/conv1/Conv2D", "Conv"),
             ("m/block1/unit_2/bottleneck_v2/add", "Add"),
             ("m/block1/unit_20/bottleneck_v2/conv1/Conv2D", "Conv")]
    root = tmp_path / "my bundle"
    s = per_layer_section({"ort-int8": layers, "fp16": layers}, root, keep=3, onnx_nodes=nodes,
                          calibration_data="/data/calib")
    e = s["ort-int8"]
    assert e.keep_high_precision == ("m/block1/unit_2/bottleneck_v2", "m/block1/unit_1/bottleneck_v2")
    assert e.exclude_nodes["m/block1/unit_2/bottleneck_v2"] == ["m/block1/unit_2/bottleneck_v2/conv1/Conv2D",
                                                                "m/block1/unit_2/bottleneck_v2/add"]
    assert e.command == (f"trtdeploy calibrate '{root}' --data /data/calib --keep-fp32 "
                         "m/block1/unit_2/bottleneck_v2/conv1/Conv2D m/block1/unit_2/bottleneck_v2/add "
                         "m/block1/unit_1/bottleneck_v2/conv1/Conv2D")
    assert shlex.split(e.command)[:6] == ["trtdeploy", "calibrate", str(root), "--data", "/data/calib", "--keep-fp32"]
    assert shlex.split(e.command)[6:] == [n for layer in e.keep_high_precision for n in e.exclude_nodes[layer]]
    assert e.unmapped == ()
    assert s["fp16"].command is None
    # Without node names there is no command; a layer without nodes is reported.
    assert per_layer_section({"int8": layers}, root)["int8"].command is None
    only_root = per_layer_section({"int8": {"m/conv1": LayerError(rel_error=0.3)}}, root, onnx_nodes=nodes)
    assert only_root["int8"].unmapped == ("m/conv1",) and only_root["int8"].command is None


def test_keep_fp32_command_parses_with_the_real_calibrate_cli(tmp_path):
    """The command parses with the real `calibrate` CLI into exactly the kept layers' node names."""
    layers = {"m/block1/unit_1/bottleneck_v2": LayerError(rel_error=0.01), "m/block1/unit_2/bottleneck_v2":
              LayerError(rel_error=0.2)}
    nodes = [("m/block1/unit_2/bottleneck_v2/conv1/Conv2D", "Conv"), ("m/block1/unit_2/bottleneck_v2/add", "Add")]
    e = per_layer_section({"int8": layers}, tmp_path / "my bundle", onnx_nodes=nodes, calibration_data="d")["int8"]
    args = build_parser().parse_args(shlex.split(e.command)[1:])
    assert args.command == "calibrate" and args.bundle == tmp_path / "my bundle"
    assert args.keep_fp32 == [n for layer in e.keep_high_precision for n in e.exclude_nodes[layer]]
