"""Build a model with tf-slim's own nets (graph mode), give every variable random values,
save a tf-slim checkpoint with `tf.compat.v1.train.Saver`, and write its logits and end_points.

Run in its own process: tf-slim needs graph mode and a module alias under TF 2.21.
Usage: python slim_reference.py MODEL SIZE OUTPUT_STRIDE|none GLOBAL_POOL(0|1) NUM_CLASSES OUTDIR
MODEL is a tf-slim net (resnet_v1_50, resnet_v2_50, vgg_16, inception_v1, inception_v3, ...) or a
JSON spec file of family v1/v2, built with tf-slim's own generator and bottleneck from the spec's
blocks. tf-slim's Inception v3 builds its auxiliary head too: the checkpoint carries AuxLogits/.
"""
import json
import sys

import numpy as np
import tensorflow as tf
import tf_keras
import tf_keras.src.legacy_tf_layers as legacy

# tf_slim 1.1.0 imports tf_keras.legacy_tf_layers, which tf-keras 2.21 keeps under src/.
sys.modules.setdefault("tf_keras.legacy_tf_layers", legacy)
for sub in ("base", "core", "convolutional", "pooling", "normalization"):
    mod = getattr(legacy, sub, None)
    if mod is not None:
        sys.modules.setdefault(f"tf_keras.legacy_tf_layers.{sub}", mod)
tf_keras.legacy_tf_layers = legacy

import tf_slim as slim  # noqa: E402
from tf_slim.nets import inception, resnet_utils, resnet_v1, resnet_v2, vgg  # noqa: E402

VGG_RGB_MEANS = (123.68, 116.78, 103.94)


def _spec_net(path):
    """tf-slim's resnet_v1/resnet_v2 generator over the blocks of one of our JSON specs."""
    spec = json.loads(open(path).read())
    module = resnet_v1 if spec["family"] == "v1" else resnet_v2
    blocks = []
    for b in spec["blocks"]:
        if isinstance(b, list):
            blocks.append(getattr(module, f"resnet_{spec['family']}_block")(
                b[0], base_depth=b[1], num_units=b[2], stride=b[3]))
        else:
            blocks.append(resnet_utils.Block(b["scope"], module.bottleneck, b["units"]))
    generator = getattr(module, f"resnet_{spec['family']}")

    def build(x, num_classes, is_training, global_pool, output_stride):
        return generator(x, blocks, num_classes, is_training, global_pool, output_stride,
                         include_root_block=spec.get("include_root_block", True), scope=spec["name"])
    return module, build, spec.get("preprocessing", "inception")


def _net(model):
    """(arg scope, build(x, ...) -> (net, end_points), input range) for MODEL."""
    if model.endswith(".json"):
        module, build, preprocessing = _spec_net(model)
        return module.resnet_arg_scope(), build, preprocessing
    if model.startswith("inception"):
        def build(x, num_classes, is_training, global_pool, output_stride):
            assert not global_pool and output_stride is None, "tf-slim 1.1.0 Inception has neither"
            return getattr(inception, model)(x, num_classes=num_classes, is_training=is_training)
        return getattr(inception, f"{model}_arg_scope")(), build, "inception"
    if model.startswith("vgg"):
        def build(x, num_classes, is_training, global_pool, output_stride):
            assert global_pool and output_stride is None, "tf-slim 1.1.0 VGG has neither"
            return getattr(vgg, model)(x, num_classes=num_classes, is_training=is_training)
        return vgg.vgg_arg_scope(), build, "vgg"
    module = resnet_v1 if model.startswith("resnet_v1") else resnet_v2
    return module.resnet_arg_scope(), getattr(module, model), "vgg" if module is resnet_v1 else "inception"


def main(model, size, output_stride, global_pool, num_classes, outdir):
    tf.compat.v1.disable_eager_execution()
    size = int(size)
    output_stride = None if output_stride == "none" else int(output_stride)
    rng = np.random.default_rng(1234)
    arg_scope, build, preprocessing = _net(model)
    # The range the model's preprocessing gives: [-1, 1], or 0..255 minus the VGG means.
    if preprocessing == "vgg":
        images = (rng.uniform(0, 255, size=(2, size, size, 3)) - np.asarray(VGG_RGB_MEANS)).astype(np.float32)
    else:
        images = rng.uniform(-1, 1, size=(2, size, size, 3)).astype(np.float32)
    x = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3])
    with slim.arg_scope(arg_scope):
        net, end_points = build(x, num_classes=int(num_classes), is_training=False,
                                global_pool=bool(int(global_pool)), output_stride=output_stride)
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        for v in tf.compat.v1.global_variables():
            shape = v.shape.as_list()
            if v.name.endswith("moving_variance:0"):
                val = rng.uniform(0.5, 1.5, shape)
            elif v.name.endswith(("gamma:0",)):
                val = rng.uniform(0.8, 1.2, shape)
            elif v.name.endswith(("beta:0", "moving_mean:0", "biases:0")):
                val = rng.normal(0, 0.1, shape)
            elif v.name.endswith("weights:0"):
                val = rng.normal(0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
            else:
                continue
            # Fed, not baked into the graph as a constant: vgg_16's 550 MB would be copied many times.
            v.load(val.astype(np.float32), sess)
        saver.save(sess, f"{outdir}/model.ckpt", write_meta_graph=False)
        keys = sorted(end_points)
        values = sess.run([net] + [end_points[k] for k in keys], {x: images})
    out = {"images": images, "net": values[0]}
    out.update({f"ep:{k}": v for k, v in zip(keys, values[1:])})
    np.savez(f"{outdir}/reference.npz", **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
