"""What every command does with what a user types: paths that do not exist are usage errors
(exit 2, one line naming the path), and results of random weights say so (infer text and JSON)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")

from deploy.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def error_lines(capsys) -> list[str]:
    # Progress bars (stderr) are not messages: they carry a "|" bar and end in "\r".
    return [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
            if line.strip() and "|" not in line]


@pytest.mark.parametrize("argv,named", [
    (["infer", "BUNDLE", "/no/such.png"], "/no/such.png: cannot read image"),
    (["infer", "BUNDLE", "IMAGE", "--labels", "/no/such.txt"], "/no/such.txt: cannot read labels"),
    (["infer", "BUNDLE", "IMAGE", "--engine", "/no/such.plan"], "/no/such.plan: no such engine file"),
    (["parity", "BUNDLE", "--engine", "/no/such.int8.plan"], "--engine /no/such.int8.plan: no such engine file"),
    (["parity", "BUNDLE", "--data", "/no/such"], "--data /no/such: no such file or directory"),
    (["calibrate", "BUNDLE", "--data", "/no/such"], "/no/such: no such file or directory; input data is"),
    (["fp16", "/no/such"], "/no/such: no such bundle directory"),
    (["build", "/no/such", "--precision", "fp16"], "/no/such: no such bundle directory"),
    (["export", "--model", "default", "--checkpoint", "/no/such.ckpt", "--out", "OUT"],
     "/no/such.ckpt: no such checkpoint"),
])
def test_a_typed_path_that_does_not_exist_is_a_usage_error(default_bundle_dir, image, tmp_path, capsys, argv, named):
    argv = [{"BUNDLE": str(default_bundle_dir), "IMAGE": str(image), "OUT": str(tmp_path / "out")}.get(a, a)
            for a in argv]
    before = sorted(p.relative_to(default_bundle_dir) for p in default_bundle_dir.rglob("*"))
    assert main(argv) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0], err
    assert sorted(p.relative_to(default_bundle_dir) for p in default_bundle_dir.rglob("*")) == before


def test_calibrate_suggests_its_skip_bad(default_bundle_dir, image, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "3").mkdir(parents=True)
    shutil.copy(image, data / "3" / "ok.png")
    (data / "3" / "broken.png").write_bytes(b"not a png")
    assert main(["calibrate", str(default_bundle_dir), "--data", str(data)]) == 2
    (line,) = error_lines(capsys)
    assert "3/broken.png" in line and line.endswith("fix or remove them, or pass --skip-bad to go on without them")


@pytest.fixture(scope="module")
def random_bundle(default_bundle_dir, tmp_path_factory):
    """The default bundle as if exported without a checkpoint (the manifest is what infer reads)."""
    root = shutil.copytree(default_bundle_dir, tmp_path_factory.mktemp("random") / "bundle")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["model"].update({"weights": "random", "seed": 0})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_infer_says_random_weights_in_text_and_json(random_bundle, default_bundle_dir, image, capsys):
    said = "seeded random weights, not a trained model: its classes and scores mean nothing"
    assert main(["infer", str(random_bundle), str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"WARNING: {said}") and lines[1].startswith(str(image))
    assert main(["infer", str(random_bundle), str(image), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["weights"] == "random" and record["warnings"][0].startswith(said)
    # A trained model's results carry no warning.
    assert main(["infer", str(default_bundle_dir), str(image)]) == 0
    assert "WARNING" not in capsys.readouterr().out
    assert main(["infer", str(default_bundle_dir), str(image), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["weights"] == "checkpoint" and record["warnings"] == []
