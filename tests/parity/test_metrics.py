"""deploy.parity.metrics: per-output metrics and accuracy with known answers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.errors import DataError
from deploy.parity import AccuracyCounter, Thresholds, accuracy, compare_outputs

from .fakes import C, softmax, swap_top2


def test_identical_arrays_give_zero_error_and_full_agreement():
    x = np.random.default_rng(1).standard_normal((8, C))
    m = compare_outputs(x, x.copy())
    assert m.max_abs == 0 and m.mean_abs == 0 and m.max_rel == 0
    assert m.cosine_min == pytest.approx(1.0) and m.cosine_mean == pytest.approx(1.0)
    assert m.top1_agreement == 1.0 and m.top5_agreement == 1.0
    assert m.nonfinite == 0


def test_known_top1_permutation_gives_known_agreement():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((10, C))
    cand = swap_top2(every=3)(ref)  # rows 0, 3, 6, 9 swapped
    m = compare_outputs(ref, cand)
    assert m.top1_agreement == pytest.approx(6 / 10)
    assert m.top5_agreement == 1.0  # the reference top-1 is still second
    # Push the reference top-1 to the very bottom in two rows: top-5 loses them.
    cand2 = ref.copy()
    for i in (1, 2):
        cand2[i, ref[i].argmax()] = ref[i].min() - 1
    m2 = compare_outputs(ref, cand2)
    assert m2.top1_agreement == pytest.approx(8 / 10)
    assert m2.top5_agreement == pytest.approx(8 / 10)


def test_abs_rel_cosine_values():
    ref = np.zeros((2, 4))
    ref[:, 0] = 100.0
    cand = ref.copy()
    cand[0, 1] = 0.01  # |a| = 0 there: the floor 1e-3 * 100 = 0.1 is the denominator
    cand[1, 0] = 101.0  # 1% of a large value
    m = compare_outputs(ref, cand)
    assert m.max_abs == pytest.approx(1.0)
    assert m.mean_abs == pytest.approx(1.01 / 8)
    assert m.max_rel == pytest.approx(0.1)
    assert m.max_abs_scaled == pytest.approx(1.0 / 101.0 * 101.0 / 100.0)  # max|ref| is the reference's 100
    assert m.cosine_min == pytest.approx(100 / np.hypot(100, 0.01))


def test_opposite_and_zero_samples_cosine():
    ref = np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    cand = np.array([[-1.0, -2.0], [0.0, 0.0], [1.0, 0.0]])
    m = compare_outputs(ref, cand)
    assert m.cosine_min == pytest.approx(-1.0)
    assert m.cosine_mean == pytest.approx((-1.0 + 1.0 + 0.0) / 3)


def test_nonfinite_values_are_counted_fail_and_stay_json_safe():
    ref = np.ones((3, C))
    ref[:, 2] = 5
    cand = ref.copy()
    cand[1, 2] = np.nan
    cand[2, 0] = np.inf
    m = compare_outputs(ref, cand)
    assert m.nonfinite == 2
    assert m.top1_agreement == pytest.approx(1 / 3)  # rows with NaN/inf never agree
    json.dumps(m.to_json(), allow_nan=False)
    assert any("non-finite" in f for f in Thresholds.for_precision("int8").check(m))


def test_non_class_outputs_have_no_agreement():
    ref = np.random.default_rng(3).standard_normal((4, 3, 5, 5))
    m = compare_outputs(ref, ref + 1e-3)
    assert m.top1_agreement is None and m.top5_agreement is None
    assert m.max_abs == pytest.approx(1e-3)


def test_shape_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="shape"):
        compare_outputs(np.zeros((2, 3)), np.zeros((2, 4)))


def test_label_offset_maps_dataset_labels_to_logit_indices():
    labels = np.array([0, 1, 2, 3])
    logits = np.zeros((4, 5))
    logits[np.arange(4), labels + 1] = 1.0  # slim: background at index 0
    assert accuracy(logits, labels, label_offset=1).top1 == 100.0
    assert accuracy(logits, labels, label_offset=0).top1 == 0.0
    # top-5 of 5 logits always holds the label.
    assert accuracy(logits, labels, label_offset=0).top5 == 100.0
    with pytest.raises(DataError, match="label_offset"):
        accuracy(logits, np.array([4]) * np.ones(4, int), label_offset=1)


def test_per_class_accuracy_and_streaming_equal_whole():
    labels = np.array([0, 0, 1, 1, 1, 2])
    logits = np.zeros((6, 3))
    logits[np.arange(6), [0, 1, 1, 1, 0, 2]] = 1.0
    whole = accuracy(logits, labels)
    assert whole.per_class.to_json() == {"labels": [0, 1, 2], "count": [2, 3, 1],
                                         "top1": [50.0, pytest.approx(200 / 3), 100.0]}
    acc = AccuracyCounter()
    acc.update(logits[:4], labels[:4])
    acc.update(logits[4:], labels[4:])
    assert acc.summary().top1 == pytest.approx(whole.top1) == pytest.approx(400 / 6)


def test_a_softmax_is_judged_by_what_its_logits_error_allows():
    """The issue's numbers: logits ~4e5, scaled logit error ~5.6e-6 (inside fp32's 1e-4), a near
    tie whose probabilities differ by ~1e-2. With the logits, only the excess over the bound
    counts, and it is none; a softmax that is not of the logits is caught, with what it is judged by."""
    from deploy.parity.metrics import softmax_error_bound

    z = np.array([[4e5, 4e5 - 1.0, -2e5, 1e5]], np.float64)
    z_cand = z * (1 + np.array([5.6e-6 / 4, -5.6e-6 / 4, 0, 0]))
    p, p_cand = softmax(z), softmax(z_cand)
    m = compare_outputs(p, p_cand, "predictions", logits=(z, z_cand))
    assert m.max_abs > 1e-2 and m.softmax_excess <= 0 < softmax_error_bound(z, z_cand)[0]
    assert m.judged("max_abs_scaled") == 0 and m.judged("cosine_min") == m.cosine_min
    assert Thresholds.for_precision("fp32").check(m) == []
    assert Thresholds.for_precision("fp32").check(compare_outputs(p, p_cand))  # the element limit alone fails it
    broken = compare_outputs(p, p_cand[:, ::-1].copy(), "predictions", logits=(z, z_cand))
    (failure, *_rest) = Thresholds.for_precision("fp32").check(broken)
    assert failure.startswith("max_abs_scaled beyond what the logit error allows ")
    with pytest.raises(DataError, match="cannot be the logits of this softmax"):
        compare_outputs(p, p_cand, "predictions", logits=(z[:, :2], z_cand[:, :2]))
