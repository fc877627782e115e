"""Gated recurrent unit (Cho et al. 2014), reset applied before the recurrent matmul.

    z_t = σ(W_z x_t + R_z h_{t-1} + b_z)                 update gate
    r_t = σ(W_r x_t + R_r h_{t-1} + b_r)                 reset gate
    ĥ_t = tanh(W_h x_t + R_h (r_t ⊙ h_{t-1}) + b_h)      candidate
    h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ ĥ_t

This is Keras' `GRU(reset_after=False)`: 28 inputs and 128 units give 60,288 parameters. Because
r_t multiplies h_{t-1} before R_h, the step needs two matmuls: the fused [R_z R_r] one and R_h.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.protocol import Recurrence, StateCell, matmul


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

        return Recurrence(project, step)
