"""The protocol every cell follows, so one scan serves them all.

A cell is a Flax module with
  - `initialize_carry(batch_shape) -> carry`
  - `recurrence(x) -> Recurrence`: creates (or fetches) its parameters and returns two pure functions,
      `project(x)   -> xw`            the input projection W x + b, [..., D] -> [..., G·H]
      `step(carry, xw) -> (carry, y)` the recurrent step: one fused matmul [B, H] × [H, G·H] plus
                                        elementwise work
  - `__call__(carry, x) -> (carry, y)`: one time step, `step(carry, project(x))`.

Splitting the projection from the step lets the layer compute it for every time step at once (one
large matmul before the scan) or inside each step; which is faster depends on backend and shapes,
so `variants.layer.RNN` makes it a switch.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class Recurrence(NamedTuple):
    project: Callable[[jax.Array], jax.Array]
    step: Callable[[Any, jax.Array], tuple[Any, jax.Array]]
    linear: Any = None  # the step as a variants.fused.LinearStep, when it has that form (fused-gradient scan)
    blocked: Any = None  # the step as a variants.kernel.BlockStep, when the cell has one (the Pallas time loop)


class StateCell(nn.Module):
    """Base of the cells whose carry is one state vector h (GRU, SRN): the shared fields and protocol.

    Subclasses implement the compact `recurrence(x)`.
    """

    hidden: int
    kernel_init: Callable = nn.initializers.glorot_uniform()  # W: Keras' default, the tutorial's reference
    recurrent_init: Callable = nn.initializers.orthogonal()  # R: keeps early gradients from exploding or vanishing
    dtype: Any = None  # matmul dtype (e.g. bfloat16 on GPU/TPU); params and state stay float32

    def initialize_carry(self, batch_shape: tuple[int, ...]) -> jax.Array:
        return jnp.zeros(batch_shape + (self.hidden,), jnp.float32)

    def __call__(self, carry, x):
        """The plain cell protocol: one time step, (h_{t-1}, x_t) -> (h_t, h_t)."""
        rec = self.recurrence(x)
        return rec.step(carry, rec.project(x))


def matmul(a: jax.Array, w: jax.Array, dtype=None) -> jax.Array:
    """a @ w, computed in `dtype` (e.g. bfloat16) when given, returned as float32.

    `a` of rank > 2 ([T, B, D] for a hoisted projection) is flattened to one 2-D matmul: XLA:CPU
    runs the gradient of a rank-3 dot (a contraction over T and B) far slower than the 2-D one.
    """
    lead = a.shape[:-1]
    a = a.reshape(-1, a.shape[-1])
    if dtype is None:
        out = a @ w
    else:
        out = (a.astype(dtype) @ w.astype(dtype)).astype(jnp.float32)
    return out.reshape(lead + (w.shape[-1],))


def as_state(h: jax.Array) -> tuple[jax.Array]:
    """A one-vector carry as the state tuple of variants.kernel.BlockStep."""
    return (h,)


def from_state(state: tuple[jax.Array], h: jax.Array) -> jax.Array:
    return state[0]
