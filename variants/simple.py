"""The simple (Elman) recurrent network: y_t = tanh(W x_t + R y_{t-1} + b)."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.protocol import Recurrence, matmul


class SimpleCell(nn.Module):
    """Elman RNN with tanh; 28 inputs and 128 units give 20,096 parameters, as Keras' SimpleRNN."""

    hidden: int
    kernel_init: Callable = nn.initializers.glorot_uniform()  # Keras' default
    recurrent_init: Callable = nn.initializers.orthogonal()  # keeps early gradients at scale
    dtype: Any = None

    def initialize_carry(self, batch_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(batch_shape + (self.hidden,), jnp.float32)

    @nn.compact
    def recurrence(self, x: jax.Array) -> Recurrence:
        W = self.param("W", self.kernel_init, (x.shape[-1], self.hidden))
        R = self.param("R", self.recurrent_init, (self.hidden, self.hidden))
        b = self.param("b", nn.initializers.zeros, (self.hidden,))
        dtype = self.dtype

        def project(x):
            return matmul(x, W, dtype) + b

        def step(y_prev, xw):
            y = jnp.tanh(xw + matmul(y_prev, R, dtype))
            return y, y

        return Recurrence(project, step)

    def __call__(self, carry, x):
        rec = self.recurrence(x)
        return rec.step(carry, rec.project(x))
