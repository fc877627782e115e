"""MUT1, MUT2 and MUT3: the three architectures Jozefowicz, Zaremba & Sutskever (2015, ICML, "An Empirical
Exploration of Recurrent Network Architectures") found by mutating the GRU and kept as the best of ten
thousand. In the paper's notation (sigm = σ, the update gate z weighs the new candidate):

    MUT1:  z = σ(W_xz x_t + b_z)
           r = σ(W_xr x_t + W_hr h_t + b_r)
           h_{t+1} = tanh(W_hh (r ⊙ h_t) + tanh(x_t) + b_h) ⊙ z + h_t ⊙ (1 − z)

    MUT2:  z = σ(W_xz x_t + W_hz h_t + b_z)
           r = σ(x_t + W_hr h_t + b_r)
           h_{t+1} = tanh(W_hh (r ⊙ h_t) + W_xh x_t + b_h) ⊙ z + h_t ⊙ (1 − z)

    MUT3:  z = σ(W_xz x_t + W_hz tanh(h_t) + b_z)
           r = σ(W_xr x_t + W_hr h_t + b_r)
           h_{t+1} = tanh(W_hh (r ⊙ h_t) + W_xh x_t + b_h) ⊙ z + h_t ⊙ (1 − z)

(transcribed from the paper as RecurrentLayers.jl's mut_cell.jl quotes it; the PDF itself was not reachable:
/work/notes/literature.md, 6b). MUT1's tanh(x_t) and MUT2's raw x_t in r add the input to H units, which
needs the input size to equal the hidden size; the paper's tasks fed embeddings of that size. Here the input
is projected first, by a learned matrix without bias: tanh(x_t) becomes tanh(W_xh x_t) in MUT1 (W_xh as in
MUT2 and MUT3's candidate) and x_t becomes W_xr x_t in MUT2 (as in MUT3's r), the choice RecurrentLayers.jl
makes too. With D = H the paper's identity is one value of that matrix.

W_h· multiplies the state (recurrent_init), W_x· the input (kernel_init); biases start at zero. With 28 inputs
and 128 units: MUT1 43,904 parameters, MUT2 and MUT3 60,288 (as the GRU). W_hh acts after the reset gate, so,
as for the GRU, the fused gradient does not apply; every other path does.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from variants.cell import Cell, Recurrent, Statement, matmul
from variants.registry import INIT_KEYS, register

WHY_NOT = {"fused_gradient": "multiplies r ⊙ h_t by W_hh inside its step (after the reset gate), so W_hh's gradient "
                             "cannot be gathered after the loop",
           "parallel_scan": "is not linear in its state (its gates read h_t)"}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _reference(kind: int, cell, P, h, x):
    """One step of the module doc's equations in NumPy (float64), with the input projections it describes."""
    z_rec = 0.0 if kind == 1 else (h if kind == 2 else np.tanh(h)) @ P["W_hz"]
    z = _sigmoid(x @ P["W_xz"] + z_rec + P["b_z"])
    r = _sigmoid(x @ P["W_xr"] + h @ P["W_hr"] + P["b_r"])
    x_term = np.tanh(x @ P["W_xh"]) if kind == 1 else x @ P["W_xh"]
    h_new = np.tanh((r * h) @ P["W_hh"] + x_term + P["b_h"]) * z + h * (1.0 - z)
    return h_new, h_new


def _parameters(kind: int, D: int, H: int) -> dict:
    inputs = {f"W_x{a}": (D, H) for a in "zrh"}
    recurrent = {f"W_h{a}": (H, H) for a in ("rh" if kind == 1 else "zrh")}
    return inputs | recurrent | {f"b_{a}": (H,) for a in "zrh"}


class MUT(Cell):
    """The three MUTs: one statement, the differences in `kind` (module doc)."""

    kind: int = 1  # set by each registered subclass

    paths = ("kernel",)
    why_not = WHY_NOT

    @nn.compact
    def statement(self, x: jax.Array) -> Statement:
        D, H, kind = x.shape[-1], self.hidden, self.kind
        W = {a: self.param(f"W_x{a}", self.kernel_init, (D, H)) for a in "zrh"}
        R = {a: self.param(f"W_h{a}", self.recurrent_init, (H, H)) for a in ("rh" if kind == 1 else "zrh")}
        b = {a: self.param(f"b_{a}", nn.initializers.zeros, (H,)) for a in "zrh"}
        W_all = jnp.concatenate([W["z"], W["r"], W["h"]], axis=1)
        if kind == 1:  # b_h sits outside tanh(W_xh x): the "x" block is the bare projection, b_h goes to the update
            b_all = jnp.concatenate([b["z"], b["r"], jnp.zeros((H,), b["h"].dtype)])
            recurrent, inner = (Recurrent(_state, R["r"], ("r",)),), (R["h"], b["h"])
        elif kind == 2:
            b_all = jnp.concatenate([b["z"], b["r"], b["h"]])
            recurrent, inner = (Recurrent(_state, jnp.concatenate([R["z"], R["r"]], axis=1), ("z", "r")),), (R["h"], None)
        else:
            b_all = jnp.concatenate([b["z"], b["r"], b["h"]])
            recurrent = (Recurrent(_squashed_state, R["z"], ("z",)), Recurrent(_state, R["r"], ("r",)))
            inner = (R["h"], None)
        return Statement(("z", "r", "x"), W_all, b_all, recurrent, partial(update, kind, self.dtype), inner, self.dtype)


def update(kind: int, dtype, inner, pre, h):
    """From the pre-activations (z, r: everything but the reset product; x: W_xh x_t, with b_h for MUT2 and
    MUT3) to h_{t+1}."""
    W_hh, b_h = inner
    z = jax.nn.sigmoid(pre["z"])
    r = jax.nn.sigmoid(pre["r"])
    x_term = jnp.tanh(pre["x"]) + b_h if kind == 1 else pre["x"]
    h_new = jnp.tanh(matmul(r * h, W_hh, dtype) + x_term) * z + h * (1.0 - z)
    return h_new, h_new


def _state(h):
    return h


def _squashed_state(h):
    return jnp.tanh(h)


@register("mut1", reference=partial(_reference, 1), parameters=partial(_parameters, 1), keys=INIT_KEYS)
class MUT1Cell(MUT):
    """MUT1 (module doc): its z reads x_t only; tanh(x_t) is tanh(W_xh x_t)."""

    kind: int = 1


@register("mut2", reference=partial(_reference, 2), parameters=partial(_parameters, 2), keys=INIT_KEYS)
class MUT2Cell(MUT):
    """MUT2 (module doc): its r reads W_xr x_t for the paper's x_t."""

    kind: int = 2


@register("mut3", reference=partial(_reference, 3), parameters=partial(_parameters, 3), keys=INIT_KEYS)
class MUT3Cell(MUT):
    """MUT3 (module doc): its z reads tanh(h_t)."""

    kind: int = 3
