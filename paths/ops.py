"""The one matmul every path uses, so a cell's numbers do not depend on which path computed them."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
