"""Q/DQ placement on the edge zoo's layers, through `trtdeploy export` and `calibrate`: depthwise
convs, Conv -> Clip(0, 6) (ReLU6), MobileNet v2's residual Add, AveragePool, Inception's Concat
and branch pools, checked on the graph against TensorRT's rules (calibration/qdq.py 5-9), INT8 on
ONNX Runtime against FP32, the Concat scale rule measured, and `--max-drop` keeping MobileNet
units in high precision on a MobileNet trained here on the digits."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx")

from calibration.qdq import ActivationQdq, QdqPlan, insert_qdq, plan_qdq  # noqa: E402
from deploy.cli import main  # noqa: E402
from deploy.runners.ort import make_session  # noqa: E402
from tests.calibration.test_qdq import Graph  # noqa: E402

INCEPTION = {"name": "incv1", "family": "inception_v1", "image_size": [96, 96], "global_pool": True,
             "num_classes": 10, "label_offset": 0}


def _biased_checkpoint(model: str, prefix, **fields):
    """A checkpoint of `model` with random biases and BatchNorm statistics (zero biases, as the
    seeded weights have, are folded away by tf2onnx, and a trained net has none)."""
    from deploy.slim.checkpoint import save_slim_checkpoint
    from deploy.slim.net import SlimNet
    from deploy.slim.netspec import NetSpec, zoo_spec

    spec = NetSpec.from_json(model) if isinstance(model, dict) else zoo_spec(model, **fields)
    net = SlimNet(spec, seed=1)
    rng = np.random.default_rng(5)
    for name, var in net.variables_by_name.items():
        if name.endswith(("biases", "beta", "moving_mean")):
            var.assign(rng.normal(0, 0.1, var.shape).astype(np.float32))
        elif name.endswith("moving_variance"):
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype(np.float32))
    return save_slim_checkpoint(net.variables_by_name, prefix)


def _export_and_calibrate(work, argv, size: int):
    out = work / "bundle"
    assert main(["export", *argv, "--out", str(out)]) == 0
    rng = np.random.default_rng(0)
    np.save(work / "calib.npy", rng.uniform(-1, 1, (64, 3, size, size)).astype(np.float32))
    assert main(["calibrate", str(out), "--data", str(work / "calib.npy"), "--num-images", "32"]) == 0
    return out


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    work = tmp_path_factory.mktemp("mobilenet_v2")
    ckpt = _biased_checkpoint("mobilenet_v2_035", work / "ck" / "model.ckpt", num_classes=10)
    return _export_and_calibrate(work, ["--model", "mobilenet_v2_035", "--image-size", "96", "96", "--num-classes",
                                        "10", "--checkpoint", str(ckpt)], 96)


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    work = tmp_path_factory.mktemp("inception_v1")
    spec = work / "incv1.json"
    spec.write_text(json.dumps(INCEPTION))
    ckpt = _biased_checkpoint(INCEPTION, work / "ck" / "model.ckpt")
    return _export_and_calibrate(work, ["--spec", str(spec), "--checkpoint", str(ckpt)], 96)


def _graphs(bundle):
    return onnx.load(str(bundle / "model.onnx")), onnx.load(str(bundle / "model.int8.onnx"))


@pytest.mark.parametrize("which", ["mobilenet", "inception"])
def test_symmetric_zero_point_per_channel_weights_and_no_qdq_inside_conv_activation(which, request):
    fp32, int8 = _graphs(request.getfixturevalue(which))
    onnx.checker.check_model(int8, full_check=True)
    g = Graph(int8)
    for n in g.of_type("QuantizeLinear") + g.of_type("DequantizeLinear"):
        zp = g.inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any() and np.all(g.inits[n.input[1]] > 0), n.name
    convs = g.of_type("Conv")
    depthwise = [c for c in convs if {a.name: a.i for a in c.attribute}.get("group", 1) > 1]
    assert len(convs) == len([n for n in fp32.graph.node if n.op_type == "Conv"])
    assert (len(depthwise) == 17) if which == "mobilenet" else not depthwise
    for conv in convs:
        q = g.producer[g.producer[conv.input[1]].input[0]]
        w, scale = g.inits[q.input[0]], g.inits[q.input[1]]
        # per output channel, axis 0: a depthwise weight [channels, 1, 3, 3] gets one scale per channel
        assert {a.name: a.i for a in q.attribute}.get("axis") == 0 and scale.shape == (w.shape[0],), conv.name
        np.testing.assert_allclose(scale, np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127, rtol=1e-6)
        assert g.inits[g.producer[conv.input[0]].input[1]].shape == (), conv.name  # activation per tensor
    activations = g.of_type("Clip") + g.of_type("Relu")
    assert activations
    for act in activations:  # Conv -> (folded BN) -> ReLU6/ReLU fuses: no pair between
        assert g.op(act.input[0]) == "Conv", act.name


def test_mobilenet_residual_add_reads_the_block_input_quantized(mobilenet):
    _, int8 = _graphs(mobilenet)
    g = Graph(int8)
    adds = g.of_type("Add")
    assert len(adds) == 10  # V2_DEF: stride 1 and the same depth, 10 times
    for add in adds:
        origins = [g.through_qdq(t) for t in add.input]
        project = [q for orig, q in origins if g.producer[orig].name.endswith("/project/Conv2D")
                   and g.producer[orig].name.startswith(add.name.rsplit("/", 1)[0])]
        assert project == [False], add.name  # this block's project conv fuses with the Add
        assert sum(q for _, q in origins) == 1, add.name  # the block input comes through DQ


def test_average_pool_input_is_quantized_and_the_head_conv_too(mobilenet):
    _, int8 = _graphs(mobilenet)
    g = Graph(int8)
    (pool,) = g.of_type("AveragePool")
    assert g.through_qdq(pool.input[0])[1] and g.op(g.through_qdq(pool.input[0])[0]) == "Clip"
    logits = next(n for n in g.of_type("Conv") if "Logits" in n.name)
    assert g.through_qdq(logits.input[0])[1]
    for op in ("Softmax", "Squeeze", "Reshape"):
        assert not any(g.through_qdq(n.input[0])[1] for n in g.of_type(op))


def test_concat_inputs_share_the_output_scale_and_branch_pools_read_int8(inception):
    """The shared rule (qdq.py rule 7): no pair on any Concat input; every Concat output feeds
    the next block through one pair, which its branch Convs and its branch MaxPool all read."""
    fp32, int8 = _graphs(inception)
    g = Graph(int8)
    concats = g.of_type("Concat")
    pairs_on_concat_inputs = sum(g.through_qdq(t)[1] for c in concats for t in c.input)
    print(f"\nConcat scale rule: shared; {len(concats)} Concats, {pairs_on_concat_inputs} Q/DQ pairs on their "
          f"{sum(len(c.input) for c in concats)} inputs")
    assert len(concats) == 9 and pairs_on_concat_inputs == 0
    branch_pools = [n for n in g.of_type("MaxPool") if "/Branch_3/" in n.name]
    stem_pools = [n for n in g.of_type("MaxPool") if "/Branch_" not in n.name]
    assert len(branch_pools) == 9 and all(g.through_qdq(n.input[0])[1] for n in branch_pools)
    assert stem_pools and not any(g.through_qdq(n.input[0])[1] for n in stem_pools)  # TensorRT moves the Q back
    # One pair per block input: the branch pool reads the DQ its block's 1x1 convs read.
    for pool in branch_pools:
        dq = pool.input[0]
        block = pool.name.split("/")[1]
        readers = [n for n in g.nodes if dq in n.input]
        assert {n.op_type for n in readers} == {"Conv", "MaxPool"} and all(block in n.name for n in readers)


def test_the_zoo_has_the_qdq_op_types_the_digits_model_lacks(mobilenet, inception):
    from deploy.int8 import QDQ_OP_TYPES

    consumers = set()
    for bundle in (mobilenet, inception):
        fp32 = onnx.load(str(bundle / "model.onnx"))
        op_type = {n.name: n.op_type for n in fp32.graph.node}
        plan = plan_qdq(fp32)
        consumers |= {op_type[c] for q in (*plan.activations, *plan.weights) for c, _ in q.consumers}
    assert consumers == set(QDQ_OP_TYPES) - {"BatchNormalization"}  # tf2onnx folds their BNs into Convs


def test_a_mixed_block_kept_in_high_precision_runs_its_branches_in_float(inception):
    """What `--keep-fp32` of the per-layer ranking's `Mixed_4b` does: none of the block's Convs and
    pools reads a DQ or a quantized weight; its Concat output is still quantized where the next
    block's Convs read it, so the blocks around it stay INT8."""
    from deploy.parity.per_layer import layer_nodes

    fp32, _ = _graphs(inception)
    amax = json.loads((inception / "calibration" / "scales.json").read_text())["amax"]
    kept = layer_nodes("Mixed_4b", [(n.name, n.op_type) for n in fp32.graph.node])
    assert len(kept) == 7  # 6 Convs and the branch MaxPool
    g = Graph(insert_qdq(fp32, plan_qdq(fp32, keep_fp32=kept), amax))
    by_name = {n.name: n for n in g.nodes}
    assert not any(g.through_qdq(t)[1] for name in kept for t in by_name[name].input)
    next_block = [n for n in g.of_type("Conv") if "/Mixed_4c/" in n.name and "Conv2d_0a_1x1" in n.name]
    assert next_block and all(g.through_qdq(n.input[0]) == ("InceptionV1/Mixed_4b/concat:0", True) for n in next_block)
    before = [n for n in g.of_type("Conv") if "/Mixed_3c/" in n.name]
    assert before and all(g.through_qdq(n.input[0])[1] for n in before)


