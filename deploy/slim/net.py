"""`SlimNet`: any `NetSpec` (zoo or the user's JSON) as a `tf.Module` whose variables carry
tf-slim's names, so tf-slim checkpoints load by name. Its family module builds it."""
from __future__ import annotations

import tensorflow as tf

from .conv_layers import VariableStore
from .netspec import NetSpec


class SlimNet(tf.Module):
    """The network of `spec`; `self(images)` returns `(net, end_points)` like tf-slim."""

    def __init__(self, spec: NetSpec, seed: int = 0, random_init: bool = True):
        super().__init__(name=None)
        self.spec = spec
        self.store = VariableStore(seed=seed, random_init=random_init)
        # One eager pass creates every variable with its final shape, at the family's probe size.
        self(tf.zeros([1, *spec.family_module.probe_size(spec), 3]))
        self.store.frozen = True

    def __call__(self, images: tf.Tensor, is_training: bool = False, batch_norm_decay: float = 0.997
                 ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        return self.spec.family_module.build(self.spec, images, self.store, is_training=is_training,
                                             batch_norm_decay=batch_norm_decay)

    @property
    def variables_by_name(self) -> dict[str, tf.Variable]:
        return self.store.vars
