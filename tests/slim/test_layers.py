"""Unit tests of the slim building blocks on tiny inputs (the slim ResnetUtilsTest cases)."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from deploy.errors import CheckpointError  # noqa: E402
from deploy.slim import conv_layers as layers  # noqa: E402
from deploy.slim.checkpoint import load_slim_checkpoint, save_slim_checkpoint  # noqa: E402
from deploy.slim.net import SlimNet  # noqa: E402
from deploy.slim.netspec import zoo_spec  # noqa: E402
from deploy.slim.resnet import resnet_v2, resnet_v2_block  # noqa: E402


def _ctx():
    return layers.Context(store=layers.VariableStore(seed=0))


def _ramp(n):
    # tf-slim's test image: a ramp, so padding placement shows in the values.
    return tf.reshape(tf.range(n * n, dtype=tf.float32), [1, n, n, 1])


@pytest.mark.parametrize("n", [4, 5])
def test_subsample(n):
    x = _ramp(n)
    y = layers.subsample(x, 2)
    np.testing.assert_array_equal(y.numpy(), x.numpy()[:, ::2, ::2, :])
    assert layers.subsample(x, 1) is x


@pytest.mark.parametrize("n", [4, 5])
def test_conv2d_same_equals_conv_then_subsample(n):
    """conv2d_same(stride 2) == conv(stride 1, SAME) then subsample, for odd and even sizes."""
    ctx = _ctx()
    x = _ramp(n)
    w = ctx.store.get("w/weights", (3, 3, 1, 1), "ones")
    y = layers.conv2d_same(ctx, x, 1, 3, stride=2, name="w", normalizer=False, activation_fn=None)
    ref = layers.subsample(tf.nn.conv2d(x, w, 1, "SAME"), 2)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), rtol=1e-6)
    if n % 2 == 0:
        # TF's own SAME padding with stride 2 differs on even sizes: the reason conv2d_same exists.
        plain = tf.nn.conv2d(x, w, 2, "SAME")
        assert not np.allclose(plain.numpy(), y.numpy())


def test_output_stride_atrous_matches_dense_then_subsampled():
    """With output_stride the atrous network computes the dense features at a finer grid."""
    blocks = [resnet_v2_block("block1", 2, 2, 2), resnet_v2_block("block2", 2, 2, 2),
              resnet_v2_block("block3", 2, 2, 1)]
    store = layers.VariableStore(seed=3)
    x = tf.random.stateless_uniform([1, 33, 33, 3], seed=[1, 2])
    nominal, _ = resnet_v2(x, blocks, None, global_pool=False, include_root_block=False, store=store)
    dense, _ = resnet_v2(x, blocks, None, global_pool=False, include_root_block=False, store=store,
                         output_stride=2)
    assert nominal.shape[1] == 9 and dense.shape[1] == 17
    np.testing.assert_allclose(dense.numpy()[:, ::2, ::2], nominal.numpy(), atol=1e-4, rtol=1e-4)


def test_unreachable_output_stride():
    blocks = [resnet_v2_block("block1", 2, 1, 2)]
    x = tf.zeros([1, 8, 8, 3])
    with pytest.raises(ValueError, match="output_stride"):
        resnet_v2(x, blocks, None, include_root_block=False, output_stride=4)
    with pytest.raises(ValueError, match="multiple of 4"):
        resnet_v2(x, blocks, None, output_stride=6)


def test_variable_names_are_slims():
    m = SlimNet(zoo_spec("resnet_v2_digits", num_classes=10))
    names = set(m.variables_by_name)
    for expected in ("resnet_v2_digits/conv1/weights", "resnet_v2_digits/conv1/biases",
                     "resnet_v2_digits/block1/unit_1/bottleneck_v2/preact/moving_mean",
                     "resnet_v2_digits/block1/unit_1/bottleneck_v2/conv1/BatchNorm/gamma",
                     "resnet_v2_digits/block2/unit_1/bottleneck_v2/shortcut/biases",
                     "resnet_v2_digits/postnorm/moving_variance", "resnet_v2_digits/logits/weights"):
        assert expected in names
    # conv1/conv2 have BN instead of biases; conv3 has biases and no BN
    assert "resnet_v2_digits/block1/unit_1/bottleneck_v2/conv1/biases" not in names
    assert "resnet_v2_digits/block1/unit_1/bottleneck_v2/conv3/BatchNorm/beta" not in names


def _digits(seed=0, **kw):
    return SlimNet(zoo_spec("resnet_v2_digits", num_classes=10, **kw), seed=seed)


def test_checkpoint_round_trip(tmp_path):
    a, b = _digits(seed=1), _digits(seed=2)
    x = tf.random.stateless_uniform([2, 32, 32, 3], seed=[0, 1])
    save_slim_checkpoint(a.variables_by_name, tmp_path / "ck" / "model.ckpt")
    assert not any(p.name.startswith(".") for p in (tmp_path / "ck").iterdir())
    assert not np.allclose(a(x)[0].numpy(), b(x)[0].numpy())
    load_slim_checkpoint(b.variables_by_name, tmp_path / "ck" / "model.ckpt", "resnet_v2_digits")
    np.testing.assert_array_equal(a(x)[0].numpy(), b(x)[0].numpy())


def test_checkpoint_mismatches_are_named(tmp_path):
    prefix = tmp_path / "model.ckpt"
    save_slim_checkpoint(_digits().variables_by_name, prefix)
    with pytest.raises(CheckpointError, match=r"logits/\w+ has shape \[.*--num-classes"):
        wrong = SlimNet(zoo_spec("resnet_v2_digits", num_classes=7))
        load_slim_checkpoint(wrong.variables_by_name, prefix, "resnet_v2_digits")
    full = _digits().variables_by_name
    partial = {k: v for k, v in full.items() if "postnorm" not in k}
    save_slim_checkpoint(partial, tmp_path / "partial.ckpt")
    with pytest.raises(CheckpointError, match="missing variable resnet_v2_digits/postnorm"):
        load_slim_checkpoint(full, tmp_path / "partial.ckpt", "resnet_v2_digits")
    with pytest.raises(CheckpointError, match="does not use"):
        load_slim_checkpoint(partial, prefix, "resnet_v2_digits")
    with pytest.raises(CheckpointError, match="no variables under resnet_v2_50/"):
        load_slim_checkpoint({"resnet_v2_50/conv1/weights": full["resnet_v2_digits/conv1/weights"]},
                             prefix, "resnet_v2_50")
    (tmp_path / "junk.ckpt.index").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable TensorFlow checkpoint"):
        load_slim_checkpoint(full, tmp_path / "junk.ckpt", "resnet_v2_digits")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_slim_checkpoint(full, tmp_path / "absent.ckpt", "resnet_v2_digits")
