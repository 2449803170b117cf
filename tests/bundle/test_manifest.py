"""deploy.bundle: a manifest is validated once, when a bundle is opened, in every command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.bundle import FORMAT_VERSION, manifest_problem, open_bundle
from deploy.cli import main
from deploy.errors import BundleError

VALID = {
    "format": FORMAT_VERSION,
    "model": {"name": "tiny", "num_classes": 10, "weights": "random"},
    "inputs": [{"name": "input", "shape": [-1, 3, 8, 8], "dtype": "float32", "layout": "NCHW"}],
    "outputs": [{"name": "logits", "shape": [-1, 10], "dtype": "float32"}],
    "preprocessing": {"preset": "digits", "height": 8, "width": 8, "layout": "NCHW"},
    "label_offset": 0,
}


def without(key: str) -> dict:
    return {k: v for k, v in VALID.items() if k != key}


# Valid JSON of the wrong shape: each used to end in AttributeError/TypeError/KeyError (or, for
# format 99, be accepted); `match` is what the one error line must say.
BAD = [
    pytest.param([], "a JSON list, not an object", id="list"),
    pytest.param({}, "no 'format', 'model', 'inputs', 'outputs', 'preprocessing'", id="empty-object"),
    pytest.param(without("inputs"), "no 'inputs'", id="no-inputs"),
    pytest.param({**VALID, "format": 99}, "format 99, but this trtdeploy reads format 1", id="format-99"),
    pytest.param({**VALID, "format": "1"}, "'format' must be an integer", id="format-string"),
    pytest.param({**VALID, "inputs": {}}, "'inputs' must be a non-empty list", id="inputs-object"),
    pytest.param({**VALID, "inputs": []}, "'inputs' must be a non-empty list", id="inputs-empty"),
    pytest.param({**VALID, "outputs": [{"name": "y"}]}, "outputs[0] needs a string 'name' and 'dtype'",
                 id="output-without-dtype"),
    pytest.param({**VALID, "inputs": [{**VALID["inputs"][0], "shape": "NCHW"}]}, "inputs[0].shape must be a list",
                 id="shape-string"),
    pytest.param({**VALID, "model": "tiny"}, "'model' must be an object", id="model-string"),
    pytest.param({**VALID, "model": {"name": "tiny"}}, "integer 'num_classes'", id="no-num-classes"),
    pytest.param({**VALID, "model": {"name": "tiny", "num_classes": "10"}}, "integer 'num_classes'",
                 id="num-classes-string"),
    pytest.param({**VALID, "model": {**VALID["model"], "spec": ["v1"]}}, "'model.spec' must be an object",
                 id="spec-list"),
    pytest.param({**VALID, "model": {**VALID["model"], "family": 1}}, "'model.family' must be a string",
                 id="family-number"),
    pytest.param({**VALID, "preprocessing": None}, "'preprocessing' must be an object", id="preprocessing-null"),
    pytest.param({**VALID, "label_offset": "1"}, "'label_offset' must be an integer", id="label-offset-string"),
]


def write_bundle(root: Path, manifest) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_valid_manifest_opens():
    assert manifest_problem(VALID) is None
    assert manifest_problem(without("label_offset")) is None


def test_a_backbone_manifest_opens():
    """`export --spec ... --outputs` writes num_classes null and feature-map outputs: a valid bundle
    without class outputs."""
    backbone = {**VALID, "model": {"name": "tiny", "family": "v1", "num_classes": None, "spec": {"name": "tiny"}},
                "outputs": [{"name": "tiny/block1", "shape": [-1, 5, 5, 16], "dtype": "float32"}]}
    assert manifest_problem(backbone) is None


@pytest.mark.parametrize("manifest,match", BAD)
def test_wrong_shape_is_a_bundle_error_naming_the_file(tmp_path, manifest, match):
    root = write_bundle(tmp_path / "b", manifest)
    with pytest.raises(BundleError) as e:
        open_bundle(root)
    assert str(e.value).startswith(f"{root / 'manifest.json'}: not a valid bundle manifest")
    assert match in str(e.value)


def command_lines(root: Path, tmp_path: Path) -> dict[str, list[str]]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    image = data / "one.png"
    image.write_bytes(b"")  # never read: the bundle is refused first
    return {"parity": ["parity", str(root)],
            "infer": ["infer", str(root), str(image)],
            "build": ["build", str(root), "--precision", "fp32"],
            "calibrate": ["calibrate", str(root), "--data", str(data)]}


@pytest.mark.parametrize("command", ["parity", "infer", "build", "calibrate"])
@pytest.mark.parametrize("manifest,match", BAD)
def test_every_command_refuses_it_with_one_line_exit_2(tmp_path, capsys, command, manifest, match):
    root = write_bundle(tmp_path / "b", manifest)
    assert main(command_lines(root, tmp_path)[command]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {root / 'manifest.json'}: not a valid bundle manifest")
    assert match in err[0]
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json"]  # nothing written
