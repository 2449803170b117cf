"""Acceptance: a checkpoint written by tf-slim's own resnet_v2 loads by name into ours and gives
the same logits and end_points (max abs error <= 1e-4 x max |logit|)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("tf_slim", reason="tf-slim is a test-only dependency (the dev extra)")

from deploy.slim.checkpoint import load_slim_checkpoint  # noqa: E402
from deploy.slim.resnet_v2 import ResNetConfig, ResNetV2  # noqa: E402

HERE = Path(__file__).parent

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
    ours = ResNetV2(ResNetConfig.for_name(model, num_classes=num_classes, output_stride=output_stride,
                                          global_pool=global_pool, spatial_squeeze=False))
    loaded = load_slim_checkpoint(ours.variables_by_name, tmp_path / "model.ckpt", model)
    assert loaded == len(ours.variables_by_name)
    net, end_points = ours(tf.constant(ref["images"]))
    want = ref["net"]
    assert net.shape == want.shape
    scale = np.abs(want).max()
    assert np.abs(net.numpy() - want).max() <= 1e-4 * scale
    slim_keys = {k[3:] for k in ref.files if k.startswith("ep:")}
    assert slim_keys <= set(end_points), sorted(slim_keys - set(end_points))
    for key in slim_keys:
        a, b = end_points[key].numpy(), ref[f"ep:{key}"]
        assert a.shape == b.shape, key
        assert np.abs(a - b).max() <= 1e-4 * max(np.abs(b).max(), 1e-6), key
