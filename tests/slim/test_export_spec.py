"""`trtdeploy export --spec/--outputs/--list-outputs` through the CLI on tiny specs, a backbone
bundle (feature maps, no logits) through calibrate, fp16, parity and infer, and the error paths."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")

from deploy.bundle import open_bundle  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.runners.ort import OrtRunner  # noqa: E402
from deploy.runners.tf import TFRunner  # noqa: E402

BACKBONE = {"name": "tiny", "family": "v1", "blocks": [["block1", 4, 2, 2], ["block2", 8, 2, 2], ["block3", 8, 1, 1]],
            "num_classes": None, "image_size": [33, 33], "preprocessing": "vgg", "output_stride": 8,
            "global_pool": False}
# block3 and its only unit are one tensor under two names: both must survive as outputs.
OUTPUTS = ["tiny/block1", "tiny/block3", "tiny/block3/unit_1/bottleneck_v1", "tiny/block2/unit_1/bottleneck_v1/conv2"]


def _write(path, spec):
    path.write_text(json.dumps(spec))
    return path


def _last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), lines
    return lines[-1]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    work = tmp_path_factory.mktemp("backbone")
    spec = _write(work / "tiny.json", BACKBONE)
    out = work / "bundle"
    assert main(["export", "--spec", str(spec), "--outputs", ",".join(OUTPUTS), "--num-reference", "4",
                 "--out", str(out)]) == 0
    return open_bundle(out)


def test_backbone_bundle_has_every_chosen_output(backbone):
    m = backbone.manifest
    assert [o["name"] for o in m["outputs"]] == OUTPUTS
    assert m["outputs"][0]["shape"] == [-1, 5, 5, 16]  # 33x33 at output_stride 4 after block1
    assert m["outputs"][1]["shape"] == [-1, 5, 5, 32]  # output_stride 8: block2's stride became atrous
    assert backbone.class_outputs == [] and m["model"]["num_classes"] is None
    assert m["model"]["spec"] == {**BACKBONE, "blocks": BACKBONE["blocks"], "label_offset": 0,
                                  "spatial_squeeze": True, "include_root_block": True,
                                  "batch_norm_epsilon": 1e-5, "batch_norm_scale": True}
    assert m["preprocessing"]["preset"] == "vgg" and m["label_offset"] == 0
    assert m["export_parity"]["pass"] and set(m["export_parity"]["outputs"]) == set(OUTPUTS)
    model = onnx.load(str(backbone.onnx_path()))
    assert [o.name for o in model.graph.output] == OUTPUTS
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "batch" for o in model.graph.output)
    ref = np.load(backbone.path("reference.npz"))
    assert {f"output:{o}" for o in OUTPUTS} <= set(ref.files)
    np.testing.assert_array_equal(ref["output:tiny/block3"], ref["output:tiny/block3/unit_1/bottleneck_v1"])
    x = ref["input"]
    with OrtRunner(backbone.onnx_path()) as ort, TFRunner(backbone) as tf_runner:
        for batch in (1, 3):  # dynamic batch for every output
            got = ort.infer({"input": np.ascontiguousarray(x[:batch])})
            want = tf_runner.infer({"input": np.ascontiguousarray(x[:batch])})
            for o in OUTPUTS:
                assert got[o].shape == want[o].shape and got[o].shape[0] == batch
                assert np.abs(got[o] - want[o]).max() <= 1e-4 * np.abs(want[o]).max(), o


@pytest.mark.parametrize("judge", [["--max-drop", "1"], ["--method", "auto"], ["--eval-data", "EVAL"]])
def test_backbone_refuses_an_int8_budget_it_has_no_top1_for(backbone, tmp_path, capsys, judge):
    """--max-drop, --method auto and --eval-data judge top-1 of a class output: a backbone's
    feature maps have none, so one error line, exit 2, and the bundle untouched."""
    calib = tmp_path / "calib.npy"
    np.save(calib, np.load(backbone.path("reference.npz"))["input"])
    judge = [str(calib) if a == "EVAL" else a for a in judge]
    def files():  # the lock file aside: every writer takes it, which writes who holds it
        return {p: p.stat().st_mtime_ns for p in backbone.root.rglob("*") if p.name != ".trtdeploy.lock"}

    before = files()
    assert main(["calibrate", str(backbone.root), "--data", str(calib), *judge]) == 2
    assert "outputs feature maps only" in _last_error(capsys)
    assert files() == before


def test_backbone_through_calibrate_fp16_parity_and_infer(backbone, tmp_path, capsys):
    ref = np.load(backbone.path("reference.npz"))
    rng = np.random.default_rng(0)
    calib = tmp_path / "calib.npy"
    np.save(calib, (ref["input"][:1] + rng.normal(0, 8, (16, *ref["input"].shape[1:]))).astype(np.float32))
    assert main(["calibrate", str(backbone.root), "--data", str(calib)]) == 0
    assert main(["fp16", str(backbone.root)]) == 0
    capsys.readouterr()
    assert main(["parity", str(backbone.root), "--backends", "tf,ort-fp32,ort-fp16,ort-int8"]) == 0
    assert "WARNING: seeded random weights, not a trained model" in capsys.readouterr().out
    result = json.loads(backbone.path("reports/parity.json").read_text())
    assert result["bundle"]["warnings"] == backbone.warnings and len(backbone.warnings) == 1
    assert result["data"]["main_output"] == OUTPUTS[0] and result["reference"]["accuracy"] is None
    for b in ("ort-fp32", "ort-fp16", "ort-int8"):
        e = result["backends"][b]
        assert e["pass"] and set(e["outputs"]) == set(OUTPUTS), (b, e["failures"])
        # dense outputs are judged by scaled errors and cosines, never by top-1
        assert all(m["top1_agreement"] is None for m in e["outputs"].values())
    assert result["backends"]["ort-fp32"]["thresholds"]["tiny/block3"]["max_abs_scaled"] == 1e-4
    from PIL import Image

    # Labelled images: a backbone has no classes, so no accuracy is attempted on its feature maps.
    for label in ("0", "1"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "data" / label / f"{i}.png")
    assert main(["parity", str(backbone.root), "--data", str(tmp_path / "data"), "--backends", "tf,ort-fp32"]) == 0
    result = json.loads(backbone.path("reports/parity.json").read_text())
    assert result["data"]["num_images"] == 4 and result["backends"]["ort-fp32"]["accuracy"] is None
    image = tmp_path / "data" / "0" / "0.png"
    capsys.readouterr()
    assert main(["infer", str(backbone.root), str(image), "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert "top" not in shown and list(shown["outputs"]) == OUTPUTS
    assert shown["outputs"]["tiny/block3"]["shape"] == [5, 5, 32] and shown["outputs"]["tiny/block3"]["nonfinite"] == 0
    assert shown["weights"] == "random" and shown["warnings"] == backbone.warnings
    assert main(["infer", str(backbone.root), str(image)]) == 0
    printed = capsys.readouterr().out
    assert "tiny/block1 [5, 5, 16]: min " in printed and "WARNING: seeded random weights" in printed
    # Class names for a bundle without classes: one error line, not a TypeError.
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    assert main(["infer", str(backbone.root), str(image), "--labels", str(labels)]) == 2
    assert "has no [N, classes] output to name" in _last_error(capsys)


def test_list_outputs_prints_and_writes_nothing(tmp_path, capsys):
    spec = _write(tmp_path / "tiny.json", {**BACKBONE, "num_classes": 5, "global_pool": True, "output_stride": None})
    assert main(["export", "--spec", str(spec), "--list-outputs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("outputs of tiny (v1) at 33x33") and "default: logits,predictions" in lines[0]
    names = [line.split()[0] for line in lines[1:]]
    assert names[:3] == ["logits", "predictions", "tiny/conv1"]
    assert "tiny/block2/unit_2/bottleneck_v1/conv3" in names and "tiny/spatial_squeeze" in names
    assert "  logits" in lines[1] and lines[1].endswith("[N, 5]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json"]


@pytest.mark.parametrize("change,argv,message", [
    ({"family": "v3"}, [], "unknown family 'v3'"),
    ({"blocks": [["block1", 4, 0, 2]]}, [], "num_units 0: must be >= 1; a block needs at least one unit"),
    ({"blocks": [["block1", 4, 2, 0]]}, [], "stride 0: must be >= 1 (1 keeps the resolution, 2 halves it)"),
    ({}, ["--outputs", "tiny/block9"], "tiny has no end point 'tiny/block9'; did you mean tiny/block3, tiny/block2, tiny/block1?"),
    ({}, ["--outputs", "logits"], "tiny has no end point 'logits'"),
    ({}, [], "tiny has no classifier (num_classes null): choose its outputs with --outputs"),
    ({}, ["--outputs", "tiny/block1,,tiny/block2"], "--outputs: give NAME[,NAME...] without empty names"),
    ({}, ["--outputs", "tiny/block1,tiny/block1"], "'tiny/block1' is given twice"),
    ({}, ["--output-stride", "32"], "spec tiny: the target output_stride 32 cannot be reached; choose one of [4, 8, 16]"),
])
def test_bad_specs_and_names_are_one_line_exit_2(tmp_path, capsys, change, argv, message):
    spec = _write(tmp_path / "my_net.json", {**BACKBONE, **change})
    out = tmp_path / "b"
    assert main(["export", "--spec", str(spec), *argv, "--out", str(out)]) == 2
    err = _last_error(capsys)
    assert message in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["my_net.json"]


def _checkpoint(tmp_path, spec):
    from deploy.slim.checkpoint import save_slim_checkpoint
    from deploy.slim.net import SlimNet
    from deploy.slim.netspec import NetSpec

    return save_slim_checkpoint(SlimNet(NetSpec.from_json(spec)).variables_by_name, tmp_path / "ck" / "model.ckpt")


@pytest.mark.parametrize("ckpt_spec,argv,message", [
    # a resnet_v1 checkpoint for resnet_v2_50, a vgg checkpoint for resnet_v1_50
    ({**BACKBONE, "name": "resnet_v1_50", "num_classes": 1000}, ["--model", "resnet_v2_50"],
     "has no variables under resnet_v2_50/ (it has resnet_v1_50); pick the matching --model"),
    ({"name": "vgg_16", "family": "vgg", "blocks": [["conv1", 1, 4]], "num_classes": 3, "image_size": [14, 14],
      "fc_depth": 8}, ["--model", "resnet_v1_50"], "has no variables under resnet_v1_50/ (it has vgg_16)"),
    ({**BACKBONE, "family": "v2"}, ["--spec", "SPEC"], "holds a resnet_v2 network under tiny/, the model is resnet_v1"),
])
def test_checkpoint_of_another_net_is_one_line_exit_2(tmp_path, capsys, ckpt_spec, argv, message):
    ckpt = _checkpoint(tmp_path, ckpt_spec)
    spec = _write(tmp_path / "tiny.json", BACKBONE)
    argv = [str(spec) if a == "SPEC" else a for a in argv]
    out = tmp_path / "b"
    assert main(["export", *argv, "--checkpoint", str(ckpt), "--outputs", "resnet_v2_50/block1"
                 if "resnet_v2_50" in argv else "tiny/block1" if "--spec" in argv else "logits",
                 "--out", str(out)]) == 2
    assert message in _last_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--model", "vgg_16", "--output-stride", "16"], "output_stride applies to v1/v2 ResNets only"),
    (["--model", "vgg_16", "--image-size", "160", "160"], "smaller than fc6's 7x7 VALID kernel; use image_size [224, 224]"),
    (["--model", "resnet_v1_50"], "--out BUNDLE is required to export (or pass --list-outputs"),
    (["--model", "resnet_v1_9"], "unknown model 'resnet_v1_9'"),
])
def test_zoo_usage_errors_before_any_work(capsys, argv, message):
    assert main(["export", *argv]) == 2
    assert message in _last_error(capsys)


def test_model_and_spec_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--model", "default", "--spec", str(tmp_path / "x.json"), "--out", str(tmp_path / "b")])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def _same_net(a, b) -> None:
    """Bit-identical TF outputs (reference.npz, same inputs) and identical ONNX Runtime results."""
    ref_a, ref_b = np.load(a.path("reference.npz")), np.load(b.path("reference.npz"))
    assert ref_a.files == ref_b.files
    for key in ref_a.files:
        np.testing.assert_array_equal(ref_a[key], ref_b[key], err_msg=key)
    feed = {"input": ref_a["input"]}
    with OrtRunner(a.onnx_path()) as ort_a, OrtRunner(b.onnx_path()) as ort_b:
        got_a, got_b = ort_a.infer(feed), ort_b.infer(feed)
    assert list(got_a) == list(got_b)
    for name in got_a:
        np.testing.assert_array_equal(got_a[name], got_b[name], err_msg=name)
    assert a.manifest["model"]["spec"] == b.manifest["model"]["spec"]
    assert a.manifest["outputs"] == b.manifest["outputs"] and a.manifest["preprocessing"] == b.manifest["preprocessing"]


def test_the_manifest_spec_rebuilds_the_default_model(_pristine_default_bundle, tmp_path):
    """The spec a bundle records, given back as --spec with the same checkpoint, is the same net."""
    from deploy.slim.registry import DEFAULT_MODEL, REGISTRY

    zoo = open_bundle(_pristine_default_bundle)
    spec = _write(tmp_path / "digits.json", zoo.manifest["model"]["spec"])
    out = tmp_path / "b"
    assert main(["export", "--spec", str(spec), "--checkpoint", str(REGISTRY[DEFAULT_MODEL].checkpoint),
                 "--out", str(out)]) == 0
    _same_net(zoo, open_bundle(out))


def test_multi_output_export_prints_each_output_and_the_trained_size(_pristine_default_bundle, tmp_path, capsys):
    """The embedded weights through --spec at another size, with a class output and a feature map:
    one parity line per output (top-1 only where classes exist) and the trained-size warning."""
    from deploy.slim.registry import DEFAULT_MODEL, REGISTRY

    spec = _write(tmp_path / "digits.json", open_bundle(_pristine_default_bundle).manifest["model"]["spec"])
    out = tmp_path / "b"
    assert main(["export", "--spec", str(spec), "--checkpoint", str(REGISTRY[DEFAULT_MODEL].checkpoint),
                 "--image-size", "16", "16", "--outputs", "logits,resnet_v2_digits/block2", "--num-reference", "2",
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    logits, block2 = (next(line for line in lines if f"[{name}]:" in line) for name in ("logits", "resnet_v2_digits/block2"))
    assert "max abs scaled" in logits and "top-1 agreement 100.0%" in logits
    assert "max abs scaled" in block2 and "min cosine" in block2 and "top-1" not in block2
    assert "  parity PASS (max abs / max |TF value| <= 0.0001 for every output)" in lines
    assert "  WARNING: exported at 16x16, but the weights were trained at 32x32: expect poor accuracy" in "\n".join(lines)
    bundle = open_bundle(out)
    assert bundle.manifest["model"]["trained_image_size"] == [32, 32] and bundle.class_outputs == ["logits"]


@pytest.mark.parametrize("argv,message", [
    (["--spec", "BAD"], "BAD.json: unknown family 'v3'"),
    (["--spec", "MISSING"], "MISSING.json: cannot read the spec"),
    (["--model", "vgg_16", "--output-stride", "16"], "--model vgg_16: output_stride applies to v1/v2 ResNets only"),
])
def test_list_outputs_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    _write(tmp_path / "BAD.json", {**BACKBONE, "family": "v3"})
    argv = [str(tmp_path / f"{a}.json") if a in ("BAD", "MISSING") else a for a in argv]
    assert main(["export", *argv, "--list-outputs"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.mark.slow
def test_a_spec_equal_to_resnet_v2_50_is_the_same_net(tmp_path):
    """A hand-written JSON spec of resnet_v2_50 and `--model resnet_v2_50`, same checkpoint."""
    from deploy.slim.checkpoint import save_slim_checkpoint
    from deploy.slim.net import SlimNet
    from deploy.slim.netspec import zoo_spec

    ckpt = save_slim_checkpoint(SlimNet(zoo_spec("resnet_v2_50"), seed=5).variables_by_name,
                                tmp_path / "ck" / "model.ckpt")
    spec = _write(tmp_path / "my_resnet.json", {
        "name": "resnet_v2_50", "family": "v2", "num_classes": 1001, "label_offset": 1,
        "blocks": [["block1", 64, 3, 2], ["block2", 128, 4, 2], ["block3", 256, 6, 2], ["block4", 512, 3, 1]],
        "image_size": [224, 224], "preprocessing": "inception"})
    common = ["--checkpoint", str(ckpt), "--num-reference", "2", "--outputs", "logits,predictions,resnet_v2_50/block3"]
    assert main(["export", "--model", "resnet_v2_50", *common, "--out", str(tmp_path / "zoo")]) == 0
    assert main(["export", "--spec", str(spec), *common, "--out", str(tmp_path / "spec")]) == 0
    _same_net(open_bundle(tmp_path / "zoo"), open_bundle(tmp_path / "spec"))
