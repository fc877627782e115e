"""The simple (Elman) recurrent network: y_t = tanh(W x_t + R y_{t-1} + b)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.fused import LinearStep
from variants.protocol import Recurrence, StateCell, matmul


class SimpleCell(StateCell):
    """Elman RNN with tanh; 28 inputs and 128 units give 20,096 parameters, as Keras' SimpleRNN."""

    @nn.compact
    def recurrence(self, x: jax.Array) -> Recurrence:
        W = self.param("W", self.kernel_init, (x.shape[-1], self.hidden))
        R = self.param("R", self.recurrent_init, (self.hidden, self.hidden))
        b = self.param("b", nn.initializers.zeros, (self.hidden,))
        dtype = self.dtype

        def project(x):
            return matmul(x, W, dtype) + b

        step = LinearStep((R,), (0,), _reads_state, _finish, (), dtype)  # y = tanh(xw + y_prev R)
        return Recurrence(project, step, linear=step)


def _reads_state(y_prev):
    return (y_prev,)


def _finish(small, pre, y_prev):
    y = jnp.tanh(pre)
    return y, y