def _fidelity(int8_model, fp32, x) -> tuple[float, float]:
    ref = make_session(fp32.SerializeToString()).run(["logits"], {"input": x})[0]
    out = make_session(int8_model.SerializeToString()).run(["logits"], {"input": x})[0]
    return (float(np.sqrt(np.mean((out - ref) ** 2)) / np.sqrt(np.mean(ref ** 2))),
            float(np.mean(out.argmax(1) == ref.argmax(1))))


def test_int8_on_onnx_runtime_agrees_with_fp32_on_inception(inception):
    fp32, int8 = _graphs(inception)
    x = np.load(inception.parent / "calib.npy")[32:]  # images calibration did not see
    fidelity, agreement = _fidelity(int8, fp32, x)
    print(f"\ninception_v1: INT8 vs FP32 on 32 images: fidelity {fidelity:.4f}, top-1 agreement {agreement:.0%}")
    # Measured 0.028: 8-bit steps of a few percent of each tensor's range over 12 layers, partly
    # averaging out. A pair on the wrong tensor, a scale off by a factor of two or weights
    # quantized per tensor move it past 0.1. (Random weights: the trained MobileNet below is
    # judged on its accuracy.)
    assert fidelity < 0.1 and agreement >= 0.9


def test_own_concat_scales_are_no_closer_to_fp32_than_the_shared_one(inception):
    """The Concat decision, measured: a pair of its own on each Concat input (36 more pairs, and
    TensorRT would requantize every branch) against the shared scale, same ranges, same images."""
    fp32, int8 = _graphs(inception)
    amax = json.loads((inception / "calibration" / "scales.json").read_text())["amax"]
    shared = plan_qdq(fp32)
    inputs = [(t, n.name, i) for n in fp32.graph.node if n.op_type == "Concat" for i, t in enumerate(n.input)]
    quantized = {a.tensor for a in shared.activations}
    own = QdqPlan(shared.activations + tuple(ActivationQdq(t, ((n, i),), ("own concat scale",))
                                             for t, n, i in inputs if t not in quantized), shared.weights)
    x = np.load(inception.parent / "calib.npy")[32:]
    (f_shared, a_shared), (f_own, a_own) = (_fidelity(insert_qdq(fp32, p, amax), fp32, x) for p in (shared, own))
    print(f"\nConcat inputs, shared scale: fidelity {f_shared:.4f}, agreement {a_shared:.0%}; own scales "
          f"({len(own.activations) - len(shared.activations)} more pairs): fidelity {f_own:.4f}, agreement {a_own:.0%}")
    assert len(own.activations) - len(shared.activations) == 36
    # Own scales round each value twice (its own scale, then the Concat output's for the next
    # block): at best they equal the shared rule; 5% leaves room for the rounding of 32 images.
    assert f_shared <= 1.05 * f_own and a_shared >= a_own


