"""The histogram collector: streaming, zeros, growing ranges, and its compiled pass against two
references, count for count: the straightforward collector below and the numpy collector it
replaced (numpy_collector.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration import binning, histograms
from calibration.histograms import HistogramCollector
from calibration.ranges import CalibrationConfig, compute_amax
from deploy.errors import CalibrationError
from tests.calibration.numpy_collector import HistogramCollector as NumpyCollector

ROOT = Path(__file__).resolve().parents[2]


def _collector(name: str, x: np.ndarray) -> HistogramCollector:
    c = HistogramCollector()
    c.update(name, x)
    return c


def test_zeros_before_the_first_nonzero_are_counted():
    c = HistogramCollector()
    c.update("t", np.zeros(100))
    c.update("t", np.array([0.0, 1.0]))
    counts, edges = c.histogram("t")
    assert counts[0] == 101 and counts[-1] == 1 and edges[-1] == 1.0


def test_streaming_with_growing_ranges_matches_one_pass():
    rng = np.random.default_rng(5)
    chunks = [rng.standard_normal(50_000) * scale for scale in (0.01, 0.1, 1.0, 3.0, 40.0, 2.0)]
    whole = np.concatenate(chunks)
    streamed = HistogramCollector()
    for chunk in chunks:
        streamed.update("t", chunk.astype(np.float32))
    one = _collector("t", whole.astype(np.float32))
    assert streamed.amax("t") == one.amax("t") == np.float32(np.abs(whole).max())
    assert streamed.count("t") == whole.size
    s_counts, s_edges = streamed.histogram("t")
    o_counts, o_edges = one.histogram("t")
    np.testing.assert_array_equal(s_edges, o_edges)
    assert s_counts.sum() == pytest.approx(whole.size)
    # Counts move by at most one fine bin (1/8 of a target bin): the CDFs agree closely.
    cdf_gap = np.abs(np.cumsum(s_counts) - np.cumsum(o_counts)).max()
    assert cdf_gap <= 0.002 * whole.size
    for method in ("entropy", "percentile", "mse"):
        a = compute_amax(streamed, CalibrationConfig(method))["t"]
        b = compute_amax(one, CalibrationConfig(method))["t"]
        assert a == pytest.approx(b, rel=0.02), method


def test_one_pass_histogram_equals_numpy():
    rng = np.random.default_rng(6)
    x = rng.standard_normal(100_000)
    counts, edges = _collector("t", x).histogram("t")
    ref, ref_edges = np.histogram(np.abs(x), bins=2048, range=(0.0, np.abs(x).max()))
    np.testing.assert_allclose(edges, ref_edges)
    assert np.abs(counts - ref).sum() <= 4  # only values on an edge may land differently


def test_non_finite_activations_are_reported():
    c = HistogramCollector()
    with pytest.raises(CalibrationError, match="'conv1'.*non-finite"):
        c.update("conv1", np.array([1.0, np.nan]))


def test_unknown_tensor_is_reported():
    with pytest.raises(CalibrationError, match="'nope'"):
        HistogramCollector().histogram("nope")


class StraightforwardCollector:
    """The collector as first written (float64 copies, one np.abs, np.minimum, one bincount per
    4M-value step), kept here as the reference the binning fast path must match count for count."""

    def __init__(self, fine_bins: int = 16 * 2048, chunk: int = 1 << 22):
        self.fine_bins, self.chunk, self.stats = fine_bins, chunk, {}

    def update(self, name, array):
        st = self.stats.setdefault(name, {"amax": 0.0, "count": 0, "zeros": 0, "top": 0.0, "counts": None})
        flat = np.asarray(array).reshape(-1)
        for start in range(0, flat.size, self.chunk):
            a = np.abs(flat[start:start + self.chunk].astype(np.float64))
            if a.size == 0:
                continue
            hi = float(a.max())
            st["count"] += a.size
            st["amax"] = max(st["amax"], hi)
            if st["counts"] is None:
                if hi == 0.0:
                    st["zeros"] += a.size
                    continue
                st["top"] = hi
                st["counts"] = np.zeros(self.fine_bins, dtype=np.int64)
                st["counts"][0] = st["zeros"]
            while hi > st["top"]:
                st["counts"] = np.concatenate([st["counts"].reshape(-1, 2).sum(axis=1),
                                               np.zeros(self.fine_bins // 2, dtype=np.int64)])
                st["top"] *= 2.0
            idx = np.minimum((a * (self.fine_bins / st["top"])).astype(np.int64), self.fine_bins - 1)
            st["counts"] = st["counts"] + np.bincount(idx, minlength=self.fine_bins)


def _assert_same_statistics(fast: HistogramCollector, ref: StraightforwardCollector, name: str):
    st, want = fast._stats[name], ref.stats[name]
    assert (st.amax, st.count, st.top) == (want["amax"], want["count"], want["top"]), name
    if want["counts"] is None:
        assert st.counts is None and st.pending_zeros == want["zeros"], name
    else:
        np.testing.assert_array_equal(st.counts, want["counts"], err_msg=name)


def assert_same_as_numpy(fast: HistogramCollector, old: NumpyCollector, name: str):
    """The same statistics as the numpy collector: range, max, count, zeros and every fine count."""
    st, want = fast._stats[name], old._stats[name]
    assert (st.amax, st.count, st.top, st.pending_zeros) == (want.amax, want.count, want.top, want.pending_zeros), name
    if want.counts is None:
        assert st.counts is None, name
    else:
        np.testing.assert_array_equal(st.counts, want.counts, err_msg=name)


def _activation_batches(rng, dtype):
    """Batches shaped like activations: growing and shrinking ranges, exact zeros, values on bin
    edges (multiples of the first max / 2**k), a batch of zeros first, a skewed sign."""
    yield np.zeros((2, 3, 5, 5), dtype)
    first = (rng.standard_normal((2, 3, 40, 40)) + 0.5).astype(dtype)
    yield first
    top = float(np.abs(first).max())
    # Bin edges of that range in `dtype`, and their neighbours: where a product rounded in
    # float32 would pick the wrong bin.
    edges = ((top / 32768) * rng.integers(-40000, 40000, 5000)).astype(dtype)
    near = np.concatenate([edges, np.nextafter(edges, dtype(np.inf)), np.nextafter(edges, dtype(-np.inf))])
    yield np.concatenate([near, -near, np.array([top, -top, 2 * top], dtype)])
    yield (rng.standard_normal(50_000) * 5.0 - 3.0).astype(dtype)
    yield np.where(rng.random(30_000) < 0.5, 0.0, rng.standard_normal(30_000) * 0.01).astype(dtype)
    yield -np.abs(rng.standard_normal(7_000) * 40.0).astype(dtype)  # no positive value at all
    yield (rng.lognormal(0.0, 2.0, 20_000) * rng.choice([-1.0, 1.0], 20_000)).astype(dtype)


def _reference_histogram(ref: StraightforwardCollector, name: str) -> np.ndarray:
    """The reference's fine counts through HistogramCollector.histogram's re-binning."""
    want = ref.stats[name]
    c = HistogramCollector()
    c._stats[name] = histograms._Stats(amax=want["amax"], count=want["count"], pending_zeros=want["zeros"],
                                        top=want["top"], counts=want["counts"])
    return c.histogram(name)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sign", [1.0, -1.0])  # the first batch's range set by its positive / negative side
@pytest.mark.parametrize("chunk", [1 << 22, 1000])
def test_fast_binning_gives_the_straightforward_counts_bit_for_bit(dtype, sign, chunk, monkeypatch):
    """The compiled pass (range and bins together, stopping where the range must grow), and the
    Relu outputs binned from their input (not from an array of their own) change nothing: the
    same range, max, count and every fine count as the straightforward collector fed the Relu's
    output; and as the numpy collector this one replaced. Every way of binning is exercised."""
    monkeypatch.setattr(histograms, "_CHUNK", chunk)
    modes = []
    real = binning.bin_values
    monkeypatch.setattr(binning, "bin_values", lambda x, start, mode, *a: modes.append(mode) or real(x, start, mode, *a))
    rng = np.random.default_rng(11)
    fast, ref, old = HistogramCollector(), StraightforwardCollector(chunk=chunk), NumpyCollector()
    old_chunk = sys.modules[NumpyCollector.__module__]
    monkeypatch.setattr(old_chunk, "_CHUNK", chunk)
    for batch in _activation_batches(rng, dtype):
        batch = (sign * batch).astype(dtype)
        fast.update("x", batch, relu_outputs=("relu", "relu_again"))
        old.update("x", batch, relu_outputs=("relu", "relu_again"))
        ref.update("x", batch)
        ref.update("relu", np.maximum(batch, 0))
        ref.update("relu_again", np.maximum(batch, 0))
        fast.update("alone", batch[::-1])
        old.update("alone", batch[::-1])
        ref.update("alone", batch[::-1])
        for name in ("x", "relu", "relu_again", "alone"):  # after every batch: later merges hide errors
            _assert_same_statistics(fast, ref, name)
            assert_same_as_numpy(fast, old, name)
    for name in ("x", "relu", "relu_again", "alone"):
        np.testing.assert_array_equal(fast.histogram(name)[0], _reference_histogram(ref, name))
    # One grid for a tensor and its Relu needs the range set by the positive side.
    both_ways = {binning.MAGNITUDE, binning.RELU, binning.BOTH}
    assert set(modes) == (both_ways | {binning.SIGNED} if sign > 0 else both_ways)


def test_a_non_finite_value_after_the_range_is_set_is_reported():
    """The compiled pass stops at inf/NaN mid-batch, once the range exists: the error names the tensor."""
    c = HistogramCollector()
    c.update("t", np.array([1.0, -2.0], np.float32), relu_outputs=("r",))
    for bad in (np.inf, -np.inf, np.nan):
        x = np.linspace(-1.0, 1.0, 5000, dtype=np.float32)
        x[3000] = bad
        with pytest.raises(CalibrationError, match="'t'.*non-finite"):
            HistogramCollector().update("t", x)
        with pytest.raises(CalibrationError, match="'t'.*non-finite"):
            c.update("t", x, relu_outputs=("r",))


_KERNEL_RUN = """
import json, sys, time
t = time.perf_counter()
from calibration import binning
import numpy as np
x = np.linspace(-1.0, 1.0, 1000, dtype=np.float32)
counts = np.zeros(64, np.int64)
stop, _, _, at_top, _ = binning.bin_values(x, 0, binning.MAGNITUDE, 1.0, 64.0, counts, 0.0, 0.0, np.zeros(0, np.int64))
stats = binning.bin_values.stats
print(json.dumps({"stop": int(stop), "total": int(counts.sum() + at_top), "path": binning.cache_location(),
                  "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values()),
                  "seconds": time.perf_counter() - t}))
