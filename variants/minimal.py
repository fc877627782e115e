"""minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?",
arXiv 2410.01201): the GRU and the LSTM with their gates reading the input only and no tanh on the candidate,

    minGRU:   z_t = σ(W_z x_t + b_z)                       h̃_t = W_h x_t + b_h
              h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

    minLSTM:  f_t = σ(W_f x_t + b_f)    i_t = σ(W_i x_t + b_i)    h̃_t = W_h x_t + b_h
              f'_t = f_t / (f_t + i_t)   i'_t = i_t / (f_t + i_t)      (the gates normalised)
              h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t

(Linear_dh(x) = W x + b in the paper; transcribed from its Appendix B as public implementations quote it:
/work/notes/literature.md, 6a.) The state is linear in h_{t-1} given the inputs, h_t = a_t ⊙ h_{t-1} + b_t,
so these cells also run as a parallel scan (paths/parallel.py, speed.parallel_scan). They have no recurrent
matrix: the fused gradient has nothing to gather. With 28 inputs and 128 units: minGRU 7,424 parameters,
minLSTM 11,136. The paper's log-space variant (h̃ = g(·) > 0, for its cumulative-sum scan) is not here.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar

import flax.linen as nn
import jax
import numpy as np

from variants.cell import Cell, Statement
from variants.registry import register

WHY_NOT = {"fused_gradient": "has no recurrent matrix: its gates read x_t only, nothing to gather after the loop"}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _gru_reference(cell, P, h, x):
    z = _sigmoid(x @ P["W_z"] + P["b_z"])
    h = (1.0 - z) * h + z * (x @ P["W_h"] + P["b_h"])
    return h, h


def _lstm_reference(cell, P, h, x):
    f, i = _sigmoid(x @ P["W_f"] + P["b_f"]), _sigmoid(x @ P["W_i"] + P["b_i"])
    h = f / (f + i) * h + i / (f + i) * (x @ P["W_h"] + P["b_h"])
    return h, h


def _parameters(blocks: str):
    return lambda D, H: {f"W_{a}": (D, H) for a in blocks} | {f"b_{a}": (H,) for a in blocks}


class MinimalCell(Cell):
    """The statement both share: gates and candidate from x_t alone, h_t = a_t ⊙ h_{t-1} + b_t."""

    paths = ("kernel", "parallel_scan")
    why_not = WHY_NOT
    blocks: ClassVar[str] = ""  # its input projection's blocks, one letter each (set by each cell below)

    @nn.compact
    def statement(self, x: jax.Array) -> Statement:
        W, b, _ = self.weights(self.blocks, x.shape[-1])
        of = type(self).coefficients
        return Statement(tuple(self.blocks), W, b, (), partial(_update, of), (), self.dtype, coefficients=of)


def _update(coefficients, inner, pre, h):
    a, b = coefficients(inner, pre)
    h = a * h + b
    return h, h


def _gru_coefficients(inner, pre):
    """h_t = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t as a_t ⊙ h_{t-1} + b_t."""
    z = jax.nn.sigmoid(pre["z"])
    return 1.0 - z, z * pre["h"]


def _lstm_coefficients(inner, pre):
    """h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t, the gates normalised to sum to one."""
    f, i = jax.nn.sigmoid(pre["f"]), jax.nn.sigmoid(pre["i"])
    return f / (f + i), i / (f + i) * pre["h"]


@register("mingru", reference=_gru_reference, parameters=_parameters("zh"), keys=("kernel_init",))
class MinGRUCell(MinimalCell):
    """minGRU (module doc)."""

    blocks = "zh"
    coefficients = staticmethod(_gru_coefficients)


@register("minlstm", reference=_lstm_reference, parameters=_parameters("fih"), keys=("kernel_init",))
class MinLSTMCell(MinimalCell):
    """minLSTM (module doc)."""

    blocks = "fih"
    coefficients = staticmethod(_lstm_coefficients)
