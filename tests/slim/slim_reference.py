"""Build a model with tf-slim's own `resnet_v2` (graph mode), give every variable random values,
save a tf-slim checkpoint with `tf.compat.v1.train.Saver`, and write its logits and end_points.

Run in its own process: tf-slim needs graph mode and a module alias under TF 2.21.
Usage: python slim_reference.py MODEL SIZE OUTPUT_STRIDE|none GLOBAL_POOL(0|1) NUM_CLASSES OUTDIR
"""
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
from tf_slim.nets import resnet_v2  # noqa: E402


def main(model, size, output_stride, global_pool, num_classes, outdir):
    tf.compat.v1.disable_eager_execution()
    size = int(size)
    output_stride = None if output_stride == "none" else int(output_stride)
    rng = np.random.default_rng(1234)
    images = rng.uniform(-1, 1, size=(2, size, size, 3)).astype(np.float32)
    x = tf.compat.v1.placeholder(tf.float32, [None, size, size, 3])
    with slim.arg_scope(resnet_v2.resnet_arg_scope()):
        net, end_points = getattr(resnet_v2, model)(
            x, num_classes=int(num_classes), is_training=False, global_pool=bool(int(global_pool)),
            output_stride=output_stride)
    assigns = []
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
        assigns.append(tf.compat.v1.assign(v, val.astype(np.float32)))
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        sess.run(assigns)
        saver.save(sess, f"{outdir}/model.ckpt", write_meta_graph=False)
        keys = sorted(end_points)
        values = sess.run([net] + [end_points[k] for k in keys], {x: images})
    out = {"images": images, "net": values[0]}
    out.update({f"ep:{k}": v for k, v in zip(keys, values[1:])})
    np.savez(f"{outdir}/reference.npz", **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
