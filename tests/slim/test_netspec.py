"""The JSON spec: round trips, the zoo as specs, and one clear SpecError per mistake (no TensorFlow)."""
from __future__ import annotations

import json

import pytest

from deploy.errors import UsageError
from deploy.slim.netspec import NetSpec, SpecError, load_spec_file, zoo_spec
from deploy.slim.registry import REGISTRY
from deploy.slim.resnet import ResNetBlock, UnitArgs, reachable_output_strides

TINY = {"name": "tiny", "family": "v1", "blocks": [["block1", 4, 2, 2], ["block2", 8, 1, 1]],
        "num_classes": 5, "image_size": [33, 33], "preprocessing": "vgg"}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_zoo_specs_round_trip(name):
    spec = zoo_spec(name)
    assert NetSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_zoo_defaults_follow_tf_slim_checkpoints():
    v1, v2, vgg = zoo_spec("resnet_v1_101"), zoo_spec("resnet_v2_50"), zoo_spec("vgg_19")
    assert (v1.family, v1.num_classes, v1.label_offset, v1.preprocessing) == ("v1", 1000, 0, "vgg")
    assert (v2.family, v2.num_classes, v2.label_offset, v2.preprocessing) == ("v2", 1001, 1, "inception")
    assert (vgg.family, vgg.num_classes, vgg.label_offset, vgg.preprocessing) == ("vgg", 1000, 0, "vgg")
    assert [len(b.units) for b in v1.blocks] == [3, 4, 23, 3]
    assert [b.num_convs for b in vgg.blocks] == [2, 2, 4, 4, 4]
    # tf-slim's resnet_v1_block/resnet_v2_block put the block's stride in its LAST unit
    assert [u.stride for u in v1.blocks[0].units] == [1, 1, 2]
    assert v1.blocks[0].units[0] == UnitArgs(256, 64, 1)


def test_per_unit_blocks_and_compact_form():
    units = [{"depth": 32, "depth_bottleneck": 8, "stride": 2}, {"depth": 64, "depth_bottleneck": 16, "stride": 1}]
    spec = NetSpec.from_json({**TINY, "blocks": [{"scope": "block1", "units": units}, ["block2", 8, 2, 2]]})
    assert spec.blocks[0] == ResNetBlock("block1", (UnitArgs(32, 8, 2), UnitArgs(64, 16, 1)))
    assert spec.blocks[1] == ResNetBlock.uniform("block2", 8, 2, 2)
    d = spec.to_json()
    assert d["blocks"] == [{"scope": "block1", "units": units}, ["block2", 8, 2, 2]]
    assert NetSpec.from_json(d) == spec
    # a per-unit block that is really uniform is written compactly, and means the same net
    same = NetSpec.from_json({**TINY, "blocks": [{"scope": "block1", "units": [
        {"depth": 16, "depth_bottleneck": 4, "stride": 1}, {"depth": 16, "depth_bottleneck": 4, "stride": 2}]}]})
    assert same.to_json()["blocks"] == [["block1", 4, 2, 2]]


def test_reachable_output_strides():
    spec = NetSpec.from_json(TINY)
    assert reachable_output_strides(spec) == [4, 8]
    assert reachable_output_strides(zoo_spec("resnet_v2_50")) == [4, 8, 16, 32]
    assert NetSpec.from_json({**TINY, "output_stride": 4}).output_stride == 4


