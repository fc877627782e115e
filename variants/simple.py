"""The simple (Elman) recurrent network: y_t = tanh(W x_t + R y_{t-1} + b)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.cell import Cell, Recurrent, Statement
from variants.registry import register


@register("srn")
class SimpleCell(Cell):
    """Elman RNN with tanh; 28 inputs and 128 units give 20,096 parameters, as Keras' SimpleRNN."""

    paths = ("fused_gradient", "kernel")

    @nn.compact
    def statement(self, x: jax.Array) -> Statement:
        W = self.param("W", self.kernel_init, (x.shape[-1], self.hidden))
        R = self.param("R", self.recurrent_init, (self.hidden, self.hidden))
        b = self.param("b", nn.initializers.zeros, (self.hidden,))
        return Statement(("y",), W, b, (Recurrent(_state, R, ("y",)),), _update, (), self.dtype)


def _state(y):
    return y


def _update(inner, pre, y_prev):
    y = jnp.tanh(pre["y"])
    return y, y
