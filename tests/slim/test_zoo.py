"""The zoo's builders on tiny specs: ResNet v1 and VGG as tf-slim builds them, the shared stacker,
and checkpoints of another family refused by name."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from deploy.errors import CheckpointError  # noqa: E402
from deploy.slim import resnet  # noqa: E402
from deploy.slim.checkpoint import load_slim_checkpoint, save_slim_checkpoint  # noqa: E402
from deploy.slim.net import SlimNet  # noqa: E402
from deploy.slim.netspec import NetSpec  # noqa: E402
from deploy.slim.netspec import zoo_spec  # noqa: E402
from deploy.slim.registry import REGISTRY  # noqa: E402

TINY_V1 = {"name": "tiny", "family": "v1", "blocks": [["block1", 4, 2, 2], ["block2", 8, 2, 2], ["block3", 8, 1, 1]],
           "num_classes": 5, "image_size": [33, 33], "preprocessing": "vgg"}
TINY_VGG = {"name": "tiny_vgg", "family": "vgg", "blocks": [["conv1", 1, 4], ["conv2", 2, 8]],
            "num_classes": 3, "image_size": [28, 28], "preprocessing": "vgg", "fc_depth": 16}


def _net(d, seed=0, **changes):
    return SlimNet(NetSpec.from_json({**d, **changes}), seed=seed)


def _x(size, seed=(1, 2)):
    return tf.random.stateless_uniform([2, size, size, 3], seed=list(seed), minval=-1, maxval=1)


def test_resnet_v1_variable_names_are_slims():
    names = set(_net(TINY_V1).variables_by_name)
    unit = "tiny/block1/unit_1/bottleneck_v1"
    for expected in ("tiny/conv1/weights", "tiny/conv1/BatchNorm/moving_mean",  # v1's root conv has BN + ReLU
                     f"{unit}/shortcut/weights", f"{unit}/shortcut/BatchNorm/beta",
                     f"{unit}/conv1/BatchNorm/gamma", f"{unit}/conv3/BatchNorm/moving_variance",
                     "tiny/logits/weights", "tiny/logits/biases"):
        assert expected in names, expected
    # BN after every conv, so no biases there; no pre-activation and no postnorm (those are v2's)
    assert not [n for n in names if n.endswith("/biases") and "/logits/" not in n]
    assert not [n for n in names if "preact" in n or "postnorm" in n]
    # unit_2 keeps block1's depth, so its shortcut is the (subsampled) input: no variables
    assert not [n for n in names if "block1/unit_2/bottleneck_v1/shortcut" in n]


def test_resnet_v1_stride_in_last_unit_and_relu_after_add():
    net = _net(TINY_V1)
    logits, ep = net(_x(33))
    assert ep["tiny/conv1"].shape[1:3] == (17, 17)
    assert ep["tiny/block1/unit_1/bottleneck_v1"].shape[1:3] == (9, 9)  # after pool1; unit 1 has stride 1
    assert ep["tiny/block1/unit_2/bottleneck_v1"].shape[1:3] == (5, 5)  # the block's stride sits here
    assert ep["tiny/block1"] is ep["tiny/block1/unit_2/bottleneck_v1"]
    assert np.min(ep["tiny/block2/unit_1/bottleneck_v1"].numpy()) >= 0  # ReLU after the addition
    assert np.min(ep["tiny/block2/unit_1/bottleneck_v1/conv3"].numpy()) < 0  # conv3 has no activation
    assert logits.shape == (2, 5) and ep["tiny/logits"].shape == (2, 1, 1, 5)
    np.testing.assert_allclose(ep["predictions"].numpy().sum(-1), 1.0, rtol=1e-5)


def test_one_stacker_for_v1_and_v2():
    # both families build through resnet.build, whose one generator runs resnet.stack_blocks_dense
    assert resnet.RESNET_V1.build is resnet.build and resnet.RESNET_V2.build is resnet.build


@pytest.mark.parametrize("family", ["v1", "v2"])
def test_output_stride_atrous_matches_dense_then_subsampled(family):
    """With output_stride the atrous network computes the nominal features on a finer grid."""
    spec = {**TINY_V1, "family": family, "include_root_block": False, "num_classes": None, "global_pool": False}
    nominal = _net(spec, seed=3)
    dense = SlimNet(NetSpec.from_json({**spec, "output_stride": 2}), seed=3)
    x = _x(33)
    a, b = nominal(x)[0].numpy(), dense(x)[0].numpy()
    assert a.shape[1] == 9 and b.shape[1] == 17
    np.testing.assert_allclose(b[:, ::2, ::2], a, atol=1e-4 * np.abs(a).max(), rtol=0)


def test_vgg_layers_names_and_end_points():
    net = _net(TINY_VGG)
    names = set(net.variables_by_name)
    assert names == {f"tiny_vgg/{layer}/{v}" for layer in ("conv1/conv1_1", "conv2/conv2_1", "conv2/conv2_2",
                                                          "fc6", "fc7", "fc8") for v in ("weights", "biases")}
    assert tuple(net.variables_by_name["tiny_vgg/fc6/weights"].shape) == (7, 7, 8, 16)  # fc6: 7x7 VALID
    logits, ep = net(_x(28))
    assert list(ep)[:5] == ["tiny_vgg/conv1/conv1_1", "tiny_vgg/pool1", "tiny_vgg/conv2/conv2_1",
                            "tiny_vgg/conv2/conv2_2", "tiny_vgg/pool2"]
    assert ep["tiny_vgg/pool2"].shape == (2, 7, 7, 8) and ep["tiny_vgg/fc7"].shape == (2, 1, 1, 16)
    assert logits.shape == (2, 3) and ep["tiny_vgg/fc8"] is logits  # spatial squeeze, as tf-slim
    # dropout only in training
    np.testing.assert_array_equal(net(_x(28))[0].numpy(), logits.numpy())
    assert not np.allclose(net(_x(28), is_training=True)[0].numpy(), logits.numpy())


def test_zoo_resnet_v1_and_vgg_build_at_their_names():
    """Every zoo family builds under its tf-slim scope (shapes of the real layouts, no forward at 224)."""
    assert {"resnet_v1_50", "resnet_v1_101", "resnet_v1_152", "resnet_v1_200", "vgg_16", "vgg_19"} <= set(REGISTRY)
    v1 = SlimNet(zoo_spec("resnet_v1_50"))
    assert "resnet_v1_50/block4/unit_3/bottleneck_v1/conv3/BatchNorm/moving_mean" in v1.variables_by_name
    assert tuple(v1.variables_by_name["resnet_v1_50/logits/weights"].shape) == (1, 1, 2048, 1000)
    assert sum(int(np.prod(v.shape)) for v in v1.variables_by_name.values()
               if v.trainable) == 25_557_032  # the same layers as torchvision's resnet50: 25,557,032


def test_checkpoint_of_another_family_is_named(tmp_path):
    v2 = _net(TINY_V1, family="v2")
    save_slim_checkpoint(v2.variables_by_name, tmp_path / "v2.ckpt")
    with pytest.raises(CheckpointError, match=r"holds a resnet_v2 network under tiny/, the model is resnet_v1; "
                                              r"pick the matching --model \(or the spec's \"family\"\)"):
        load_slim_checkpoint(_net(TINY_V1).variables_by_name, tmp_path / "v2.ckpt", "tiny")


def test_weights_a_checkpoint_overwrites_start_as_zeros(tmp_path):
    """export builds with random_init=False when it loads a checkpoint: same net once loaded."""
    trained = _net(TINY_V1, seed=4)
    save_slim_checkpoint(trained.variables_by_name, tmp_path / "model.ckpt")
    blank = SlimNet(NetSpec.from_json(TINY_V1), random_init=False)
    assert not np.any(blank.variables_by_name["tiny/conv1/weights"].numpy())
    load_slim_checkpoint(blank.variables_by_name, tmp_path / "model.ckpt", "tiny")
    np.testing.assert_array_equal(blank(_x(33))[0].numpy(), trained(_x(33))[0].numpy())


def test_per_layer_ranking_sees_resnet_v1_units_and_vgg_layers():
    """The per-layer analysis (parity's ranking, `calibrate --max-drop`'s search order) works at
    units and layers: ResNet v1's bottleneck_v1 units and root conv, VGG's convs and fc layers,
    not the end points inside a unit."""
    from types import SimpleNamespace

    from deploy.parity.per_layer import layer_names

    def names(net, size):
        _, ep = net(_x(size))
        return layer_names(SimpleNamespace(end_points={k: k for k in ep}))

    units = [f"tiny/{b}/unit_{u}/bottleneck_v1" for b, n in (("block1", 2), ("block2", 2), ("block3", 1))
             for u in range(1, n + 1)]
    assert names(_net(TINY_V1), 33) == ["tiny/conv1", *units, "tiny/logits"]
    assert names(_net(TINY_VGG), 28) == [f"tiny_vgg/{layer}" for layer in (
        "conv1/conv1_1", "conv2/conv2_1", "conv2/conv2_2", "fc6", "fc7", "fc8")]
