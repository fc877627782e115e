"""Hidden size as data: a trial's parameters embedded, exactly inert, in a wider network.

A population trains trials of different hidden sizes as one program by giving every trial the
group's widest size. Each trial is initialised (or restored) at its own size, exactly as its lone
run is, then embedded: every axis whose length scales with the hidden size (H for a gate's
weights, 2·H for two directions feeding the head) is read as blocks of H, and each block is padded
with zeros to the wide size. The padded units then stay exactly zero: their incoming weights,
biases and peepholes are zero, so at every step their candidate input is 0 and so are their cell
state and output, whatever their gates do (σ(0) = ½); their outgoing weights are zero, so they add
nothing to a real unit. Their gradients are masked to zero (`mask`; without it a full-gate-
recurrence weight would learn from a padded gate's ½), so any optimizer leaves them at zero, and the
real units compute what the lone run computes. A trial's checkpoints hold its own-size state
(`extract`), which its lone run could resume from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _blocks(own: int, wide: int, h: int, w: int) -> int:
    """How many blocks of the hidden size an axis holds: own = m·h and wide = m·w."""
    m, rest = divmod(wide, w)
    if rest or m * h != own:
        raise ValueError(f"an axis of length {own} at hidden size {h} and {wide} at {w} is not a whole number "
                         "of hidden-size blocks; this parameter cannot be padded to the wider network.")
    return m


def embed(tree, wide_shapes, h: int, w: int):
    """`tree` (a state at hidden size h) laid into the shapes of `wide_shapes` (the same state at
    hidden size w ≥ h): each hidden-size block of each axis padded with zeros."""

    def one(x, like):
        x = jnp.asarray(x)
        for axis, (own, wide) in enumerate(zip(x.shape, like.shape)):
            if own != wide:
                m = _blocks(own, wide, h, w)
                x = x.reshape(x.shape[:axis] + (m, h) + x.shape[axis + 1:])
                pad = [(0, 0)] * x.ndim
                pad[axis + 1] = (0, w - h)
                x = jnp.pad(x, pad).reshape(x.shape[:axis] + (m * w,) + x.shape[axis + 2:])
        return x

    return jax.tree.map(one, tree, wide_shapes)


def extract(tree, own_shapes, h: int, w: int):
    """The inverse of `embed`: the state at hidden size h, cut out of the state at w."""

    def one(x, like):
        for axis, (wide, own) in enumerate(zip(x.shape, like.shape)):
            if own != wide:
                m = _blocks(own, wide, h, w)
                x = x.reshape(x.shape[:axis] + (m, w) + x.shape[axis + 1:])
                x = jax.lax.slice_in_dim(x, 0, h, axis=axis + 1).reshape(x.shape[:axis] + (m * h,) + x.shape[axis + 2:])
        return x

    return jax.tree.map(one, tree, own_shapes)


def mask(params, wide_shapes, h: int, w: int):
    """1 where a parameter belongs to the trial's own units, 0 where it was padded."""
    return embed(jax.tree.map(jnp.ones_like, params), wide_shapes, h, w)
