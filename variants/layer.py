"""The recurrent layer: any cell of `variants.cell`, run over time by `paths.scan`.

Batch-major at the API ([B, T, D]); time-major inside the scan. Variable-length batches carry
`lengths` [B]: a sequence's state is frozen after its last step and its padded outputs are zero.
Masking costs XLA:CPU 15-20% of a small training step, so callers pass lengths=None for a batch
without padding (training.steps decides per batch, on the host: `is_padded`).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

import paths

Array = jax.Array
log = logging.getLogger("odyssey")


def reverse_sequences(x: Array, lengths: Optional[Array]) -> Array:
    """Reverse each sequence of x [B, T, ...] within its own length; padding stays where it is."""
    if lengths is None:
        return x[:, ::-1]
    T = x.shape[1]
    t = jnp.arange(T)[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [B, T]
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def last_outputs(outputs: Array, lengths: Optional[Array], reverse: bool = False) -> Array:
    """The output after reading the whole sequence: step length-1 going forward, step 0 in reverse."""
    if reverse:
        return outputs[:, 0]
    if lengths is None:
        return outputs[:, -1]
    idx = jnp.clip(lengths - 1, 0)[:, None, None]
    return jnp.take_along_axis(outputs, idx, axis=1)[:, 0]


class RNN(nn.Module):
    """Scan one cell over a batch of sequences; returns (final carry, outputs [B, T, H]).

    The speed settings ask for a path (paths/__init__.py); a path the cell does not declare falls back to
    the scan with a log line (a run's model is built with only the paths its cell takes: training/model.py)."""

    cell: nn.Module
    reverse: bool = False  # read the sequence from its last real step to its first
    unroll: int = 1  # time steps per scan iteration (lax.scan's unroll)
    hoist_projection: bool = False  # True: W x + b for all steps in one matmul before the scan
    fused_gradient: bool = False  # True: paths/fused.py's scan (dR in one matmul after the loop); implies hoisting
    kernel: bool = False  # True: the whole time loop in one Pallas kernel (paths/kernel.py); implies hoisting
    parallel_scan: bool = False  # True: jax.lax.associative_scan (paths/parallel.py), for linear recurrences

    @nn.compact
    def __call__(self, x: Array, lengths: Optional[Array] = None, initial_carry=None):
        B, T, _ = x.shape
        rec = self.cell.recurrence(x)
        ran, fallbacks = paths.taken(self.cell.label(), self.cell.declared_paths(), self.cell.why_not, asked(self))
        for path, line in fallbacks.items():
            if path not in self.cell.declared_paths():
                log.info(line)
        if self.reverse:
            x = reverse_sequences(x, lengths)
        xs = jnp.swapaxes(x, 0, 1)  # [T, B, D]
        mask = None if lengths is None else jnp.arange(T)[:, None] < lengths[None, :]  # [T, B]
        carry = self.cell.initialize_carry((B,)) if initial_carry is None else initial_carry
        carry, ys = paths.scan(rec, ran, carry, xs, mask)
        ys = jnp.swapaxes(ys, 0, 1)  # [B, T, H]
        if self.reverse:
            ys = reverse_sequences(ys, lengths)
        return carry, ys


def asked(module) -> dict:
    """The speed paths a module's fields ask for (RNN, RecurrentStack, training.model.SequenceModel)."""
    return {path: getattr(module, path) for path in ("unroll", "hoist_projection", *paths.OPTIONAL)}


def example_dropout(x: Array, rate: float, key: Array, rows: Array) -> Array:
    """Inverted dropout whose mask for an example depends only on (key, its row number `rows[b]`):
    splitting a batch over devices, or computing it whole, draws every example the same mask."""
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, rows)
    keep = jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - rate, x.shape[1:]))(keys)
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


class RecurrentStack(nn.Module):
    """Stacked (optionally bidirectional) recurrent layers with dropout between them.

    Returns (outputs [B, T, dirs·H] of the top layer, last [B, dirs·H]: the top layer's output after
    reading each whole sequence, forward and, if bidirectional, backward). Dropout draws from the
    "dropout" rng per example, keyed by its row number in the whole batch (`rows`, default 0..B-1).
    """

    make_cell: Callable[[], nn.Module]  # a fresh cell per layer and direction
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between stacked layers, during training only
    unroll: int = 1
    hoist_projection: bool = False
    fused_gradient: bool = False
    kernel: bool = False
    parallel_scan: bool = False

    @nn.compact
    def __call__(self, x: Array, lengths: Optional[Array] = None, train: bool = False, rows: Optional[Array] = None):
        directions = (False, True) if self.bidirectional else (False,)
        for layer in range(self.layers):
            if layer > 0 and self.dropout > 0 and train:
                rows = jnp.arange(x.shape[0]) if rows is None else rows
                x = example_dropout(x, self.dropout, self.make_rng("dropout"), rows)
            outs, lasts = [], []
            for reverse in directions:
                name = f"layer{layer}_{'backward' if reverse else 'forward'}"
                # A module built inside a compact method belongs to that method's module; unbind the cell
                # (parent=None) so that its RNN adopts it and the parameters read layer0_forward/cell/...
                cell = self.make_cell().clone(parent=None, name=None)
                rnn = RNN(cell, reverse, **asked(self), name=name)
                _, ys = rnn(x, lengths)
                outs.append(ys)
                lasts.append(last_outputs(ys, lengths, reverse))
            x = jnp.concatenate(outs, axis=-1)
        return x, jnp.concatenate(lasts, axis=-1)
