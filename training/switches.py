"""Variants as data: a trial's state laid into the state of `variants.SwitchedCell`, and cut out again.

A population of mixed Greff variants runs one program over the superset of their parameters (V's, plus
FGR's gate-to-gate matrices when the group has full recurrence). Each trial is initialised (or
restored) as its lone run, with its own variant's parameters, then embedded by name: a parameter the
variant has keeps its value and its optimizer state, one it lacks (and its optimizer state) is zero,
and the trial's switches are written into the "switches" collection. SwitchedCell guarantees that
the missing parameters get exactly zero gradients, so they stay zero; checkpoints hold the trial's own
state (`extract`), which its lone run can resume from.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from variants import switch_values


def embed(own, superset_shapes, spec):
    """`own` (a state {"params", "opt_state"} of a GatedCell model with `spec`) in the structure of
    `superset_shapes` (the same model with switches as data, at the same width)."""
    leaves = dict(jax.tree_util.tree_flatten_with_path(own)[0])
    values = switch_values(spec)

    def fill(path, like):
        if path in leaves:
            return jnp.asarray(leaves[path])
        if _is_switch(path):
            return jnp.full(like.shape, values[_name(path)], like.dtype)
        return jnp.zeros(like.shape, like.dtype)

    return jax.tree_util.tree_map_with_path(fill, superset_shapes)


def extract(state, own_shapes):
    """The inverse of `embed`: the trial's own state, cut out of the superset's by name."""
    leaves = dict(jax.tree_util.tree_flatten_with_path(state)[0])
    return jax.tree_util.tree_map_with_path(lambda path, _: leaves[path], own_shapes)


def _is_switch(path) -> bool:
    """A leaf of the model's "switches" collection (params["switches"]), not the optimizer's copy of it."""
    keys = [getattr(k, "key", None) for k in path]
    return keys[:2] == ["params", "switches"]


def _name(path) -> str:
    return path[-1].key