BAD = [
    ({"family": "v3"}, "unknown family 'v3'; use \"v1\" (resnet_v1), \"v2\" (resnet_v2), \"vgg\", \"mobilenet_v1\", "
                       "\"mobilenet_v2\", \"inception_v1\", \"inception_v2\" or \"inception_v3\""),
    ({"blocks": [["block1", 4, 0, 2]]}, "blocks[0] (block1): num_units 0: must be >= 1; a block needs at least one unit"),
    ({"blocks": [["block1", 4, 2, 0]]}, "blocks[0] (block1): stride 0: must be >= 1 (1 keeps the resolution"),
    ({"blocks": [{"scope": "b", "units": [{"depth": 8, "depth_bottleneck": 2, "stride": 0}]}]},
     "blocks[0] (b) unit 1: stride 0: must be >= 1"),
    ({"blocks": [{"scope": "b", "units": []}]}, "units must be a non-empty list"),
    ({"blocks": [{"scope": "b", "units": [{"depth": 8, "stride": 1}]}]}, "give exactly {\"depth\", \"depth_bottleneck\""),
    ({"blocks": [["block1", 4, 2]]}, "give [scope, base_depth, num_units, stride]"),
    ({"blocks": []}, "blocks: give a non-empty list"),
    ({"blocks": [["block1", 4, 1, 1], ["block1", 4, 1, 1]]}, "scope 'block1' appears twice"),
    ({"blocks": [["block/1", 4, 1, 1]]}, "scope 'block/1' must be a name"),
    ({"blocks": [["block1", 4.5, 1, 1]]}, "base_depth 4.5: give an integer"),
    ({"blocks": [["block1", True, 1, 1]]}, "base_depth True: give an integer"),
    ({"num_clases": 5}, "unknown field 'num_clases'; did you mean 'num_classes'?"),
    ({"name": None}, "name None: give the variable scope"),
    ({"num_classes": 0}, "num_classes 0: must be >= 1; or null"),
    ({"label_offset": 5}, "label_offset 5: must be below num_classes 5"),
    ({"image_size": [33]}, "image_size [33]: give [height, width]"),
    ({"image_size": [4, 4]}, "image_size 4: must be >= 8"),
    ({"preprocessing": "caffe"}, "preprocessing 'caffe': use one of inception, vgg, digits"),
    ({"output_stride": 6}, "output_stride 6: with the root block it must be a multiple of 4; choose one of [4, 8]"),
    ({"output_stride": 16}, "the target output_stride 16 cannot be reached; choose one of [4, 8]"),
    ({"global_pool": "no"}, "global_pool 'no': give true or false"),
    ({"fc_depth": 64}, "field 'fc_depth' applies to family vgg only"),
    ({"family": "vgg", "blocks": [["conv1", 1, 8]], "global_pool": True}, "field 'global_pool' applies to family v1/v2"),
    ({"family": "vgg", "blocks": [["conv1", 0, 8]], "image_size": [224, 224]}, "num_convs 0: must be >= 1"),
    ({"family": "vgg", "blocks": [["c1", 1, 8], ["c2", 1, 8], ["c3", 1, 8]], "image_size": [32, 32]},
     "c3 pools to 4x4, smaller than fc6's 7x7 VALID kernel"),
    ({"family": "vgg", "blocks": [["c1", 1, 8], ["c2", 1, 8]], "image_size": [40, 40]},
     "fc8 is 4x4, and spatial_squeeze needs 1x1"),
]


@pytest.mark.parametrize("change,message", BAD, ids=[m[:40] for _, m in BAD])
def test_each_mistake_is_one_clear_error(tmp_path, change, message):
    path = tmp_path / "my_net.json"
    path.write_text(json.dumps({**TINY, **change}))
    with pytest.raises(SpecError) as e:
        load_spec_file(path)
    text = str(e.value)
    assert text.startswith(f"{path}: ") and message in text, text
    assert "\n" not in text and isinstance(e.value, UsageError)


def test_missing_fields_and_bad_files(tmp_path):
    with pytest.raises(SpecError, match="missing field 'blocks'; a spec needs name, family, blocks"):
        NetSpec.from_json({"name": "x", "family": "v2"})
    with pytest.raises(SpecError, match="expected a JSON object"):
        NetSpec.from_json([1, 2])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(SpecError, match=r"bad.json: not valid JSON .*README"):
        load_spec_file(bad)
    with pytest.raises(SpecError, match="absent.json: cannot read the spec"):
        load_spec_file(tmp_path / "absent.json")


def test_overrides_are_checked_too():
    import dataclasses

    with pytest.raises(SpecError, match="output_stride applies to v1/v2 ResNets only"):
        dataclasses.replace(zoo_spec("vgg_16"), output_stride=16)
    with pytest.raises(SpecError, match="drop --no-global-pool"):
        dataclasses.replace(zoo_spec("vgg_16"), global_pool=False)
    assert zoo_spec("resnet_v2_digits", num_classes=7).num_classes == 7


def test_the_readme_example_is_a_valid_spec():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("```json", 1)[1].split("```", 1)[0]
    spec = NetSpec.from_json(json.loads(example), source="README.md")
    assert spec.family == "v1" and [len(b.units) for b in spec.blocks] == [3, 2, 2]
