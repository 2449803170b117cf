"""Train the embedded default model (`resnet_v2_digits`) reproducibly on scikit-learn's digits.

Seeded numpy and TF; a few minutes on 2 CPU cores. Writes a tf-slim style checkpoint and
`meta.json` with the measured held-out accuracy.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from .digits import load_digits_rgb, split
from .fsutil import atomic_write_json

log = logging.getLogger("trtdeploy.train")


def scale_images(images_uint8: np.ndarray) -> np.ndarray:
    """The `digits` preprocessing preset at the native 32x32 size: [0, 255] -> [-1, 1]."""
    return images_uint8.astype(np.float32) / 127.5 - 1.0


def train_default(out_dir: str | Path, epochs: int = 30, batch_size: int = 64, seed: int = 0,
                  lr: float = 0.1, weight_decay: float = 5e-4) -> dict:
    from .progress import progress
    from .runners.tf import import_tf
    from .slim.checkpoint import save_slim_checkpoint
    from .slim.net import SlimNet
    from .slim.netspec import zoo_spec
    from .slim.registry import DEFAULT_MODEL

    tf = import_tf()
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    data = split(*load_digits_rgb())
    xtr, ytr = scale_images(data["train"][0]), data["train"][1]
    xte, yte = scale_images(data["test"][0]), data["test"][1]

    model = SlimNet(zoo_spec(DEFAULT_MODEL, num_classes=10), seed=seed)
    trainable = [v for v in model.variables_by_name.values() if v.trainable]
    decayed = [v for n, v in model.variables_by_name.items() if n.endswith("/weights")]
    steps_per_epoch = int(np.ceil(len(xtr) / batch_size))
    schedule = tf.keras.optimizers.schedules.CosineDecay(lr, epochs * steps_per_epoch)
    opt = tf.keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            # A fast BN decay: with ~1,400 images the slim default (0.997) lags far behind.
            logits, _ = model(x, is_training=True, batch_norm_decay=0.9)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            loss += weight_decay * tf.add_n([tf.nn.l2_loss(w) for w in decayed])
        opt.apply_gradients(zip(tape.gradient(loss, trainable), trainable))
        return loss

    @tf.function(reduce_retracing=True)
    def predict(x):
        return model(x, is_training=False)[0]

    def shift(batch: np.ndarray) -> np.ndarray:
        # Random translations of up to 2 pixels: cheap augmentation for a tiny data set.
        padded = np.pad(batch, ((0, 0), (2, 2), (2, 2), (0, 0)), constant_values=-1.0)
        out = np.empty_like(batch)
        for i, (dy, dx) in enumerate(rng.integers(0, 5, size=(len(batch), 2))):
            out[i] = padded[i, dy:dy + 32, dx:dx + 32]
        return out

    def accuracy(x, y):
        preds = np.concatenate([predict(tf.constant(x[i:i + 256])).numpy().argmax(-1)
                                for i in range(0, len(x), 256)])
        return float((preds == y).mean())

    start = time.time()
    for epoch in progress(range(epochs), desc="training", total=epochs, unit="epoch"):
        order = rng.permutation(len(xtr))
        losses = [float(step(tf.constant(shift(xtr[idx])), tf.constant(ytr[idx])))
                  for idx in np.array_split(order, steps_per_epoch)]
        if (epoch + 1) % 5 == 0 or epoch + 1 == epochs:
            log.info("epoch %d: loss %.4f, held-out accuracy %.4f", epoch + 1, np.mean(losses), accuracy(xte, yte))

    meta = {
        "model": DEFAULT_MODEL, "num_classes": 10, "image_size": [32, 32], "preprocessing": "digits",
        "data": "sklearn.datasets.load_digits, stratified 80/20 split, random_state=0",
        "train_images": int(len(xtr)), "heldout_images": int(len(xte)),
        "epochs": epochs, "batch_size": batch_size, "seed": seed, "lr": lr, "weight_decay": weight_decay,
        "train_accuracy": accuracy(xtr, ytr), "heldout_accuracy": accuracy(xte, yte),
        "train_seconds": round(time.time() - start, 1),
        "parameters": int(sum(np.prod(v.shape) for v in model.variables_by_name.values())),
    }
    out_dir = Path(out_dir)
    save_slim_checkpoint(model.variables_by_name, out_dir / "model.ckpt")
    atomic_write_json(out_dir / "meta.json", meta)
    return meta
