"""Bad specs through `trtdeploy export --spec`: every mistake is one `error:` line, exit 2,
nothing written; a spec asking for more than can be built here (parameters, the activations of
one image) is refused from the spec alone, before TensorFlow is imported; a spec file that is
not UTF-8 is one line too. No TensorFlow needed."""
from __future__ import annotations

import json
import re
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


MOBILENET_V1 = {"name": "my_mobilenet", "family": "mobilenet_v1", "image_size": [96, 96], "num_classes": 5,
                "global_pool": True,
                "blocks": [{"op": "Conv", "kernel": 3, "stride": 2, "depth": 16},
                           {"op": "DepthSepConv", "kernel": [3, 3], "stride": 2, "depth": 32}]}
MOBILENET_V2 = {"name": "my_mobilenet_v2", "family": "mobilenet_v2", "image_size": [64, 64], "num_classes": 5,
                "blocks": [{"op": "conv2d", "num_outputs": 16, "stride": 2},
                           {"op": "expanded_conv", "num_outputs": 16, "expansion_factor": 1,
                            "expansion_divisible_by": 1},
                           {"op": "expanded_conv", "num_outputs": 24, "stride": 2}]}


@pytest.mark.parametrize("spec, change, message", [
    (MOBILENET_V1, {"blocks": [{"op": "DepthSepConv", "kernel": 3, "stride": 1}]},
     "blocks[0] (DepthSepConv): missing 'depth'; a DepthSepConv needs kernel, stride and depth"),
    (MOBILENET_V1, {"depth_multiplier": 0}, "depth_multiplier 0: must be a number > 0"),
    (MOBILENET_V1, {"depth_multiplier": -0.5}, "depth_multiplier -0.5: must be a number > 0"),
    (MOBILENET_V1, {"blocks": [{"op": "Pool", "kernel": 3}]},
     "blocks[0]: unknown layer 'Pool'; give {\"op\": \"Conv\" or \"DepthSepConv\""),
    (MOBILENET_V1, {"output_stride": 4}, "output_stride 4: slim's MobileNet v1 takes 8, 16, 32 or null"),
    (MOBILENET_V1, {"image_size": [320, 320], "global_pool": False}, "the last map is 80x80, AvgPool_1a (7x7 VALID, stride 2) leaves "
                                               "37x37 logits, and spatial_squeeze needs 1x1; set \"global_pool\""),
    (MOBILENET_V2, {"blocks": [{"op": "inverted_residual", "num_outputs": 8}]},
     "blocks[0]: unknown op 'inverted_residual'; give {\"op\": \"conv2d\" or \"expanded_conv\""),
    (MOBILENET_V2, {"blocks": [{"op": "expanded_conv", "stride": 2}]},
     "blocks[0] (expanded_conv): missing 'num_outputs'; every op needs its depth"),
    (MOBILENET_V2, {"blocks": [{"op": "expanded_conv", "num_outputs": 8, "expansion": 6}]},
     "blocks[0] (expanded_conv): unknown field 'expansion'; a expanded_conv has num_outputs, stride, "
     "expansion_factor"),
    (MOBILENET_V2, {"depth_multiplier": "wide"}, "depth_multiplier 'wide': must be a number > 0"),
    (MOBILENET_V2, {"output_stride": 3}, "output_stride 3: slim's MobileNet v2 takes 1, an even number"),
    (MOBILENET_V2, {"global_pool": False}, "field 'global_pool' applies to family v1/v2/mobilenet_v1/inception_v1/"
                                           "inception_v2/inception_v3 only; remove it for family 'mobilenet_v2'"),
    ({"name": "incv3", "family": "inception_v3"}, {"blocks": [["Mixed_5b", 1, 1]]},
     "blocks: inception_v3's layers are slim's own; remove blocks"),
    ({"name": "incv3", "family": "inception_v3"}, {"image_size": [64, 64]},
     "image_size [64, 64]: Mixed_7a/Conv2d_1a_3x3 leaves an empty map; inception_v3 needs a larger input"),
    ({"name": "incv1", "family": "inception_v1"}, {"depth_multiplier": 0.5},
     "field 'depth_multiplier' applies to family mobilenet_v1/mobilenet_v2/inception_v2/inception_v3 only"),
])
def test_bad_new_family_specs_are_one_line_each(tmp_path, capsys, spec, change, message):
    code, err = _export(tmp_path, {**spec, **change}, capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_new_family_specs_default_to_slims_layers():
    """A MobileNet spec without blocks is slim's conv_defs (v1) or V2_DEF (v2); the record lists them."""
    from deploy.slim.mobilenet_v1 import CONV_DEFS
    from deploy.slim.mobilenet_v2 import V2_DEF

    v1 = NetSpec.from_json({"name": "m", "family": "mobilenet_v1", "depth_multiplier": 0.5})
    v2 = NetSpec.from_json({"name": "m", "family": "mobilenet_v2"})
    assert v1.blocks == CONV_DEFS and v2.blocks == V2_DEF and v1.scope == "MobilenetV1"
    assert len(v1.to_json()["blocks"]) == 14 and NetSpec.from_json(v1.to_json()) == v1
    assert "blocks" not in NetSpec.from_json({"name": "i", "family": "inception_v3"}).to_json()


@pytest.mark.parametrize("spec, message", [
    ({**MOBILENET_V1, "image_size": [100000, 100000]}, "image_size [100000, 100000]: the activations of one image"),
    # Widths times 100 (64): weights times about 10^4 (4096), far past 536M float32 parameters.
    ({"name": "wide", "family": "inception_v3", "depth_multiplier": 100},
     r"wide: (\S+) parameters \(\S+ GB of float32 weights\), more than the 2 GiB a model.onnx protobuf can hold; "
     r"use depth_multiplier below 1 or a smaller image_size$"),
    ({"name": "wide", "family": "mobilenet_v2", "depth_multiplier": 64},
     r"wide: (\S+) parameters \(\S+ GB of float32 weights\), more than the 2 GiB a model.onnx protobuf can hold; "
     r"use fewer or narrower ops \(blocks, depth_multiplier\)$"),
])
def test_the_new_families_are_bounded_too(tmp_path, capsys, spec, message):
    code, err = _export(tmp_path, spec, capsys)
    assert code == 2 and len(err) == 1, err
    if message.startswith("wide"):
        found = re.search(message, err[0])
        assert found and float(found.group(1)) > cost.PROTOBUF_LIMIT_BYTES / cost.FLOAT_BYTES, err
    else:
        assert message in err[0], err
