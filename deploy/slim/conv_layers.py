"""tf-slim's convolution layers (conv2d, conv2d_same, batch_norm, subsample) over an explicit
name -> variable store (no TF1 variable scopes, no arg scopes).

Shapes follow tf-slim: tensors are NHWC `[batch, height, width, channels]`, conv weights are
`[kh, kw, in, out]`, and variables carry tf-slim's names
(`resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/weights`, `.../preact/moving_mean`, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

# tf.compat.v1.nn.fused_batch_norm raises epsilon to this floor; tf-slim's batch_norm uses the
# fused kernel for 4-D inputs, so the effective epsilon of slim checkpoints is max(eps, 1.001e-5).
_FUSED_MIN_EPSILON = 1.001e-5


class VariableStore(tf.Module):
    """Variables by tf-slim name, created on first use with seeded numpy initializers.

    `random_init=False` creates the weights as zeros: for a model whose checkpoint is loaded next,
    drawing vgg_16's 138M random values first took seconds for nothing.
    """

    def __init__(self, seed: int = 0, name: str | None = None, random_init: bool = True):
        super().__init__(name=name)
        self.vars: dict[str, tf.Variable] = {}
        self._rng = np.random.default_rng(seed)
        self.random_init = random_init
        self.frozen = False

    def get(self, name: str, shape: tuple[int, ...], init: str, trainable: bool = True) -> tf.Variable:
        var = self.vars.get(name)
        if var is not None:
            if tuple(var.shape) != tuple(shape):
                raise ValueError(f"variable {name} has shape {tuple(var.shape)}, the model needs {tuple(shape)}")
            return var
        if self.frozen:
            raise KeyError(f"variable {name} {tuple(shape)} does not exist and the store is frozen")
        if init in ("he", "he_depthwise") and self.random_init:  # variance scaling, as slim's initializer in spirit
            # A depthwise kernel [kh, kw, in, multiplier] sums kh*kw inputs per output.
            fan_in = int(np.prod(shape[:2] if init == "he_depthwise" else shape[:-1]))
            value = self._rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif init in ("he", "he_depthwise", "zeros"):
            value = np.zeros(shape, np.float32)
        elif init == "ones":
            value = np.ones(shape)
        else:
            raise ValueError(init)
        var = tf.Variable(value.astype(np.float32, copy=False), trainable=trainable, name=name.replace("/", "_"))
        self.vars[name] = var
        return var


@dataclass
class Context:
    """What tf-slim's arg scopes carried: the store, training mode, BN settings, end points."""

    store: VariableStore
    is_training: bool = False
    batch_norm_decay: float = 0.997
    batch_norm_epsilon: float = 1e-5
    batch_norm_scale: bool = True
    end_points: dict[str, tf.Tensor] = field(default_factory=dict)
    scope: list[str] = field(default_factory=list)

    def name(self, leaf: str) -> str:
        return "/".join(self.scope + [leaf])

    def collect(self, scope_name: str, tensor: tf.Tensor) -> tf.Tensor:
        self.end_points[scope_name] = tensor
        return tensor


class scope:
    """Push a variable/name scope on the context and a matching TF name scope."""

    def __init__(self, ctx: Context, name: str):
        self.ctx, self.name_ = ctx, name
        self._tf = tf.name_scope(name)

    def __enter__(self) -> str:
        self.ctx.scope.append(self.name_)
        self._tf.__enter__()
        return "/".join(self.ctx.scope)

    def __exit__(self, *exc):
        self._tf.__exit__(*exc)
        self.ctx.scope.pop()


def batch_norm(ctx: Context, inputs: tf.Tensor, name: str, activation_fn=None) -> tf.Tensor:
    """tf-slim `batch_norm` (center=True, scale per ctx), moving averages updated in training."""
    with scope(ctx, name) as sc:
        channels = int(inputs.shape[-1])
        beta = ctx.store.get(f"{sc}/beta", (channels,), "zeros")
        gamma = ctx.store.get(f"{sc}/gamma", (channels,), "ones") if ctx.batch_norm_scale else None
        mean = ctx.store.get(f"{sc}/moving_mean", (channels,), "zeros", trainable=False)
        var = ctx.store.get(f"{sc}/moving_variance", (channels,), "ones", trainable=False)
        scale = gamma if gamma is not None else tf.ones((channels,), tf.float32)
        eps = max(ctx.batch_norm_epsilon, _FUSED_MIN_EPSILON)
        if ctx.is_training:
            out, batch_mean, batch_var = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, beta, epsilon=eps, is_training=True)
            decay = ctx.batch_norm_decay
            mean.assign(mean * decay + batch_mean * (1 - decay))
            var.assign(var * decay + batch_var * (1 - decay))
        else:
            out, _, _ = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, beta, mean=mean, variance=var, epsilon=eps, is_training=False)
        if activation_fn is not None:
            out = activation_fn(out)
        return out


