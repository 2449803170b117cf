"""An independent MobileNet: tf-keras' `keras.applications` MobileNet / MobileNetV2 (weights=None,
the architecture slim's mobilenet_v1 / mobilenet_v2 build), given random weights and batch-norm
statistics, its weights written under tf-slim's names as a name-based checkpoint, and its logits
and a few inner layers (by the slim end point they equal) written for comparison.

Run in its own process (tf-keras beside Keras 3). Usage:
    python keras_reference.py mobilenet_v1|mobilenet_v2 ALPHA SIZE OUTDIR
Writes OUTDIR/model.ckpt and OUTDIR/reference.npz (images, net = logits, ep:NAME = end points).
"""
import sys

import numpy as np
import tensorflow as tf
import tf_keras

CLASSES = 1001
BN_FIELDS = (("gamma", "gamma"), ("beta", "beta"), ("moving_mean", "moving_mean"),
             ("moving_variance", "moving_variance"))


def v1_names(layer: str):
    """Keras MobileNet layer -> tf-slim scope, weight name (None: no variables of its own)."""
    if layer == "conv1":
        return "Conv2d_0", "weights"
    if layer == "conv_preds":
        return "Logits/Conv2d_1c_1x1", "weights"
    for kind, slim in (("conv_dw_", "depthwise"), ("conv_pw_", "pointwise")):
        if layer.startswith(kind) and layer[len(kind):].isdigit():
            return f"Conv2d_{layer[len(kind):]}_{slim}", "depthwise_weights" if slim == "depthwise" else "weights"
    return None


def v2_scope(block: str) -> str:
    """Keras MobileNetV2 block prefix -> slim scope: expanded_conv_ is slim's expanded_conv."""
    if block == "expanded_conv":
        return "expanded_conv"
    return f"expanded_conv_{block[len('block_'):]}"


def v2_names(layer: str):
    if layer == "Conv1":
        return "Conv", "weights"
    if layer == "Conv_1":
        return "Conv_1", "weights"
    for part, weight in (("_expand", "weights"), ("_depthwise", "depthwise_weights"), ("_project", "weights")):
        if layer.endswith(part) and (layer.startswith("block_") or layer.startswith("expanded_conv")):
            return f"{v2_scope(layer[: -len(part)])}/{part[1:]}", weight
    return None


def bn_scope(family: str, layer: str):
    """Keras BatchNormalization layer -> the slim scope of the conv it follows."""
    if family == "mobilenet_v1":
        return v1_names(layer[: -len("_bn")])[0] if layer.endswith("_bn") else None
    if layer == "bn_Conv1":
        return "Conv"
    if layer == "Conv_1_bn":
        return "Conv_1"
    for part in ("_expand_BN", "_depthwise_BN", "_project_BN"):
        if layer.endswith(part):
            return f"{v2_scope(layer[: -len(part)])}/{part[1:-3]}"
    return None


def slim_variables(model, family: str, scope: str, rng) -> dict:
    out = {}
    names = v1_names if family == "mobilenet_v1" else v2_names
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            where = bn_scope(family, layer.name)
            values = [rng.uniform(0.8, 1.2, v.shape) if f == "gamma" else rng.normal(0, 0.1, v.shape)
                      if f in ("beta", "moving_mean") else rng.uniform(0.5, 1.5, v.shape)
                      for f, v in zip(("gamma", "beta", "moving_mean", "moving_variance"), layer.weights)]
            layer.set_weights([v.astype(np.float32) for v in values])
            for (_, slim), value in zip(BN_FIELDS, values):
                out[f"{scope}/{where}/BatchNorm/{slim}"] = value
            continue
        mapped = names(layer.name)
        if mapped is None or not layer.weights:
            continue
        where, weight = mapped
        kernel = layer.weights[0].numpy()
        out[f"{scope}/{where}/{weight}"] = kernel
        if len(layer.weights) > 1:
            out[f"{scope}/{where}/biases"] = layer.weights[1].numpy()
    if family == "mobilenet_v2":  # the Dense head is slim's 1x1 Conv2d_1c_1x1 on the pooled map
        dense = model.get_layer("predictions")
        kernel, bias = (w.numpy() for w in dense.weights)
        out[f"{scope}/Logits/Conv2d_1c_1x1/weights"] = kernel.reshape(1, 1, *kernel.shape)
        out[f"{scope}/Logits/Conv2d_1c_1x1/biases"] = bias
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


# Keras layer -> the slim end point with the same value.
V1_POINTS = {"conv1_relu": "Conv2d_0", "conv_dw_1_relu": "Conv2d_1_depthwise", "conv_pw_6_relu": "Conv2d_6_pointwise",
             "conv_dw_12_relu": "Conv2d_12_depthwise", "conv_pw_13_relu": "Conv2d_13_pointwise"}
V2_POINTS = {"Conv1_relu": "layer_1", "expanded_conv_project_BN": "layer_2/output",
             "block_1_expand_relu": "layer_3/expansion_output", "block_2_add": "layer_4/output",
             "block_13_depthwise_relu": "layer_15/depthwise_output", "block_16_project_BN": "layer_18/output",
             "out_relu": "layer_19"}


def main(family, alpha, size, outdir):
    alpha, size = float(alpha), int(size)
    rng = np.random.default_rng(4321)
    tf_keras.utils.set_random_seed(4321)
    build = tf_keras.applications.MobileNet if family == "mobilenet_v1" else tf_keras.applications.MobileNetV2
    model = build(input_shape=(size, size, 3), alpha=alpha, weights=None, classes=CLASSES,
                  classifier_activation=None)
    scope = "MobilenetV1" if family == "mobilenet_v1" else "MobilenetV2"
    variables = slim_variables(model, family, scope, rng)  # also draws the batch-norm statistics
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=f"{outdir}/model.ckpt", tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[variables[n] for n in names])
    points = V1_POINTS if family == "mobilenet_v1" else V2_POINTS
    probe = tf_keras.Model(model.input, [model.output] + [model.get_layer(k).output for k in points])
    images = rng.uniform(-1, 1, (2, size, size, 3)).astype(np.float32)  # the inception preprocessing's range
    values = probe(images, training=False)
    out = {"images": images, "net": values[0].numpy().reshape(2, CLASSES)}
    out.update({f"ep:{slim}": v.numpy() for slim, v in zip(points.values(), values[1:])})
    np.savez(f"{outdir}/reference.npz", **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
