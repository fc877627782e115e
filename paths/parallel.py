"""The parallel scan: a recurrence h_t = a_t ⊙ h_{t-1} + b_t whose a_t, b_t come from the inputs alone.

minGRU and minLSTM (Feng et al. 2024) are such cells: their gates read x_t only, so every (a_t, b_t) is known
before the loop, and the steps compose associatively,

    (a, b) ∘ (a', b') = (a ⊙ a', a' ⊙ b + b')       (step (a, b) first, then (a', b')),

so `jax.lax.associative_scan` computes all h_t in O(log T) sequential depth instead of T steps. A padded step
is the identity (a = 1, b = 0): the state stays after a sequence's end, as on every path; the initial state
enters as the first step's b_1 + a_1 ⊙ h_0.

The composition multiplies and adds, never divides, so it needs no log space: the paper computes in log space
(after Heinsen 2023) for its cumulative-sum formulation, which divides by running products of a, and only for
its variant with positive candidates h̃ = g(·); Odyssey's minGRU and minLSTM keep the main text's h̃ = W x + b.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class Coefficients(NamedTuple):
    """A cell's linear recurrence, as the parallel scan reads it (variants/cell.py: Statement)."""

    of: Callable  # (inner, pre) -> (a, b), each [..., H]
    inner: Any
    blocks: tuple[str, ...]  # the names of the projected input's blocks


def parallel_scan(coefficients: Coefficients, h0, xw, mask):
    """h_t over xw [T, B, G·H] (mask [T, B] or None): (final h [B, H], hs [T, B, H], zero where padded)."""
    pre = dict(zip(coefficients.blocks, jnp.split(xw, len(coefficients.blocks), axis=-1)))
    a, b = coefficients.of(coefficients.inner, pre)
    if mask is not None:
        keep = mask[..., None]
        a, b = jnp.where(keep, a, 1.0), jnp.where(keep, b, 0.0)
    b = b.at[0].add(a[0] * h0)
    _, hs = jax.lax.associative_scan(_compose, (a, b), axis=0)
    ys = hs if mask is None else jnp.where(mask[..., None], hs, 0.0)
    return hs[-1], ys


def _compose(first, then):
    (a, b), (a2, b2) = first, then
    return a * a2, a2 * b + b2
