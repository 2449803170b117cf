"""`trtdeploy infer --backend onnxruntime` on the exported default bundle: labels files."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploy.cli import main
from deploy.cli.infer import read_labels
from deploy.errors import UsageError


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    Image = pytest.importorskip("PIL.Image")
    from deploy.digits import load_digits_rgb

    pictures, labels = load_digits_rgb()
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i in (0, 1):
        paths.append(folder / f"digit_{int(labels[i])}.png")
        Image.fromarray(pictures[i]).save(paths[-1])
    return paths


def test_labels_with_the_wrong_line_count_are_refused(default_bundle_dir, images, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    nine = tmp_path / "nine.txt"
    nine.write_text("".join(f"digit {i}\n" for i in range(9)))
    assert main(["infer", str(default_bundle_dir), *map(str, images), "--labels", str(nine)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"error: {nine}: 9 class names, but the model has 10 classes; expected 10 lines (one per class)"]

    ten = tmp_path / "ten.txt"
    ten.write_text("".join(f"digit {i}\n" for i in range(10)) + "\n\n")  # trailing blank lines are fine
    assert main(["infer", str(default_bundle_dir), *map(str, images), "--labels", str(ten), "--top-k", "1"]) == 0
    out = capsys.readouterr().out
    for path in images:  # the embedded model is 100% right on these: its label names the digit in the file name
        assert f"digit {path.stem.split('_')[1]}\n" in out


def test_background_models_take_classes_or_outputs(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("a\nb\nc\n")
    assert read_labels(path, num_outputs=4, offset=1) == ["a", "b", "c"]  # 1000 ImageNet classes
    path.write_text("background\na\nb\nc\n")
    assert read_labels(path, num_outputs=4, offset=1)[0] == "background"  # one per output, 1001
    path.write_text("a\nb\n")
    with pytest.raises(UsageError, match=r"labels.txt: 2 class names, but the model has 3 classes; expected 3 "
                                         r"lines \(one per class\) or 4 \(one per model output, background first\)"):
        read_labels(path, num_outputs=4, offset=1)
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(UsageError, match="not a text file"):
        read_labels(path, num_outputs=4, offset=1)
