"""`SlimNet`: any `NetSpec` (ResNet v1, v2, VGG; zoo or the user's JSON) as a `tf.Module`
whose variables carry tf-slim's names, so tf-slim checkpoints load by name."""
from __future__ import annotations

import dataclasses

import tensorflow as tf

from . import resnet_v1, resnet_v2
from .layers import VariableStore
from .netspec import NetSpec, ResNetBlock, VggBlock
from .resnet_utils import resnet
from .spec import Block
from .vgg import vgg


def tf_blocks(spec: NetSpec) -> list[Block] | list[VggBlock]:
    """The spec's blocks with their unit function (`bottleneck` v1 or v2), as the stacker takes them."""
    if spec.family == "vgg":
        return list(spec.blocks)
    bottleneck = resnet_v1.bottleneck if spec.family == "v1" else resnet_v2.bottleneck
    blocks: list[ResNetBlock] = list(spec.blocks)  # type: ignore[arg-type]
    return [Block(b.scope, bottleneck, [dataclasses.asdict(u) for u in b.units]) for b in blocks]


class SlimNet(tf.Module):
    """The network of `spec`; `self(images)` returns `(net, end_points)` like tf-slim."""

    def __init__(self, spec: NetSpec, seed: int = 0, probe_size: int | None = None, random_init: bool = True):
        super().__init__(name=None)
        self.spec = spec
        self.blocks = tf_blocks(spec)
        self.store = VariableStore(seed=seed, random_init=random_init)
        # One eager pass creates every variable with its final shape. ResNet variables do not
        # depend on the input size (a small probe is cheap); VGG's fc6 kernel needs its real size.
        size = spec.image_size if spec.family == "vgg" else (probe_size or 32,) * 2
        self(tf.zeros([1, *size, 3]))
        self.store.frozen = True

    def __call__(self, images: tf.Tensor, is_training: bool = False, batch_norm_decay: float = 0.997
                 ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        c = self.spec
        if c.family == "vgg":
            return vgg(images, self.blocks, c.num_classes, is_training=is_training,
                       spatial_squeeze=c.spatial_squeeze, scope_name=c.name, fc_depth=c.fc_depth, store=self.store)
        return resnet(images, self.blocks, 1 if c.family == "v1" else 2, c.num_classes, is_training=is_training,
                      global_pool=c.global_pool, output_stride=c.output_stride,
                      include_root_block=c.include_root_block, spatial_squeeze=c.spatial_squeeze,
                      scope_name=c.name, store=self.store, batch_norm_decay=batch_norm_decay,
                      batch_norm_epsilon=c.batch_norm_epsilon, batch_norm_scale=c.batch_norm_scale)

    @property
    def variables_by_name(self) -> dict[str, tf.Variable]:
        return self.store.vars
