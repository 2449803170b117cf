"""End points as model outputs, by tf-slim's names (`resnet_v2_50/block3`, `vgg_16/conv5/conv5_3`).

`logits` (what the network returns) and `predictions` (its softmax) come first, then every
end point in network order; `--outputs` picks among them and `--list-outputs` prints them.
"""
from __future__ import annotations

import difflib
from typing import Sequence

import tensorflow as tf

from ..errors import UsageError
from .net import SlimNet

CLASSIFIER_OUTPUTS = ("logits", "predictions")


def output_tensors(net: tf.Tensor, end_points: dict[str, tf.Tensor], has_logits: bool) -> dict[str, tf.Tensor]:
    """Every selectable output of one call of the model, in network order after the class scores."""
    out: dict[str, tf.Tensor] = {}
    if has_logits:
        out["logits"] = net
        out["predictions"] = end_points["predictions"]
    out.update((k, v) for k, v in end_points.items() if k not in out)
    return out


def trace_outputs(model: SlimNet, size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    """Name -> shape (batch as -1) of every selectable output, from one symbolic trace."""
    shapes: dict[str, tuple[int, ...]] = {}

    @tf.function(input_signature=[tf.TensorSpec([None, *size, 3], tf.float32)])
    def trace(images):
        net, end_points = model(images)
        for name, t in output_tensors(net, end_points, model.spec.num_classes is not None).items():
            shapes[name] = (-1, *(int(d) for d in t.shape[1:]))
        return net

    trace.get_concrete_function()
    return shapes


def default_outputs(model: SlimNet) -> tuple[str, ...]:
    if model.spec.num_classes is None:
        raise UsageError(f"{model.spec.name} has no classifier (num_classes null): choose its outputs with "
                         "--outputs NAME[,NAME...] (see --list-outputs)")
    return CLASSIFIER_OUTPUTS


def select_outputs(requested: Sequence[str] | None, available: dict[str, tuple[int, ...]],
                   model: SlimNet) -> tuple[str, ...]:
    """Validate `--outputs` against the model's end points; None gives logits and predictions."""
    if requested is None:
        return default_outputs(model)
    for name in requested:
        if name not in available:
            close = difflib.get_close_matches(name, list(available), n=3)
            maybe = f"did you mean {', '.join(close)}? " if close else ""
            raise UsageError(f"--outputs: {model.spec.name} has no end point {name!r}; {maybe}"
                             "add --list-outputs to the export command to see them all")
    return tuple(requested)


def format_outputs(model: SlimNet, available: dict[str, tuple[int, ...]]) -> str:
    """The `--list-outputs` text: one `NAME  [N, ...]` line per output."""
    s = model.spec
    default = ",".join(CLASSIFIER_OUTPUTS) if s.num_classes is not None else "none (choose with --outputs)"
    width = max(len(n) for n in available)
    lines = [f"outputs of {s.name} ({s.family}) at {s.image_size[0]}x{s.image_size[1]}, "
             f"for --outputs NAME[,NAME...] (default: {default}):"]
    lines += [f"  {n:<{width}}  [N, {', '.join(str(d) for d in shape[1:])}]" for n, shape in available.items()]
    return "\n".join(lines)
