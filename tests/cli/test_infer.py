"""`trtdeploy infer --backend onnxruntime` on the exported default bundle: labels files."""
from __future__ import annotations

from pathlib import Path

import pytest

from deploy.cli import main
from deploy.data.labels import read_labels
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


def _top(out: str) -> list[tuple[str, str, int, float]]:
    """(image, backend, class, score) of each image's best class in `infer --json`."""
    import json

    return [(r["image"], r["backend"], r["top"][0]["class"], r["top"][0]["score"]) for r in json.loads(out)]


def test_onnxruntime_runs_the_fp16_and_int8_models(default_bundle_dir, images, tmp_path, capsys):
    """`--precision fp16|int8` answers with model.fp16.onnx / the Q/DQ model.int8.onnx on the CPU:
    the embedded model (100% on these digits) gives each image the same class in all three."""
    pytest.importorskip("onnxruntime")
    from deploy.digits import write_image_folder

    root, paths = str(default_bundle_dir), list(map(str, images))
    assert main(["infer", root, *paths, "--precision", "int8"]) == 2  # not calibrated yet: one line, the fix
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and f"trtdeploy calibrate {root} --data DATA" in err
    assert main(["fp16", root]) == 0
    assert main(["calibrate", root, "--data", str(write_image_folder(tmp_path / "train", "train")),
                 "--num-images", "64"]) == 0
    capsys.readouterr()
    tops = {}
    for precision in ("fp32", "fp16", "int8"):
        assert main(["infer", root, *paths, "--precision", precision, "--json", "--top-k", "1"]) == 0
        tops[precision] = _top(capsys.readouterr().out)
        assert {backend for _, backend, _, _ in tops[precision]} == {f"ort-{precision}"}
    for precision in ("fp16", "int8"):
        assert [c for _, _, c, _ in tops[precision]] == [c for _, _, c, _ in tops["fp32"]]
        assert [c for _, _, c, _ in tops["fp32"]] == [int(Path(p).stem.split("_")[1]) for p in paths]
    assert main(["infer", root, *paths, "--json"]) == 0  # the default is the FP32 model
    assert _top(capsys.readouterr().out) == tops["fp32"]


def test_precision_with_tensorrt_is_refused_before_anything_loads(tmp_path, capsys):
    assert main(["infer", str(tmp_path / "nowhere"), "x.png", "--engine", "e.plan", "--precision", "fp16"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --precision fp16 chooses the ONNX file ONNX Runtime runs; a TensorRT engine has its precision built "
        "in: choose the engine with --engine PLAN, or add --backend onnxruntime"]
