"""Input sets (calibration, parity): folders, lists, arrays, validation, subsets, manifests."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deploy.data.inputs import InputSet
from deploy.data.preprocess import Preprocess
from deploy.bundle import TensorInfo
from deploy.errors import DataError, UsageError

INPUT = TensorInfo("input", (-1, 3, 16, 16), "float32", "NCHW")
PRE = Preprocess("digits", 16, 16)


def _image(path: Path, value: int, size=(20, 24), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    pixels = np.clip(value + rng.integers(-3, 4, (*size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def _open(path, **kw) -> InputSet:
    return InputSet.from_path(path, input=INPUT, preprocess=PRE, **kw)


@pytest.fixture
def classes(tmp_path) -> Path:
    root = tmp_path / "data"
    for label, names in {"cat": ["b.png", "a.jpg"], "dog": ["c.png"], "ant": ["z.jpeg", "sub/y.png"]}.items():
        for i, name in enumerate(names):
            _image(root / label / name, 40 * len(label) + 30 * i)
    (root / "cat" / "notes.txt").write_text("not an image, ignored by extension")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.png").write_bytes(b"ignored: hidden folder")
    return root


def test_folder_with_class_subfolders(classes):
    ds = _open(classes)
    assert ds.kind == "images" and len(ds) == 5
    assert [s.path for s in ds.samples] == ["ant/sub/y.png", "ant/z.jpeg", "cat/a.jpg", "cat/b.png", "dog/c.png"]
    assert ds.class_names == ["ant", "cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2] and ds.labels.dtype == np.int64
    batches = list(ds.batches_with_labels(2, desc=None))
    assert [b["input"].shape for b, _ in batches] == [(2, 3, 16, 16), (2, 3, 16, 16), (1, 3, 16, 16)]
    assert all(b["input"].dtype == np.float32 for b, _ in batches)
    assert np.concatenate([lab for _, lab in batches]).tolist() == ds.labels.tolist()
    first = PRE.load(classes / "ant/sub/y.png")
    np.testing.assert_array_equal(batches[0][0]["input"][0], first)


def test_integer_class_folders_are_the_labels(tmp_path):
    for label in (3, 10, 7):
        _image(tmp_path / str(label) / "img.png", label)
    ds = _open(tmp_path)
    assert ds.class_names == ["3", "7", "10"]
    assert ds.labels.tolist() == [10, 3, 7]  # sorted by path: "10/", "3/", "7/"


def test_flat_folder_or_single_plain_subfolder_has_no_labels(tmp_path):
    _image(tmp_path / "flat" / "a.png", 1)
    _image(tmp_path / "flat" / "b.png", 2)
    _image(tmp_path / "nested" / "images" / "a.png", 1)
    for path in (tmp_path / "flat", tmp_path / "nested"):
        ds = _open(path)
        assert ds.labels is None and ds.class_names is None and len(ds) == 2 - (path.name == "nested")
        assert next(iter(ds.batches_with_labels(4, desc=None)))[1] is None


def test_bad_images_are_all_reported_before_any_work(classes):
    (classes / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = (classes / "cat" / "a.jpg").read_bytes()
    (classes / "dog" / "cut.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as err:
        _open(classes)
    message = str(err.value)
    assert "2 unreadable" in message and "cat/broken.png" in message and "dog/cut.jpg" in message
    assert "notes.txt" not in message and "\n" not in message
    # Only an option the running command has is suggested: none by default (build --calib-data).
    assert message.endswith("fix or remove them") and "--skip-bad" not in message
    with pytest.raises(DataError) as err:
        _open(classes, skip_option="--skip-bad")
    assert str(err.value).endswith("fix or remove them, or pass --skip-bad to go on without them")


def test_messages_speak_of_input_data_not_calibration(tmp_path, classes, caplog):
    """parity --data and build --data read through here too: one set of words for input data,
    logged under trtdeploy.data."""
    (classes / "cat" / "broken.png").write_bytes(b"nope")
    (tmp_path / "x.csv").write_text("a")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"x")
    np.save(tmp_path / "none.npy", np.zeros((0, 3, 16, 16), np.float32))
    messages = []
    for path, kw in [(tmp_path / "missing", {}), (tmp_path / "x.csv", {}), (tmp_path / "empty", {}),
                     (classes, {}), (tmp_path / "bad", {"skip_bad": True}), (tmp_path / "none.npy", {})]:
        with pytest.raises(DataError) as err:
            _open(path, **kw)
        messages.append(str(err.value))
    with pytest.raises(UsageError) as err:
        _open(classes, num=0)
    messages.append(str(err.value))
    with caplog.at_level(logging.WARNING):
        _open(classes, num=99, skip_bad=True)
    messages += [r.getMessage() for r in caplog.records]
    assert all("calibrat" not in m.replace(str(tmp_path), "TMP") for m in messages), messages
    assert "input data is an image folder" in messages[0]
    assert caplog.records and {r.name for r in caplog.records} == {"trtdeploy.data"}
    assert "calibrat" not in repr(_open(classes, skip_bad=True)).lower()


def test_skip_bad_records_and_continues(classes, caplog):
    (classes / "cat" / "broken.png").write_bytes(b"nope")
    with caplog.at_level(logging.WARNING):
        ds = _open(classes, skip_bad=True)
    assert len(ds) == 5 and ds.skipped == ["cat/broken.png"]
    assert "cat/broken.png" in caplog.text
    assert ds.manifest()["skipped"][0]["path"] == "cat/broken.png"


def test_many_bad_files_are_summarised(tmp_path):
    for i in range(14):
        (tmp_path / f"bad{i:02d}.png").write_bytes(b"x")
    _image(tmp_path / "ok.png", 9)
    with pytest.raises(DataError, match=r"14 unreadable.*bad09\.png.*and 4 more") as err:
        _open(tmp_path)
    assert "bad10.png" not in str(err.value)


def test_everything_skipped_or_nothing_found_is_an_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="all 1 image"):
        _open(tmp_path / "bad", skip_bad=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"empty.*no JPEG/PNG"):
        _open(tmp_path / "empty")
    with pytest.raises(DataError, match="no such file"):
        _open(tmp_path / "missing")
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(DataError, match=r"x\.csv: unsupported"):
        _open(tmp_path / "x.csv")


def test_list_file(tmp_path):
    _image(tmp_path / "imgs" / "a.png", 10)
    _image(tmp_path / "imgs" / "b.jpg", 20)
    outside = _image(tmp_path / "elsewhere" / "c.png", 30)
    lst = tmp_path / "lists" / "calib.txt"
    lst.parent.mkdir()
    lst.write_text(f"# calibration images\n\n../imgs/b.jpg 4\n../imgs/a.png   2\n{outside} 0\n")
    ds = _open(lst)
    assert ds.kind == "list" and [s.path for s in ds.samples] == ["../imgs/b.jpg", "../imgs/a.png", outside.as_posix()]
    assert ds.labels.tolist() == [4, 2, 0]
    np.testing.assert_array_equal(next(ds.batches(3, desc=None))["input"][1], PRE.load(tmp_path / "imgs" / "a.png"))


@pytest.mark.parametrize("text, match", [
    ("a.png 1 extra\n", r"calib\.txt:1: expected"),
    ("# c\na.png one\n", r"calib\.txt:2: expected"),
    ("a.png 1\nb.png\n", "no label but others do"),
    ("# only comments\n\n", "no images listed"),
])
def test_bad_list_files(tmp_path, text, match):
    _image(tmp_path / "a.png", 1)
    _image(tmp_path / "b.png", 2)
    (tmp_path / "calib.txt").write_text(text)
    with pytest.raises(DataError, match=match):
        _open(tmp_path / "calib.txt")


def test_list_with_missing_entry_reports_it(tmp_path):
    _image(tmp_path / "a.png", 1)
    (tmp_path / "calib.txt").write_text("a.png\nghost.png\n")
    with pytest.raises(DataError, match=r"ghost\.png"):
        _open(tmp_path / "calib.txt")
    assert len(_open(tmp_path / "calib.txt", skip_bad=True)) == 1


def test_npy_is_memory_mapped_and_batched(tmp_path):
    data = np.random.default_rng(0).standard_normal((7, 3, 16, 16))  # float64: cast per batch
    np.save(tmp_path / "x.npy", data)
    ds = _open(tmp_path / "x.npy")
    assert ds.kind == "npy" and len(ds) == 7 and ds.labels is None
    assert isinstance(ds._array, np.memmap)
    got = np.concatenate([b["input"] for b in ds.batches(3, desc=None)])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, data.astype(np.float32))


def test_npz_with_labels_and_single_unnamed_array(tmp_path):
    data = np.random.default_rng(1).standard_normal((5, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "named.npz", input=data, labels=np.arange(5, dtype=np.int32), other=np.zeros(2))
    ds = _open(tmp_path / "named.npz")
    assert ds.kind == "npz" and ds.labels.tolist() == [0, 1, 2, 3, 4] and ds.labels.dtype == np.int64
    feed, labels = next(ds.batches_with_labels(8, desc=None))
    np.testing.assert_array_equal(feed["input"], data)
    np.savez(tmp_path / "single.npz", images=data)
    assert len(_open(tmp_path / "single.npz")) == 5


@pytest.mark.parametrize("name, array, match", [
    ("wrong_shape.npy", np.zeros((4, 16, 16, 3), np.float32), r"shape \(4, 16, 16, 3\).*\(N, 3, 16, 16\) float32"),
    ("wrong_rank.npy", np.zeros((3, 16, 16), np.float32), r"shape \(3, 16, 16\)"),
    ("raw_pixels.npy", np.zeros((4, 3, 16, 16), np.uint8), r"dtype uint8.*preprocessed"),
    ("empty.npy", np.zeros((0, 3, 16, 16), np.float32), "holds no inputs"),
])
def test_bad_arrays(tmp_path, name, array, match):
    np.save(tmp_path / name, array)
    with pytest.raises(DataError, match=match) as err:
        _open(tmp_path / name)
    assert name in str(err.value)


def test_bad_npz(tmp_path):
    data = np.zeros((2, 3, 16, 16), np.float32)
    np.savez(tmp_path / "two.npz", a=data, b=data)
    with pytest.raises(DataError, match=r"no array named 'input'.*a, b"):
        _open(tmp_path / "two.npz")
    np.savez(tmp_path / "labels.npz", input=data, labels=np.zeros(3, np.int64))
    with pytest.raises(DataError, match="labels"):
        _open(tmp_path / "labels.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz.*not a readable"):
        _open(tmp_path / "junk.npz")


def test_preprocessing_must_fit_the_input(classes):
    with pytest.raises(UsageError, match=r"\(3, 16, 16\).*\(3, 32, 32\)"):
        InputSet.from_path(classes, input=TensorInfo("input", (-1, 3, 32, 32), "float32", "NCHW"),
                                 preprocess=PRE)
    with pytest.raises(UsageError, match="NHWC"):
        InputSet.from_path(classes, input=TensorInfo("input", (-1, 16, 16, 3), "float32", "NHWC"),
                                 preprocess=PRE)


def test_subset_is_deterministic_and_ordered(tmp_path):
    for i in range(30):
        _image(tmp_path / f"img{i:02d}.png", i, size=(4, 4))
    ds = _open(tmp_path)
    a, b, c = ds.subset(10, seed=1), ds.subset(10, seed=1), ds.subset(10, seed=2)
    assert [s.path for s in a.samples] == [s.path for s in b.samples]
    assert [s.path for s in a.samples] != [s.path for s in c.samples]
    assert [s.path for s in a.samples] == sorted(s.path for s in a.samples) and len(a) == 10
    # Choosing before decoding gives the same images.
    early = _open(tmp_path, num=10, seed=1)
    assert early.samples == a.samples and early.sha256 == a.sha256
    # The choice does not depend on where the folder lives or on listing order.
    moved = tmp_path.parent / "moved_copy"
    shutil.copytree(tmp_path, moved)
    assert _open(moved).subset(10, seed=1).samples == a.samples


def test_subset_bounds(tmp_path, caplog):
    np.save(tmp_path / "x.npy", np.arange(6 * 768, dtype=np.float32).reshape(6, 3, 16, 16))
    ds = _open(tmp_path / "x.npy")
    with caplog.at_level(logging.WARNING):
        assert ds.subset(100) is ds
    assert "100" in caplog.text
    for bad in (0, -3):
        with pytest.raises(UsageError, match="positive"):
            ds.subset(bad)
    small = ds.subset(3, seed=5)
    rows = np.concatenate([b["input"][:, 0, 0, 0] for b in small.batches(2, desc=None)]) / 768
    assert len(small) == 3 and list(rows) == sorted(rows) and len(set(rows)) == 3
    assert small.manifest()["indices"] == [int(r) for r in rows]
    assert small.sha256 != ds.sha256 != ds.subset(3, seed=6).sha256


def test_manifest_hash_independent_of_location(classes, tmp_path):
    ds = _open(classes)
    m = ds.manifest()
    assert m["kind"] == "images" and m["count"] == 5 and m["source"] == str(classes.resolve())
    assert {it["path"]: it["label"] for it in m["items"]} == {s.path: s.label for s in ds.samples}
    assert all(len(it["sha256"]) == 64 for it in m["items"])
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(classes, moved)
    assert _open(moved).sha256 == ds.sha256
    _image(moved / "dog" / "c.png", 200)  # same name, other pixels
    assert _open(moved).sha256 != ds.sha256


def test_array_manifest(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 3, 16, 16), np.float32))
    m = _open(tmp_path / "x.npy").manifest()
    assert m["kind"] == "npy" and m["count"] == 2 and [it["path"] for it in m["items"]] == ["x.npy"]
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "x.npy", tmp_path / "b" / "x.npy")
    assert _open(tmp_path / "b" / "x.npy").sha256 == m["sha256"]


def test_batch_size_must_be_positive(classes):
    with pytest.raises(UsageError, match="batch size"):
        _open(classes).batches(0)


def test_progress_bar_description(classes, monkeypatch):
    seen = []

    def fake_progress(items, desc, total=None, unit="it"):
        seen.append((desc, total, unit))
        return iter(items)

    monkeypatch.setattr("deploy.data.inputs.progress", fake_progress)
    ds = _open(classes)
    list(ds.batches(2))
    list(ds.batches(2, desc=None))
    assert seen[-1] == ("inputs", 3, "batch") and ("checking images", 5, "img") in seen
    assert sum(1 for d, _, _ in seen if d == "inputs") == 1
