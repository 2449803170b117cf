"""Bad specs through `trtdeploy export --spec`: every mistake is one `error:` line, exit 2,
nothing written; a spec asking for more than can be built here (parameters, the activations of
one image) is refused from the spec alone, before TensorFlow is imported; a spec file that is
not UTF-8 is one line too. No TensorFlow needed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.cli import main
from deploy.slim import cost
from deploy.slim.netspec import NetSpec, SpecError
from tests.test_light_imports import BLOCKER

ROOT = Path(__file__).resolve().parents[2]
TINY = {"name": "tiny", "family": "v1", "blocks": [["block1", 4, 2, 2], ["block2", 8, 1, 1]],
        "num_classes": 5, "image_size": [33, 33], "preprocessing": "vgg"}


def _export(tmp_path: Path, spec, capsys) -> tuple[int, list[str]]:
    path = tmp_path / "my_net.json"
    path.write_text(json.dumps(spec) if not isinstance(spec, bytes) else "")
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    code = main(["export", "--spec", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_net.json"]  # no bundle, no hidden .tmp
    return code, err


def test_every_mistake_is_its_own_error_line(tmp_path, capsys):
    spec = {**TINY, "blocks": [["block1", 4, 0, 2], ["block/2", 8, 1, 0]], "num_classes": 0,
            "preprocessing": "caffe", "fc_depth": 64, "num_clases": 3}
    code, err = _export(tmp_path, spec, capsys)
    assert code == 2
    path = tmp_path / "my_net.json"
    assert err == [f"error: {path}: {m}" for m in (
        "unknown field 'num_clases'; did you mean 'num_classes'?",
        "field 'fc_depth' applies to family vgg only; remove it for family 'v1'",
        "blocks[0] (block1): num_units 0: must be >= 1; a block needs at least one unit",
        "blocks[1] (block/2): stride 0: must be >= 1 (1 keeps the resolution, 2 halves it)",
        "blocks[1]: scope 'block/2' must be a name like \"block1\" (letters, digits, _ . -)",
        "num_classes 0: must be >= 1; or null for a backbone without logits",
        "preprocessing 'caffe': use one of inception, vgg, digits")]


def test_mistakes_of_the_whole_spec_are_reported_with_those_of_its_fields(tmp_path, capsys):
    spec = {**TINY, "name": "my net", "output_stride": 16, "label_offset": -1}
    code, err = _export(tmp_path, spec, capsys)
    assert code == 2 and len(err) == 3, err
    assert "name 'my net': give the variable scope" in err[0]
    assert "label_offset -1: must be >= 0" in err[1]
    assert "the target output_stride 16 cannot be reached; choose one of [4, 8]" in err[2]


@pytest.mark.parametrize("change, message", [
    # 10^9 units once took 24 GB and 315 s before the kernel killed the export: now one line, at once.
    ({"blocks": [["block1", 64, 10 ** 9, 2]]},
     "blocks[0] (block1): at least 6.96e+13 parameters (279 TB of float32 weights), more than the 2 GiB a "
     "model.onnx protobuf can hold; use fewer units (num_units) or narrower blocks"),
    # 100000x100000 crashed TensorFlow with a segfault.
    ({"image_size": [100000, 100000]}, "image_size [100000, 100000]: the activations of one image take"),
    # One unit: conv3 2^14 x 2^20 = 1.72e10 weights, conv2 9 x 2^28 = 2.42e9, the rest 1.1e8.
    ({"blocks": [{"scope": "wide", "units": [{"depth": 2 ** 20, "depth_bottleneck": 2 ** 14, "stride": 1}]}]},
     "tiny: 1.97e+10 parameters (78.7 GB of float32 weights), more than the 2 GiB a model.onnx protobuf can hold"),
])
def test_a_spec_beyond_what_can_be_built_is_one_line(tmp_path, capsys, change, message):
    code, err = _export(tmp_path, {**TINY, **change}, capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_the_bounds_follow_the_machines_memory(monkeypatch):
    """vgg_16 (138M parameters, 80 bytes each to export) fits 24 GB and not 8 GB; the line says
    how much it needs and what the machine has."""
    vgg = {"name": "vgg_16", "family": "vgg", "num_classes": 1000, "image_size": [224, 224], "preprocessing": "vgg",
           "blocks": [["conv1", 2, 64], ["conv2", 2, 128], ["conv3", 3, 256], ["conv4", 3, 512], ["conv5", 3, 512]]}
    monkeypatch.setattr(cost, "machine_memory_bytes", lambda: 24 * 10 ** 9)
    assert NetSpec.from_json(vgg).name == "vgg_16"
    monkeypatch.setattr(cost, "machine_memory_bytes", lambda: 8 * 10 ** 9)
    with pytest.raises(SpecError) as e:
        NetSpec.from_json(vgg)
    assert e.value.messages == ("spec: vgg_16: 1.38e+08 parameters (0.553 GB of float32 weights), exporting needs "
                                "about 20x that (11.1 GB) and this machine has 8 GB of memory; use fewer or narrower "
                                "convolutions (num_convs, depth, fc_depth)",)


def test_a_spec_that_is_not_utf8_is_one_line(tmp_path, capsys):
    code, err = _export(tmp_path, json.dumps(TINY).replace("tiny", "t\xefny").encode("latin-1"), capsys)
    assert code == 2
    assert err == [f"error: {tmp_path / 'my_net.json'}: not UTF-8 text (byte 0xef at offset 11); "
                   "save the spec as UTF-8 JSON"]


def test_bounds_are_checked_before_tensorflow_is_imported(tmp_path):
    """`python -m deploy export --spec` in an interpreter that refuses TensorFlow's import."""
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({**TINY, "blocks": [["block1", 64, 10 ** 9, 2]], "image_size": [100000, 100000]}))
    code = (BLOCKER + "import sys\nfrom deploy.cli import main\n"
            f"sys.exit(main(['export', '--spec', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "blocked heavy import" not in r.stderr, r.stderr
    assert "parameters" in lines[0] and not (tmp_path / "out").exists()
