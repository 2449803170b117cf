"""Acceptance: MobileNet v1 and v2, full width and thinned, against an independent implementation:
tf-keras' `keras.applications` MobileNet / MobileNetV2 (weights=None, the architecture slim
builds), its weights copied into a checkpoint under tf-slim's names (keras_reference.py). The
checkpoint loads by name through `trtdeploy export --model NAME --checkpoint`, and the logits and
the chosen end points of the exported model (ONNX Runtime on model.onnx, and the SavedModel)
match Keras' on Keras' inputs within 1e-4 of each output's largest value (the bound and why:
test_tf_slim_zoo_parity.py); the probabilities within what the logit error allows.

At 224 the maps that stride 2 are even, where Keras' explicit (0, 1) padding is TensorFlow's
SAME, so Keras computes exactly slim's net. Keras' MobileNetV2 keeps the last conv 1280 wide
for every alpha <= 1: slim's finegrain_classification_mode, which mobilenet_v2_035 sets.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf_keras", reason="tf-keras is a test-only dependency (the dev extra)")

from tests.slim.test_tf_slim_zoo_parity import export_and_compare  # noqa: E402

HERE = Path(__file__).parent


def keras_reference(tmp_path: Path, family: str, alpha: float, size: int) -> dict[str, np.ndarray]:
    subprocess.run([sys.executable, str(HERE / "keras_reference.py"), family, str(alpha), str(size), str(tmp_path)],
                   check=True, capture_output=True)
    with np.load(tmp_path / "reference.npz") as z:
        return {k: z[k] for k in z.files}


CASES = [
    pytest.param("mobilenet_v1", "mobilenet_v1", 1.0, marks=pytest.mark.slow, id="mobilenet_v1"),
    pytest.param("mobilenet_v1_025", "mobilenet_v1", 0.25, id="mobilenet_v1_025"),
    pytest.param("mobilenet_v2", "mobilenet_v2", 1.0, marks=pytest.mark.slow, id="mobilenet_v2"),
    pytest.param("mobilenet_v2_035", "mobilenet_v2", 0.35, id="mobilenet_v2_035"),
]


@pytest.mark.parametrize("model, family, alpha", CASES)
def test_matches_keras_applications(tmp_path, model, family, alpha):
    ref = keras_reference(tmp_path, family, alpha, 224)
    errors = export_and_compare(tmp_path, ["--model", model], ref)
    last = "Conv2d_13_pointwise" if family == "mobilenet_v1" else "layer_19"
    assert f"onnxruntime:{last}" in errors and f"tf:{last}" in errors and "onnxruntime:logits" in errors
