"""What a cell is: one statement of its mathematics, from which every execution path is derived.

A cell declares three things in `statement(x)` (a compact method, so it also creates its parameters):

  - its input projection: W [D, G·H] and b [G·H], read as G named blocks of H units (`blocks`);
  - its recurrent terms, each linear in something read from the carry: `Recurrent(read, R, blocks)` adds
    read(carry) @ R to those (consecutive) blocks' pre-activations;
  - one `update(inner, pre, carry) -> (carry, y)`: from the pre-activations (a dict of [..., H] blocks) and
    the carry to the new carry and output; `inner` holds whatever else it reads (peepholes, switches, a
    matrix applied after a gate as the GRU's R_h).

So the plain step is `update(inner, split(x W + b) + read(carry) R, carry)`, and `paths/` derives the rest
from the same statement: the projection hoisted before the scan, the hand-written gradient (the R gathered
in one matmul after the loop), the Pallas time loop (the step on blocks), the parallel scan (for a cell whose
update is h_t = a_t ⊙ h_{t-1} + b_t) and populations of mixed variants (switches as data, `select`).

The optional paths are declared in `paths` (class attribute, or the `declared_paths` method where they depend
on the instance); `paths.derive.check` refuses a declaration the statement cannot honour when the model is
built, and a path asked for but not declared falls back to the scan with one log line naming the reason
(`why_not`). docs/cells.md walks through a new cell.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from paths import Recurrence, derive
from paths.ops import matmul

Array = jax.Array

__all__ = ["Cell", "Recurrent", "Statement", "matmul", "select"]


class Recurrent(NamedTuple):
    """A linear recurrent term: read(carry) @ R added to the pre-activations of `blocks`."""

    read: Callable[[Any], Array]  # carry -> the left operand [..., K]; must work on a carry stacked over time
    R: Array  # [K, len(blocks)·H], the blocks' matrices side by side
    blocks: tuple[str, ...]  # consecutive blocks of the input projection


class Statement(NamedTuple):
    """A cell's mathematics, once (module doc)."""

    blocks: tuple[str, ...]  # the input projection's blocks, in column order
    W: Array  # [D, G·H]
    b: Array  # [G·H]
    recurrent: tuple[Recurrent, ...]  # the terms linear in (something read from) the carry
    update: Callable  # (inner, pre: {block: [..., H]}, carry) -> (carry, y)
    inner: Any = ()  # what `update` reads besides pre and carry, a pytree of arrays
    dtype: Any = None  # matmul dtype (paths.ops.matmul)
    coefficients: Callable | None = None  # (inner, pre) -> (a, b) with h_t = a ⊙ h_{t-1} + b and y_t = h_t (parallel scan)


def _keyword(default):
    return dataclasses.field(default=default, kw_only=True)


class Cell(nn.Module):
    """Base of every cell: the fields and the protocol; a subclass writes `statement` (and its carry)."""

    hidden: int
    # keyword-only, so that a subclass's own fields follow `hidden` positionally (GatedCell(64, spec))
    kernel_init: Callable = _keyword(nn.initializers.glorot_uniform())  # W: Keras' default, the tutorial's reference
    recurrent_init: Callable = _keyword(nn.initializers.orthogonal())  # R: keeps early gradients from exploding or vanishing
    dtype: Any = _keyword(None)  # matmul dtype (e.g. bfloat16 on GPU/TPU); params and state stay float32

    paths: ClassVar[tuple[str, ...]] = ()  # optional speed paths declared: fused_gradient, kernel, parallel_scan
    why_not: ClassVar[dict[str, str]] = {}  # path -> why this cell cannot take it (its fallback's log line)

    def initialize_carry(self, batch_shape: tuple[int, ...]):
        """One state vector h (GRU, SRN, ...); cells with more state override this."""
        return jnp.zeros(batch_shape + (self.hidden,), jnp.float32)

    def statement(self, x: Array) -> Statement:
        raise NotImplementedError(f"{type(self).__name__} must define statement(x) (variants/cell.py)")

    @nn.nowrap
    def declared_paths(self) -> tuple[str, ...]:
        return self.paths

    @nn.nowrap
    def label(self) -> str:
        """The cell's name in messages: the name it is registered by (variants/registry.py)."""
        return getattr(type(self), "registered_name", type(self).__name__)

    def recurrence(self, x: Array) -> Recurrence:
        """Create (or fetch) the parameters; the statement's pure functions for every path. A declared path
        the statement cannot honour is refused here, when the model is built."""
        st, declared, carry = self.statement(x), self.declared_paths(), self.initialize_carry((1,))
        derive.check(self.label(), st, declared, carry)
        return derive.recurrence(st, declared, carry)

    def __call__(self, carry, x):
        """The plain cell protocol: one time step, (carry, x_t) -> (carry, y_t)."""
        rec = self.recurrence(x)
        return rec.step(carry, rec.project(x))

    def weights(self, blocks, inputs: int, recurrent=(), biases=None):
        """The usual parameters, named by the paper's symbols: W_a [D, H] for every block a, R_a [H, H] for the
        blocks in `recurrent`, b_a [H] with the initialiser `biases.get(a)` (default zeros).
        Returns (W [D, G·H], b [G·H], {a: R_a}). Called from the compact `statement`."""
        H, biases = self.hidden, biases or {}
        W = [self.param(f"W_{a}", self.kernel_init, (inputs, H)) for a in blocks]
        R = {a: self.param(f"R_{a}", self.recurrent_init, (H, H)) for a in recurrent}
        b = [self.param(f"b_{a}", biases.get(a, nn.initializers.zeros), (H,)) for a in blocks]
        return jnp.concatenate(W, axis=1), jnp.concatenate(b), R


def select(on, then, otherwise):
    """`then` where the switch `on` holds, else `otherwise`: one helper for a switch fixed when the program is
    built (a Python bool) and a switch that is data (a traced boolean array, a population of mixed variants).

    A fixed switch computes only the branch it picks (a branch given as a function is called), so a switched-off
    gate's parameters need not exist. A traced one computes both and picks with `jnp.where`, which passes no
    gradient to the branch not taken: a variant's missing parameters get exactly zero gradients.
    """
    if isinstance(on, (bool, np.bool_)):
        branch = then if on else otherwise
        return branch() if callable(branch) else branch
    then = then() if callable(then) else then
    otherwise = otherwise() if callable(otherwise) else otherwise
    return jnp.where(on, then, otherwise)