def _normalize(ctx: Context, sc: str, out: tf.Tensor, normalizer: bool, activation_fn) -> tf.Tensor:
    """tf-slim's layer tail: BatchNorm (then the activation) instead of biases, or biases."""
    if normalizer:
        return batch_norm(ctx, out, "BatchNorm", activation_fn=activation_fn)
    b = ctx.store.get(f"{sc}/biases", (int(out.shape[-1]),), "zeros")
    out = tf.nn.bias_add(out, b)
    return activation_fn(out) if activation_fn is not None else out


def conv2d(ctx: Context, inputs: tf.Tensor, num_outputs: int, kernel_size: int | tuple[int, int], stride: int = 1,
           rate: int = 1, padding: str = "SAME", name: str = "Conv", normalizer: bool = True,
           activation_fn=tf.nn.relu, collect: bool = True) -> tf.Tensor:
    """tf-slim `conv2d` under resnet_arg_scope: BN+ReLU by default, else biases and no activation.
    `kernel_size` is an int or `(kh, kw)` (Inception's 1x7 and 7x1)."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    with scope(ctx, name) as sc:
        in_ch = int(inputs.shape[-1])
        w = ctx.store.get(f"{sc}/weights", (kh, kw, in_ch, num_outputs), "he")
        if rate > 1:
            out = tf.nn.atrous_conv2d(inputs, w, rate, padding)
        else:
            out = tf.nn.conv2d(inputs, w, strides=[1, stride, stride, 1], padding=padding)
        out = _normalize(ctx, sc, out, normalizer, activation_fn)
        return ctx.collect(sc, out) if collect else out


def depthwise_conv2d(ctx: Context, inputs: tf.Tensor, kernel_size: int | tuple[int, int], stride: int = 1,
                     rate: int = 1, padding: str = "SAME", name: str = "depthwise", normalizer: bool = True,
                     activation_fn=tf.nn.relu6) -> tf.Tensor:
    """tf-slim `separable_conv2d(net, None, kernel, depth_multiplier=1)`: one filter per channel
    (`depthwise_weights` [kh, kw, channels, 1]), then BN and the activation (or biases)."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    with scope(ctx, name) as sc:
        w = ctx.store.get(f"{sc}/depthwise_weights", (kh, kw, int(inputs.shape[-1]), 1), "he_depthwise")
        out = tf.nn.depthwise_conv2d(inputs, w, strides=[1, stride, stride, 1], padding=padding,
                                     dilations=[rate, rate])
        return _normalize(ctx, sc, out, normalizer, activation_fn)


def separable_conv2d(ctx: Context, inputs: tf.Tensor, num_outputs: int, kernel_size: int, depth_multiplier: int,
                     stride: int = 1, padding: str = "SAME", name: str = "SeparableConv2d",
                     activation_fn=tf.nn.relu) -> tf.Tensor:
    """tf-slim `separable_conv2d` with `num_outputs` and its defaults (no normalizer: biases, ReLU):
    `depthwise_weights` [k, k, in, depth_multiplier], `pointwise_weights` [1, 1, in x mult, out]."""
    with scope(ctx, name) as sc:
        in_ch = int(inputs.shape[-1])
        dw = ctx.store.get(f"{sc}/depthwise_weights", (kernel_size, kernel_size, in_ch, depth_multiplier),
                           "he_depthwise")
        pw = ctx.store.get(f"{sc}/pointwise_weights", (1, 1, in_ch * depth_multiplier, num_outputs), "he")
        out = tf.nn.separable_conv2d(inputs, dw, pw, strides=[1, stride, stride, 1], padding=padding)
        return _normalize(ctx, sc, out, False, activation_fn)


def conv2d_same(ctx: Context, inputs: tf.Tensor, num_outputs: int, kernel_size: int, stride: int,
                rate: int = 1, name: str = "Conv", **kwargs) -> tf.Tensor:
    """Strided 2-D convolution with 'SAME' padding, as tf-slim does it.

    For stride > 1 the input is zero-padded explicitly (`pad_beg = (k_eff - 1) // 2`) and the conv
    runs 'VALID', so the result does not depend on whether the input size is odd or even (TF's own
    'SAME' with stride 2 pads asymmetrically depending on parity).
    """
    if stride == 1:
        return conv2d(ctx, inputs, num_outputs, kernel_size, stride=1, rate=rate, padding="SAME",
                      name=name, **kwargs)
    k_eff = kernel_size + (kernel_size - 1) * (rate - 1)
    pad_total = k_eff - 1
    pad_beg = pad_total // 2
    pad_end = pad_total - pad_beg
    inputs = tf.pad(inputs, [[0, 0], [pad_beg, pad_end], [pad_beg, pad_end], [0, 0]])
    return conv2d(ctx, inputs, num_outputs, kernel_size, stride=stride, rate=rate, padding="VALID",
                  name=name, **kwargs)


def subsample(inputs: tf.Tensor, factor: int, name: str | None = None) -> tf.Tensor:
    """Subsample spatially with a 1x1 max-pool of stride `factor` (identity when factor is 1)."""
    if factor == 1:
        return inputs
    return tf.nn.max_pool2d(inputs, ksize=1, strides=factor, padding="SAME", name=name)
