"""Gated recurrent unit (Cho et al. 2014), reset applied before the recurrent matmul.

    z_t = σ(W_z x_t + R_z h_{t-1} + b_z)                 update gate
    r_t = σ(W_r x_t + R_r h_{t-1} + b_r)                 reset gate
    ĥ_t = tanh(W_h x_t + R_h (r_t ⊙ h_{t-1}) + b_h)      candidate
    h_t = z_t ⊙ h_{t-1} + (1 - z_t) ⊙ ĥ_t

This is Keras' `GRU(reset_after=False)`: 28 inputs and 128 units give 60,288 parameters. Because
r_t multiplies h_{t-1} before R_h, R_h is applied inside the update, after the reset gate: the
recurrent term is [R_z R_r] alone, and the fused gradient (which gathers every recurrent matrix's
gradient after the loop) does not apply.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.cell import Cell, Recurrent, Statement, matmul
from variants.registry import register


@register("gru")
class GRUCell(Cell):
    """GRU in Keras' reset-before form (equations above)."""

    paths = ("kernel",)
    why_not = {"fused_gradient": "multiplies r_t ⊙ h_{t-1} by R_h inside its step (the reset gate comes before "
                                 "that matmul), so R_h's gradient cannot be gathered after the loop"}

    @nn.compact
    def statement(self, x: jax.Array) -> Statement:
        W, b, R = self.weights("zrh", x.shape[-1], recurrent="zrh")
        R_zr = jnp.concatenate([R["z"], R["r"]], axis=1)  # [H, 2H]
        return Statement(("z", "r", "h"), W, b, (Recurrent(_state, R_zr, ("z", "r")),), partial(update, self.dtype),
                         R["h"], self.dtype)


def update(dtype, R_h, pre, h_prev):
    """The module doc's equations from the pre-activations W_z x + R_z h + b_z, W_r x + R_r h + b_r, W_h x + b_h."""
    z = jax.nn.sigmoid(pre["z"])
    r = jax.nn.sigmoid(pre["r"])
    h_hat = jnp.tanh(pre["h"] + matmul(r * h_prev, R_h, dtype))
    h = z * h_prev + (1.0 - z) * h_hat
    return h, h


def _state(h):
    return h
