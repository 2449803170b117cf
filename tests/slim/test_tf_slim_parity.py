"""Acceptance: a checkpoint written by tf-slim's own resnet_v2 loads by name into ours and gives
the same logits and end_points (max abs error <= 1e-4 x max |logit|, each end point scaled by its
own largest value; `predictions`, a softmax, within what the logit error allows)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf_slim", reason="tf-slim is a test-only dependency (the dev extra)")

from deploy.parity.metrics import softmax_error_bound  # noqa: E402  (its derivation is there)
from deploy.slim.checkpoint import load_slim_checkpoint  # noqa: E402
from deploy.slim.net import SlimNet  # noqa: E402
from deploy.slim.netspec import zoo_spec  # noqa: E402

HERE = Path(__file__).parent
# FP32 implementations differ by summation order (TensorFlow's oneDNN picks kernels per CPU:
# AVX2, AVX-512, AMX), ~1e-6 of the magnitude of what is summed; 1e-4 of the largest value leaves
# room for 50 layers, while a wrong weight or layout is orders of magnitude above it.
SCALED_TOL = 1e-4


def end_point_errors(key: str, ours: np.ndarray, ref: np.ndarray, net_ours: np.ndarray,
                     net_ref: np.ndarray) -> list[str]:
    """Why end point `key` of ours is not tf-slim's (empty: it matches). `net_*` are the logits."""
    if ours.shape != ref.shape:
        return [f"{key}: shape {ours.shape} != {ref.shape}"]
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    if key == "predictions":
        excess = diff.max(axis=-1) - softmax_error_bound(net_ours, net_ref)
        if excess.max() > 0:
            return [f"{key}: max |dp| {diff.max():.3g} exceeds what the logit error allows by {excess.max():.3g}"]
        return []
    limit = SCALED_TOL * max(float(np.abs(ref).max()), 1e-6)
    return [f"{key}: max |diff| {diff.max():.3g} > {limit:.3g}"] if diff.max() > limit else []


def test_predictions_are_judged_by_the_logit_error():
    """Logits of random-weight size (~800) differing by 1e-6 relative, as oneDNN's kernels on
    another CPU do: the logits pass, the probabilities move by ~2e-3 and must pass too; a
    softmax gone wrong (another axis, a stale tensor) must not."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 300, (2, 3, 3, 1001)).astype(np.float32)
    z_other = (z * (1 + rng.normal(0, 1e-6, z.shape))).astype(np.float32)
    # Two nearly tied leaders in one row: there the probabilities are most sensitive.
    z[0, 0, 0, :2] = z[0, 0, 0].max() + [0.0, 1e-3]
    z_other[0, 0, 0, :2] = z[0, 0, 0, :2] + [4e-3, -4e-3]
    p, p_other = tf.nn.softmax(z).numpy(), tf.nn.softmax(z_other).numpy()
    assert end_point_errors("logits", z_other, z, z_other, z) == []
    assert np.abs(p_other - p).max() > 10 * SCALED_TOL * np.abs(p).max()  # the old rule fails this
    assert end_point_errors("predictions", p_other, p, z_other, z) == []
    wrong_axis = tf.nn.softmax(z_other, axis=1).numpy()
    assert end_point_errors("predictions", wrong_axis, p, z_other, z)
    assert end_point_errors("predictions", np.roll(p_other, 1, axis=0), p, z_other, z)

CASES = [
    # model, input size, output_stride, global_pool
    pytest.param("resnet_v2_50", 224, None, True, id="resnet_v2_50-224"),
    pytest.param("resnet_v2_50", 225, 16, False, id="resnet_v2_50-atrous16-nopool-225"),
    pytest.param("resnet_v2_50", 161, None, True, id="resnet_v2_50-odd161"),
]


@pytest.mark.parametrize("model,size,output_stride,global_pool", CASES)
def test_matches_tf_slim(tmp_path, model, size, output_stride, global_pool):
    num_classes = 1001
    subprocess.run(
        [sys.executable, str(HERE / "slim_reference.py"), model, str(size),
         str(output_stride or "none"), str(int(global_pool)), str(num_classes), str(tmp_path)],
        check=True, capture_output=True)
    ref = np.load(tmp_path / "reference.npz")
    # tf-slim 1.1.0 has no spatial_squeeze: compare with ours unsqueezed.
    ours = SlimNet(zoo_spec(model, num_classes=num_classes, output_stride=output_stride,
                            global_pool=global_pool, spatial_squeeze=False))
    loaded = load_slim_checkpoint(ours.variables_by_name, tmp_path / "model.ckpt", model)
    assert loaded == len(ours.variables_by_name)
    net, end_points = ours(tf.constant(ref["images"]))
    want = ref["net"]
    assert net.shape == want.shape
    assert np.abs(net.numpy() - want).max() <= SCALED_TOL * np.abs(want).max()
    slim_keys = {k[3:] for k in ref.files if k.startswith("ep:")}
    assert slim_keys <= set(end_points), sorted(slim_keys - set(end_points))
    assert "predictions" in slim_keys
    errors = [e for key in sorted(slim_keys)
              for e in end_point_errors(key, end_points[key].numpy(), ref[f"ep:{key}"], net.numpy(), want)]
    assert not errors, errors
