"""Batches above an engine's profile maximum: `TrtRunner.max_batch` is the profile's, `infer`
still refuses more (the caller asked for one call), `infer_any_batch` splits and concatenates."""
from __future__ import annotations

import numpy as np
import pytest

from deploy.errors import InputError
from deploy.trt.runtime import TrtRunner

from .test_runtime_logic import expected, fakes, write_engine  # noqa: F401 - fakes is a fixture


def test_infer_any_batch_splits_at_the_profile_max(tmp_path, fakes):  # noqa: F811
    x = np.random.default_rng(0).standard_normal((20, 3), dtype=np.float32)
    with TrtRunner(write_engine(tmp_path)) as runner:  # profile batch [1, 4, 8]
        assert runner.max_batch == 8
        with pytest.raises(InputError, match="outside the engine's profile"):
            runner.infer({"x": x})
        out = runner.infer_any_batch({"x": x})
        np.testing.assert_allclose(out["y"], expected(x), rtol=1e-6)
        assert [t.batch for t in runner._timings] == [8, 8, 4]
        assert runner.infer_any_batch({"x": x[:5]})["y"].shape == (5, 2)  # fits: one call
        assert runner.timings()["calls"] == 4


def test_max_batch_known_before_activation(tmp_path):
    assert TrtRunner(write_engine(tmp_path)).max_batch == 8
