"""export_parity, the export's own TF-vs-ONNX-Runtime gate, on arrays with known answers (no
TensorFlow needed): softmax outputs exported with their logits are judged by what the logit
error allows, so a checkpoint's verdict does not hang on how close two of its logits happen to be."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.export import EXPORT_TOLERANCE_SCALED, export_parity
from deploy.parity.metrics import softmax_error_bound


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z.astype(np.float64) - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def checkpoint_outputs(seed: int, tie: bool) -> tuple[dict, dict]:
    """What TF and ONNX Runtime give for one random-weight dense net, as the issue measured
    resnet_v2_101 --num-classes 21 --no-global-pool: logits up to ~4e5 whose two FP32
    implementations differ by ~1e-6 relative (summation order); `tie`: two leading logits of one
    position 1.5 apart, where the softmax is most sensitive."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.3e5, (2, 5, 5, 21)).astype(np.float32)
    if tie:
        z[0, 2, 3, :2] = z[0, 2, 3].max() + np.float32(4e5) + np.array([0.0, 1.5], np.float32)
    z_ort = (z * (1 + rng.uniform(-2.8e-6, 2.8e-6, z.shape))).astype(np.float32)
    return {"logits": z, "predictions": softmax(z)}, {"logits": z_ort, "predictions": softmax(z_ort)}


def test_the_same_kind_of_checkpoint_always_passes():
    """Six checkpoints, three with a near tie: the logits' scaled error is ~3e-6 in all six (well
    inside EXPORT_TOLERANCE_SCALED), and so every verdict is PASS. Before, the ties' probabilities
    (differing by ~0.1, far above 1e-4 of max |p| = 1) failed three of them."""
    verdicts = []
    for seed in range(6):
        tf_out, ort_out = checkpoint_outputs(seed, tie=seed % 2 == 1)
        parity = export_parity(tf_out, ort_out)
        logits, predictions = parity["outputs"]["logits"], parity["outputs"]["predictions"]
        assert logits["max_abs_scaled"] < 1e-5 < EXPORT_TOLERANCE_SCALED
        if seed % 2:  # the probabilities of the tie moved far more than any element limit
            assert predictions["max_abs"] > 100 * EXPORT_TOLERANCE_SCALED
        assert predictions["softmax_excess"] <= 0
        verdicts.append(parity["pass"])
    assert verdicts == [True] * 6


def test_a_softmax_that_is_not_the_logits_softmax_still_fails():
    tf_out, ort_out = checkpoint_outputs(1, tie=True)
    wrong_axis = softmax(np.moveaxis(ort_out["logits"], 1, -1)).reshape(ort_out["logits"].shape)
    for broken in (wrong_axis, np.roll(ort_out["predictions"], 1, axis=0), ort_out["predictions"] * 0.9):
        parity = export_parity(tf_out, {**ort_out, "predictions": broken})
        assert not parity["pass"] and parity["outputs"]["predictions"]["softmax_excess"] > 1e-2


def test_without_its_logits_a_softmax_keeps_the_element_limit():
    """`--outputs predictions` alone: nothing to derive a bound from, so the scaled limit judges it."""
    tf_out, ort_out = checkpoint_outputs(1, tie=True)
    parity = export_parity({"predictions": tf_out["predictions"]}, {"predictions": ort_out["predictions"]})
    assert not parity["pass"] and "softmax_excess" not in parity["outputs"]["predictions"]
    parity = export_parity({"predictions": tf_out["predictions"]}, {"predictions": tf_out["predictions"].copy()})
    assert parity["pass"]


def test_the_bound_holds_where_it_is_derived():
    """The bound (derived in deploy.parity.metrics.softmax_error_bound) on random logit pairs of
    every size: never exceeded; and tight (within 5%) where one of two equal logits moves, p = 1/2,
    the case it is worst for: tight enough to catch a softmax that is not of these logits."""
    rng = np.random.default_rng(3)
    for scale in (1.0, 1e2, 1e5):
        z = rng.normal(0, scale, (200, 21)).astype(np.float32)
        z2 = (z + rng.normal(0, 1e-2 * scale, z.shape)).astype(np.float32)
        gap = np.abs(softmax(z).astype(np.float64) - softmax(z2)).max(axis=-1)
        assert (gap <= softmax_error_bound(z, z2)).all()
    z = np.zeros((1, 2), np.float32)
    z2 = np.array([[0.0, 0.1]], np.float32)  # one logit moved by d at p = 1/2: |dp| ~ d/4
    assert softmax_error_bound(z, z2)[0] == pytest.approx(np.abs(softmax(z) - softmax(z2)).max(), rel=0.05)


def test_export_prints_how_a_softmax_stood_against_its_logits():
    from deploy.parity.summary import export_parity_line as parity_numbers

    tf_out, ort_out = checkpoint_outputs(1, tie=True)
    lines = {name: parity_numbers(m) for name, m in export_parity(tf_out, ort_out)["outputs"].items()}
    assert "(0 beyond what the logits' error allows)" in lines["predictions"]
    assert "beyond" not in lines["logits"]
