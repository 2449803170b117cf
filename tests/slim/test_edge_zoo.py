"""The edge zoo's builders on small inputs: MobileNet v1/v2 and Inception as slim builds them
(variable names, depths, `_make_divisible`, finegrain mode, `output_stride`), the auxiliary head
skipped when a checkpoint carries it, end points through `--list-outputs`."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from deploy.cli import main  # noqa: E402
from deploy.errors import CheckpointError  # noqa: E402
from deploy.slim.checkpoint import load_slim_checkpoint, save_slim_checkpoint  # noqa: E402
from deploy.slim.mobilenet_v2 import depths, make_divisible  # noqa: E402
from deploy.slim.net import SlimNet  # noqa: E402
from deploy.slim.netspec import NetSpec, zoo_spec  # noqa: E402


def _x(size, seed=(3, 4)):
    return tf.random.stateless_uniform([2, size, size, 3], seed=list(seed), minval=-1, maxval=1)


def _shapes(net):
    return {k: tuple(v.shape) for k, v in net.variables_by_name.items()}


def test_make_divisible_rounds_as_slim():
    # nearest multiple of 8, never under min_value, never 10% under the value
    assert [make_divisible(v, 8) for v in (32 * 0.35, 16 * 0.35, 24 * 0.5, 96 * 0.35, 1280 * 1.4, 4.0)] == \
        [16, 8, 16, 32, 1792, 8]
    assert make_divisible(16 * 0.35, 8, 16) == 16 and make_divisible(9, 1) == 9


def test_mobilenet_v2_widths_and_finegrain_mode():
    """The thin wrappers keep the last conv 1280 wide (finegrain_classification_mode); without it
    the 1280 thins too; _140 widens it."""
    assert depths(zoo_spec("mobilenet_v2"))[:4] == [32, 16, 24, 24] and depths(zoo_spec("mobilenet_v2"))[-1] == 1280
    thin = zoo_spec("mobilenet_v2_035")
    assert thin.finegrain_classification_mode and depths(thin)[:3] == [16, 8, 8] and depths(thin)[-1] == 1280
    assert depths(zoo_spec("mobilenet_v2_035", finegrain_classification_mode=False))[-1] == 448
    assert depths(zoo_spec("mobilenet_v2_140"))[-1] == 1792


def test_mobilenet_v1_variable_names_and_end_points():
    net = SlimNet(zoo_spec("mobilenet_v1_025", num_classes=7))
    shapes = _shapes(net)
    assert shapes["MobilenetV1/Conv2d_0/weights"] == (3, 3, 3, 8)  # max(int(32 * 0.25), 8)
    assert shapes["MobilenetV1/Conv2d_1_depthwise/depthwise_weights"] == (3, 3, 8, 1)
    assert shapes["MobilenetV1/Conv2d_13_pointwise/weights"] == (1, 1, 256, 256)
    assert shapes["MobilenetV1/Conv2d_13_pointwise/BatchNorm/gamma"] == (256,)  # MobileNet's BN has gamma
    assert shapes["MobilenetV1/Logits/Conv2d_1c_1x1/biases"] == (7,)
    assert not [n for n in shapes if n.endswith("biases") and "Logits" not in n]
    logits, ep = net(_x(128))
    assert logits.shape == (2, 7) and ep["Conv2d_13_pointwise"].shape == (2, 4, 4, 256)
    assert ep["AvgPool_1a"].shape == (2, 1, 1, 256)  # 7x7 reduced to the 4x4 map
    assert np.min(ep["Conv2d_3_depthwise"].numpy()) >= 0 and np.max(ep["Conv2d_3_depthwise"].numpy()) <= 6  # ReLU6
    assert ep["Predictions"] is ep["predictions"] and ep["Logits"] is logits


def test_mobilenet_output_stride_keeps_the_variables_and_densifies():
    """DeepLab-style dense features: the same checkpoint, the last map at 1/16 or 1/8."""
    for name, point in (("mobilenet_v1_025", "Conv2d_13_pointwise"), ("mobilenet_v2_035", "layer_19")):
        nominal = SlimNet(zoo_spec(name, num_classes=None))
        dense = SlimNet(zoo_spec(name, num_classes=None, output_stride=8))
        assert _shapes(nominal) == _shapes(dense)
        assert nominal(_x(128))[1][point].shape[1] == 4 and dense(_x(128))[1][point].shape[1] == 16


def test_mobilenet_v2_blocks_as_slim():
    net = SlimNet(zoo_spec("mobilenet_v2_035", num_classes=5))
    shapes = _shapes(net)
    assert "MobilenetV2/expanded_conv/expand/weights" not in shapes  # expansion 1: no expand conv
    assert shapes["MobilenetV2/expanded_conv/depthwise/depthwise_weights"] == (3, 3, 16, 1)
    assert shapes["MobilenetV2/expanded_conv_3/expand/weights"] == (1, 1, 8, 48)  # 6 x 8, divisible by 8
    assert shapes["MobilenetV2/expanded_conv_3/expand/BatchNorm/moving_mean"] == (48,)
    assert shapes["MobilenetV2/Conv_1/weights"] == (1, 1, 112, 1280)
    _, ep = net(_x(96))
    # residual where the stride is 1 and the depth stays: layer_4 (expanded_conv_2) adds, layer_3 does not
    ops = {op.type for op in tf.function(lambda x: net(x)[0]).get_concrete_function(
        tf.TensorSpec([1, 96, 96, 3])).graph.get_operations() if "expanded_conv_2/" in op.name}
    assert "AddV2" in ops or "Add" in ops
    assert ep["layer_4"] is ep["expanded_conv_2"] is ep["layer_4/output"] and ep["global_pool"].shape == (2, 1, 1, 1280)
    assert "layer_3/expansion_output" in ep and "layer_2/expansion_output" not in ep


def test_inception_names_no_gamma_no_aux_head_and_the_checkpoint_aux_head_is_skipped(tmp_path):
    spec = zoo_spec("inception_v3", depth_multiplier=0.1, num_classes=4)
    net = SlimNet(spec)
    shapes = _shapes(net)
    assert shapes["InceptionV3/Mixed_6c/Branch_1/Conv2d_0b_1x7/weights"] == (1, 7, 16, 16)  # max(int(160 x .1), 16)
    assert "InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/BatchNorm/beta" in shapes  # slim's own name, kept
    assert not [n for n in shapes if n.endswith("gamma") or "AuxLogits" in n]
    aux = {"InceptionV3/AuxLogits/Conv2d_2b_1x1/weights": tf.Variable(tf.zeros([1, 1, 16, 4]))}
    save_slim_checkpoint({**net.variables_by_name, **aux}, tmp_path / "model.ckpt")
    fresh = SlimNet(spec, random_init=False)
    with pytest.raises(CheckpointError, match="InceptionV3/AuxLogits/Conv2d_2b_1x1/weights that InceptionV3 does"):
        load_slim_checkpoint(fresh.variables_by_name, tmp_path / "model.ckpt", "InceptionV3")
    assert load_slim_checkpoint(fresh.variables_by_name, tmp_path / "model.ckpt", "InceptionV3",
                                skip=spec.family_module.skipped_variables) == len(shapes)
    x = _x(299)
    np.testing.assert_array_equal(fresh(x)[0].numpy(), net(x)[0].numpy())


def test_a_checkpoint_of_another_family_is_named(tmp_path):
    v2 = SlimNet(zoo_spec("mobilenet_v2_035", num_classes=5, scope="MobilenetV1"))
    save_slim_checkpoint(v2.variables_by_name, tmp_path / "v2.ckpt")
    v1 = SlimNet(zoo_spec("mobilenet_v1_025", num_classes=5))
    with pytest.raises(CheckpointError, match="holds a mobilenet_v2 network under MobilenetV1/, the model is "
                                              "mobilenet_v1"):
        load_slim_checkpoint(v1.variables_by_name, tmp_path / "v2.ckpt", "MobilenetV1")


def test_list_outputs_of_the_new_families(tmp_path, capsys):
    assert main(["export", "--model", "mobilenet_v2_035", "--image-size", "96", "96", "--list-outputs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("outputs of mobilenet_v2_035 (mobilenet_v2) at 96x96")
    names = dict(line.split(None, 1) for line in lines[1:])
    assert names["layer_18/output"] == "[N, 3, 3, 112]" and names["expanded_conv_16"] == "[N, 3, 3, 112]"
    assert names["Logits"] == "[N, 1001]" and "layer_5/depthwise_output" in names
    spec = tmp_path / "incv1.json"
    spec.write_text('{"name": "incv1", "family": "inception_v1", "image_size": [96, 96], "global_pool": true}')
    assert main(["export", "--spec", str(spec), "--list-outputs"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names[:3] == ["logits", "predictions", "Conv2d_1a_7x7"] and "Mixed_5c" in names and "global_pool" in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["incv1.json"]


def test_per_layer_ranking_sees_the_new_units():
    """The per-layer analysis (parity's chart, `calibrate --max-drop`'s order) works at MobileNet's
    depthwise/pointwise layers and expanded convs and Inception's mixed blocks, each mapped to
    the ONNX nodes under its scope; the head is one layer."""
    from types import SimpleNamespace

    from deploy.parity.per_layer import layer_names, layer_nodes

    def names(spec, size):
        _, ep = SlimNet(spec)(_x(size))
        return layer_names(SimpleNamespace(end_points={k: str(id(v)) for k, v in ep.items()}))

    v1 = names(zoo_spec("mobilenet_v1_025"), 64)
    assert v1[:3] == ["Conv2d_0", "Conv2d_1_depthwise", "Conv2d_1_pointwise"] and len(v1) == 28
    assert v1[-1] == "Logits/Conv2d_1c_1x1"
    v2 = names(zoo_spec("mobilenet_v2_035"), 64)
    assert v2 == ["Conv", "expanded_conv", *(f"expanded_conv_{i}" for i in range(1, 17)), "Conv_1",
                  "Logits/Conv2d_1c_1x1"]
    inception = names(NetSpec.from_json({"name": "i", "family": "inception_v1", "image_size": [96, 96],
                                         "global_pool": True}), 96)
    assert inception == ["Conv2d_1a_7x7", "Conv2d_2b_1x1", "Conv2d_2c_3x3", "Mixed_3b", "Mixed_3c", "Mixed_4b",
                         "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f", "Mixed_5b", "Mixed_5c", "Logits/Conv2d_0c_1x1"]
    nodes = [("MobilenetV2/expanded_conv_3/expand/Conv2D", "Conv"), ("MobilenetV2/expanded_conv_3/add", "Add"),
             ("MobilenetV2/expanded_conv_3/depthwise/BatchNorm/Relu6", "Clip"),
             ("MobilenetV2/expanded_conv_13/expand/Conv2D", "Conv"), ("MobilenetV2/Logits/global_pool", "AveragePool"),
             ("MobilenetV2/Logits/Conv2d_1c_1x1/Conv2D", "Conv"),
             ("InceptionV1/Mixed_4b/Branch_3/MaxPool_0a_3x3", "MaxPool"), ("InceptionV1/Mixed_4b/concat", "Concat"),
             ("r/block1/unit_1/bottleneck_v2/conv1/Conv2D", "Conv")]
    assert layer_nodes("expanded_conv_3", nodes) == ["MobilenetV2/expanded_conv_3/expand/Conv2D",
                                                     "MobilenetV2/expanded_conv_3/add"]
    assert layer_nodes("Logits/Conv2d_1c_1x1", nodes) == ["MobilenetV2/Logits/global_pool",
                                                          "MobilenetV2/Logits/Conv2d_1c_1x1/Conv2D"]
    assert layer_nodes("Mixed_4b", nodes) == ["InceptionV1/Mixed_4b/Branch_3/MaxPool_0a_3x3"]
    # ResNet's scoped units as before: from the start of the name only
    assert layer_nodes("r/block1/unit_1/bottleneck_v2", nodes) == ["r/block1/unit_1/bottleneck_v2/conv1/Conv2D"]
    assert layer_nodes("block1/unit_1/bottleneck_v2", nodes) == layer_nodes("unit_1", nodes) == []


def test_the_readme_mobilenet_example_is_a_backbone_at_one_eighth():
    import json
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    spec = NetSpec.from_json(json.loads(readme.split("```json")[2].split("```", 1)[0]), source="README.md")
    assert spec.family == "mobilenet_v2" and spec.num_classes is None
    _, ep = SlimNet(spec)(_x(160))
    assert ep["layer_5/output"].shape == (2, 20, 20, 16)  # 160 / 8; 32 x 0.5 channels