"""


def _run_kernel(env_changes: dict, pythonpath: list) -> dict:
    import json
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(env_changes, PYTHONPATH=os.pathsep.join(map(str, pythonpath)))
    # From another folder: `python -c` puts the current one first on the path.
    done = subprocess.run([sys.executable, "-c", _KERNEL_RUN], capture_output=True, text=True, env=env, timeout=300,
                          cwd=pythonpath[0])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_compiled_kernels_are_cached_across_processes(tmp_path):
    """The first process compiles and writes the cache, the next loads it (no compilation)."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first, second = (_run_kernel(env, [ROOT]) for _ in range(2))
    for run in (first, second):
        assert run["stop"] == 1000 and run["total"] == 1000 and run["path"].startswith(str(tmp_path / "cache"))
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    assert list((tmp_path / "cache").rglob("*.nbi"))


def test_without_a_writable_cache_directory_the_kernels_compile_in_process(tmp_path):
    """A read-only install whose user has no writable cache directory: numba has nowhere to cache
    (its own locators: NUMBA_CACHE_DIR, __pycache__ beside the module, the user's cache), and
    the kernels are compiled in each process instead of failing the import. As root every
    directory is writable, so each locator is made to fail by a file where it wants a directory."""
    import shutil

    pkg = tmp_path / "site" / "calibration"
    pkg.mkdir(parents=True)
    shutil.copy(ROOT / "calibration" / "binning.py", pkg / "binning.py")
    (pkg / "__init__.py").write_text("")
    (pkg / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    env = {"XDG_CACHE_HOME": str(blocker / "cache"), "HOME": str(blocker / "home"), "PYTHONDONTWRITEBYTECODE": "1"}
    run = _run_kernel(env, [tmp_path / "site", ROOT])
    assert run["stop"] == 1000 and run["total"] == 1000
    assert run["path"] is None and run["hits"] == 0


def _parts(rng, size: int) -> list[tuple[int, int]]:
    cuts = np.sort(rng.choice(np.arange(1, size), size=min(size - 1, int(rng.integers(1, 6))), replace=False))
    edges = [0, *cuts.tolist(), size]
    return list(zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize("with_max", [False, True])
def test_a_batch_given_in_parts_gives_the_statistics_of_the_whole_batch(with_max, monkeypatch):
    """Parts of a batch (the statistics pass runs a large batch in several runs) in any split, range
    steps falling across parts: every count equals those of the whole batches, i.e. of the numpy
    collector. A tensor without a range takes its first step's range from `step_max` (a first pass
    over the batch) or holds that step's values until its end; both kinds are exercised, as are
    tensors that stay all zero for batches (no range) and Relu outputs whose input is all negative."""
    from calibration.histograms import range_steps

    monkeypatch.setattr(histograms, "_CHUNK", 700)
    rng = np.random.default_rng(5)
    whole, parts = HistogramCollector(), HistogramCollector()
    batches = [np.zeros(1500, np.float32), -np.abs(rng.standard_normal(2100)).astype(np.float32),
               *list(_activation_batches(rng, np.float32))[1:], rng.standard_normal(3000).astype(np.float32) * 100]
    dead = [np.zeros(len(b), np.float32) for b in batches]
    dead[3][705] = 1.5  # alive inside a later step of a later batch: that step's values are held
    held = []
    for batch, late in zip(batches, dead):
        flat = batch.reshape(-1)
        whole.update("x", flat, relu_outputs=("r",))
        whole.update("late", late)
        maxima = None
        if with_max:
            maxima = [(float(flat[s * 700:(s + 1) * 700].max()), float(flat[s * 700:(s + 1) * 700].min()))
                      for s in range(-(-flat.size // 700))]
        for lo, hi in _parts(rng, flat.size):
            parts.update_part("x", flat[lo:hi], ("r",), offset=lo, total=flat.size, step_max=maxima)
            assert [s for s, _, _ in range_steps(lo, hi - lo, flat.size)] == list(range(lo // 700, (hi - 1) // 700 + 1))
        for lo, hi in ((0, 703), (703, 1000), (1000, flat.size)):
            parts.update_part("late", late[lo:hi], offset=lo, total=flat.size)
            held.append(bool(parts._stats["late"].held))
        for name in ("x", "r", "late"):
            st, want = parts._stats[name], whole._stats[name]
            assert (st.amax, st.count, st.top, st.pending_zeros) == (want.amax, want.count, want.top,
                                                                     want.pending_zeros), name
            np.testing.assert_array_equal(st.counts, want.counts, err_msg=name)
    assert held.count(True) == 1 and not parts._stats["late"].held
