"""The simple (Elman) recurrent network: y_t = tanh(W x_t + R y_{t-1} + b)."""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.fused import LinearStep
from variants.kernel import BlockStep
from variants.protocol import Recurrence, StateCell, as_state, from_state, matmul


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
        blocked = BlockStep(R, partial(_blocked_step, dtype), 1, as_state, from_state)
        return Recurrence(project, step, linear=step, blocked=blocked)


def _reads_state(y_prev):
    return (y_prev,)


def _finish(small, pre, y_prev):
    y = jnp.tanh(pre)
    return y, y


def _blocked_step(dtype, R, xw, state):
    y = jnp.tanh(xw[0] + matmul(state[0], R, dtype))
    return (y,), y
