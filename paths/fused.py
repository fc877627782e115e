"""A scan with a hand-written gradient: recurrent-weight gradients in one matmul after the loop.

JAX differentiates `lax.scan` step by step: the backward loop carries dR and adds y_{t-1}ᵀ·dpre_t to it
at every step, a small [H, B] × [B, G·H] matmul plus an [H, G·H] addition per time step, on top of the
dpre_t·Rᵀ that the recurrence really needs. cuDNN and oneDNN do what this module does: the backward
loop computes only what flows through time (dpre_t and d carry_{t-1}); the weight gradient is one
large matmul over all steps afterwards, dR = Σ_t y_{t-1}ᵀ dpre_t = Y_prevᵀ · dPre ([H, T·B] × [T·B, G·H]).

It serves every cell whose step is *linear-then-elementwise* (`LinearStep`)::

    pre_t = xw_t + Σ_k reads(carry_{t-1})[k] @ R_k        (R_k's columns start at offsets[k])
    carry_t, y_t = finish(small, pre_t, carry_{t-1})      (elementwise: gates, peepholes, activations)

which paths/derive.py writes from the statement of every cell that declares `fused_gradient`: every
switch of the gated cell (FGR's gate-to-gate matrix is a second R_k reading the carry's gates) and the
SRN; the GRU applies its reset gate before its second matmul and is not of this form. The elementwise part's gradient still comes from autodiff: the forward loop takes `jax.vjp` of
`finish` at every step and keeps its residuals (a `jax.vjp` function is a pytree, so the scan stacks
them), which the backward loop applies; a new switch needs no new derivative code.

The numbers equal autodiff's up to float summation order (tests/test_speed_settings.py: 1e-5).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from paths.ops import matmul

Array = jax.Array


class LinearStep(NamedTuple):
    """A recurrent step split into its recurrent matmuls and its elementwise rest (see module doc).

    `reads` and `finish` must be pure functions of their arguments (every parameter they need is in
    `weights` or `small`), and `reads` only selects carry fields, so it also works on stacked carries.
    """

    weights: tuple[Array, ...]  # R_k
    offsets: tuple[int, ...]  # first column of pre that R_k's product is added to
    reads: Callable[[Any], tuple[Array, ...]]  # carry -> the left operands of the R_k
    finish: Callable[[Any, Array, Any], tuple[Any, Array]]  # (small, pre, carry) -> (carry, y)
    small: Any  # the step's other parameters (peepholes), a pytree
    dtype: Any = None  # matmul dtype (paths.ops.matmul)

    def __call__(self, carry, xw: Array):
        """The plain step, (carry, xw_t) -> (carry, y_t): what the cell's `Recurrence.step` is."""
        pre = pre_activation(xw, self.reads(carry), self.weights, self.offsets, self.dtype)
        return self.finish(self.small, pre, carry)


def pre_activation(xw: Array, lhs, weights, offsets, dtype) -> Array:
    pre = xw
    for a, R, start in zip(lhs, weights, offsets):
        product = matmul(a, R, dtype)
        if start == 0 and R.shape[1] == pre.shape[-1]:
            pre = pre + product
        else:
            pre = pre.at[..., start:start + R.shape[1]].add(product)
    return pre


def masked(finish, small, pre, carry, m_t):
    """`finish`, with the scanned layer's padding rule: after its last step a sequence's carry stays
    and its output is zero (m_t [B] is False there; None: no sequence of the batch is padded)."""
    new, y = finish(small, pre, carry)
    if m_t is None:
        return new, y
    keep = m_t[:, None]
    return jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry), jnp.where(keep, y, 0.0)


def fused_scan(step: LinearStep, carry0, xw: Array, mask: Array | None, unroll: int = 1):
    """Scan `step` over xw [T, B, G·H] (mask [T, B] or None): (final carry, ys [T, B, H]), with the
    gradient of the module doc."""
    return _scan(step.reads, step.finish, step.offsets, step.dtype, unroll, step.weights, step.small, carry0, xw, mask)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _scan(reads, finish, offsets, dtype, unroll, weights, small, carry0, xw, mask):
    return _forward(reads, finish, offsets, dtype, unroll, weights, small, carry0, xw, mask)[0]


def _forward(reads, finish, offsets, dtype, unroll, weights, small, carry0, xw, mask):
    def body(carry, inputs):
        x_t, m_t = inputs
        pre = pre_activation(x_t, reads(carry), weights, offsets, dtype)
        (new, y), finish_vjp = jax.vjp(lambda s, p, c: masked(finish, s, p, c, m_t), small, pre, carry)
        return new, (y, finish_vjp, carry)

    carry, (ys, vjps, carries) = jax.lax.scan(body, carry0, (xw, mask), unroll=unroll)
    return (carry, ys), (weights, small, mask, vjps, carries)


def _backward(reads, finish, offsets, dtype, unroll, residuals, cotangents):
    weights, small, mask, vjps, carries = residuals
    d_carry_last, d_ys = cotangents

    def body(acc, inputs):
        d_carry, d_small = acc
        finish_vjp, carry, d_y = inputs
        d_s, d_pre, d_carry_prev = finish_vjp((d_carry, d_y))
        _, reads_vjp = jax.vjp(reads, carry)
        d_lhs = tuple(matmul_by_transpose(d_pre[..., start:start + R.shape[1]], R, dtype) for R, start in zip(weights, offsets))
        d_carry_prev = jax.tree.map(jnp.add, d_carry_prev, reads_vjp(d_lhs)[0])
        return (d_carry_prev, jax.tree.map(jnp.add, d_small, d_s)), d_pre

    zeros = jax.tree.map(jnp.zeros_like, small)
    (d_carry0, d_small), d_pres = jax.lax.scan(
        body, (d_carry_last, zeros), (vjps, carries, d_ys), reverse=True, unroll=unroll)
    lhs = reads(carries)  # each [T, B, in]
    d_weights = tuple(
        transpose_by_matmul(a.reshape(-1, a.shape[-1]), d_pres[..., start:start + R.shape[1]].reshape(-1, R.shape[1]), dtype)
        for a, R, start in zip(lhs, weights, offsets))
    return d_weights, d_small, d_carry0, d_pres, None


_scan.defvjp(_forward, _backward)


def matmul_by_transpose(d: Array, w: Array, dtype) -> Array:
    """d @ wᵀ without materialising wᵀ (a copy per time step, inside the loop, on XLA:CPU)."""
    return _dot(d, w, ((1,), (1,)), dtype)


def transpose_by_matmul(a: Array, d: Array, dtype) -> Array:
    """aᵀ @ d, contracting the rows (all time steps and examples) in one matmul."""
    return _dot(a, d, ((0,), (0,)), dtype)


def _dot(a, b, contracting, dtype):
    if dtype is not None:
        a, b = a.astype(dtype), b.astype(dtype)
    return jax.lax.dot_general(a, b, (contracting, ((), ())), preferred_element_type=jnp.float32)
