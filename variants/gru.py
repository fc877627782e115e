"""Gated recurrent unit (Cho et al. 2014), reset applied before the recurrent matmul.

    z_t = σ(W_z x_t + R_z h_{t-1} + b_z)                 update gate
    r_t = σ(W_r x_t + R_r h_{t-1} + b_r)                 reset gate
    ĥ_t = tanh(W_h x_t + R_h (r_t ⊙ h_{t-1}) + b_h)      candidate
    h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ ĥ_t

This is Keras' `GRU(reset_after=False)`: 28 inputs and 128 units give 60,288 parameters. Because
r_t multiplies h_{t-1} before R_h, the step needs two matmuls: the fused [R_z R_r] one and R_h.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.kernel import BlockStep
from variants.protocol import Recurrence, StateCell, as_state, from_state, matmul


class GRUCell(StateCell):
    """GRU in Keras' reset-before form (equations above)."""

    @nn.compact
    def recurrence(self, x: jax.Array) -> Recurrence:
        H, D = self.hidden, x.shape[-1]
        W = {a: self.param(f"W_{a}", self.kernel_init, (D, H)) for a in "zrh"}
        R = {a: self.param(f"R_{a}", self.recurrent_init, (H, H)) for a in "zrh"}
        b = {a: self.param(f"b_{a}", nn.initializers.zeros, (H,)) for a in "zrh"}
        W_all = jnp.concatenate([W[a] for a in "zrh"], axis=1)  # [D, 3H]
        R_zr = jnp.concatenate([R["z"], R["r"]], axis=1)  # [H, 2H]
        R_h = R["h"]
        b_all = jnp.concatenate([b[a] for a in "zrh"])
        dtype = self.dtype

        def project(x):
            return matmul(x, W_all, dtype) + b_all

        def step(h_prev, xw):
            xz, xr, xh = jnp.split(xw, 3, axis=-1)
            rz, rr = jnp.split(matmul(h_prev, R_zr, dtype), 2, axis=-1)
            z = jax.nn.sigmoid(xz + rz)
            r = jax.nn.sigmoid(xr + rr)
            h_hat = jnp.tanh(xh + matmul(r * h_prev, R_h, dtype))
            h = z * h_prev + (1.0 - z) * h_hat
            return h, h

        blocked = BlockStep((R["z"], R["r"], R["h"]), partial(_blocked_step, dtype), 3, as_state, from_state)
        return Recurrence(project, step, blocked=blocked)


def _blocked_step(dtype, R, xw, state):
    """The step on gate blocks (variants.kernel): the same equations, one matmul per block."""
    (R_z, R_r, R_h), (xz, xr, xh), (h_prev,) = R, xw, state
    z = jax.nn.sigmoid(xz + matmul(h_prev, R_z, dtype))
    r = jax.nn.sigmoid(xr + matmul(h_prev, R_r, dtype))
    h_hat = jnp.tanh(xh + matmul(r * h_prev, R_h, dtype))
    h = z * h_prev + (1.0 - z) * h_hat
    return (h,), h