# A small MobileNet v2 (slim's ops, three strides) for scikit-learn's digits at 32x32, trained here:
# a net whose accuracy INT8 can lose, as the embedded ResNet is for the ResNet tests.
DIGITS_MOBILENET = {
    "name": "digits_mobilenet", "family": "mobilenet_v2", "num_classes": 10, "label_offset": 0,
    "image_size": [32, 32], "preprocessing": "digits",
    "blocks": [{"op": "conv2d", "num_outputs": 16, "stride": 2},
               {"op": "expanded_conv", "num_outputs": 16, "expansion_factor": 1, "expansion_divisible_by": 1},
               {"op": "expanded_conv", "num_outputs": 24, "stride": 2}, {"op": "expanded_conv", "num_outputs": 24},
               {"op": "expanded_conv", "num_outputs": 32, "stride": 2}, {"op": "expanded_conv", "num_outputs": 32},
               {"op": "conv2d", "num_outputs": 128, "kernel_size": 1}]}
UNITS = re.compile(r"^(Conv(_\d+)?|expanded_conv(_\d+)?|Logits/Conv2d_1c_1x1)$")


def _train(spec, out, epochs: int = 8) -> float:
    """Adam on the training digits; the held-out accuracy."""
    from deploy.digits import load_digits_rgb, split
    from deploy.runners.tf import import_tf
    from deploy.slim.checkpoint import save_slim_checkpoint
    from deploy.slim.net import SlimNet
    from deploy.slim.netspec import NetSpec
    from deploy.train import scale_images

    tf = import_tf()
    tf.keras.utils.set_random_seed(0)
    data = split(*load_digits_rgb())
    (xtr, ytr), (xte, yte) = ((scale_images(x), y) for x, y in (data["train"], data["test"]))
    model = SlimNet(NetSpec.from_json(spec), seed=0)
    trainable = [v for v in model.variables_by_name.values() if v.trainable]
    opt = tf.keras.optimizers.Adam(3e-3)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits, _ = model(x, is_training=True, batch_norm_decay=0.9)  # ~1,400 images: a fast decay
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        opt.apply_gradients(zip(tape.gradient(loss, trainable), trainable))

    rng = np.random.default_rng(0)
    for _ in range(epochs):
        for idx in np.array_split(rng.permutation(len(xtr)), 23):
            step(tf.constant(xtr[idx]), tf.constant(ytr[idx]))
    save_slim_checkpoint(model.variables_by_name, out)
    return float(np.mean(model(tf.constant(xte))[0].numpy().argmax(1) == yte))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(bundle, training digits, held-out digits) of the digits MobileNet, exported with its checkpoint."""
    from deploy.digits import write_image_folder

    work = tmp_path_factory.mktemp("digits_mobilenet")
    accuracy = _train(DIGITS_MOBILENET, work / "ck" / "model.ckpt")
    assert accuracy >= 0.9, accuracy
    (work / "spec.json").write_text(json.dumps(DIGITS_MOBILENET))
    assert main(["export", "--spec", str(work / "spec.json"), "--checkpoint", str(work / "ck" / "model.ckpt"),
                 "--out", str(work / "bundle")]) == 0
    return work / "bundle", write_image_folder(work / "train", "train"), write_image_folder(work / "test", "test")


def _top1(bundle, data) -> dict[str, float]:
    from calibration.pipeline import evaluate_accuracy
    from deploy.bundle import open_bundle

    return evaluate_accuracy(open_bundle(bundle), data).top1


@pytest.mark.slow
def test_a_trained_mobilenet_keeps_its_accuracy_in_int8(trained, tmp_path):
    bundle, train, test = trained
    bundle = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    assert main(["calibrate", str(bundle), "--data", str(train), "--num-images", "256"]) == 0
    top1 = _top1(bundle, test)
    print(f"\ndigits MobileNet v2, entropy: held-out top-1 FP32 {top1['fp32']:.2%}, INT8 {top1['int8']:.2%}")
    assert top1["fp32"] >= 0.9 and top1["fp32"] - top1["int8"] <= 0.02  # 2 points: 7 of 360 images


@pytest.mark.slow
def test_max_drop_keeps_named_mobilenet_units_in_high_precision(trained, tmp_path, capsys):
    """Percentile 90 clips most of every range (the digits ResNet lost ~40 points that way): the
    budget search keeps MobileNet units (expanded_conv_N, their Convs and Adds) in float until
    INT8 is within 1 point on the test digits (`--eval-data`), which a separate evaluation of the
    model written confirms."""
    bundle, train, test = trained
    bundle = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    assert main(["calibrate", str(bundle), "--data", str(train), "--num-images", "256", "--method", "percentile",
                 "--percentile", "90", "--max-drop", "1", "--eval-data", str(test)]) == 0
    budget = json.loads((bundle / "calibration" / "scales.json").read_text())["budget"]
    with capsys.disabled():
        print(f"\npercentile 90, --max-drop 1: kept {budget['kept_layers']} ({len(budget['kept_nodes'])} nodes, "
              f"{len(budget['trials'])} trials), first trial dropped {budget['trials'][0]['drop_points']:.1f} points")
    assert budget["met"] and budget["trials"][0]["drop_points"] > 10 and budget["kept_layers"]
    assert all(UNITS.match(layer) for layer in budget["kept_layers"])
    names = {n.name: n for n in onnx.load(str(bundle / "model.int8.onnx")).graph.node}
    for node in budget["kept_nodes"]:
        assert node.split("/")[1] in budget["kept_layers"] or node.startswith("MobilenetV2/Logits/")
        assert not any(i.endswith("_dequantized") for i in names[node].input), node
    top1 = _top1(bundle, test)
    assert top1["fp32"] - top1["int8"] <= 0.01
    # The parity report ranks the same units, its chart and command name them.
    assert main(["parity", str(bundle), "--backends", "ort-fp32,ort-int8", "--data", str(test),
                 "--out", str(tmp_path / "report")]) == 0
    section = json.loads((tmp_path / "report" / "parity.json").read_text())["per_layer"]["int8"]
    assert [row["name"] for row in section["layers"]] == ["Conv", "expanded_conv", *(
        f"expanded_conv_{i}" for i in range(1, 5)), "Conv_1", "Logits/Conv2d_1c_1x1"]
    assert section["command"] and all(n.startswith("MobilenetV2/") for nodes in section["exclude_nodes"].values()
                                      for n in nodes)
    assert "expanded_conv_3" in (tmp_path / "report" / "parity.html").read_text()
