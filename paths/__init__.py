"""How a recurrent layer runs its cell over time: one entry point (`scan`), several executions of the same
statement (variants/cell.py), each tested against the plain scan in values and gradients.

    scan             jax.lax.scan over the cell's step; the projection x W + b in each step or hoisted before it
    fused_gradient   paths/fused.py: autodiff's gradient but the recurrent matrices' in one matmul after the loop
    kernel           paths/kernel.py: the whole time loop in one Pallas kernel (GPU; Pallas' interpreter elsewhere)
    parallel_scan    paths/parallel.py: jax.lax.associative_scan, for a cell whose state is linear given the inputs

Which to ask for is `speed.*` (training/speed_rules.py); which runs is `taken`: a path the cell does not declare
falls back, with one line saying why, and the run's record says what ran.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from paths.derive import OPTIONAL, Recurrence
from paths.fused import fused_scan
from paths.kernel import kernel_scan

__all__ = ["OPTIONAL", "Recurrence", "scan", "taken"]

INSTEAD = {"parallel_scan": "the sequential scan", "kernel": "the scan", "fused_gradient": "autodiff's gradient of the scan"}
DEFAULT_WHY = {  # a cell's `why_not` says better
    "parallel_scan": "does not declare parallel_scan (its state is not a_t ⊙ h_{t-1} + b_t with a_t, b_t from "
                     "the inputs alone)",
    "kernel": "has no blocked step (it does not declare kernel)",
    "fused_gradient": "does not declare fused_gradient (its step is not recurrent matmuls plus elementwise work)",
}


def taken(label: str, declared, why_not: dict, asked: dict) -> tuple[dict, dict]:
    """What runs when `asked` (speed path -> setting, as training/speed_rules.PATHS) meets a cell `label` that
    declares the optional paths `declared`: (the paths that run, {path: the line saying why} for each path
    asked for that does not).

    At most one optional path runs, the first of OPTIONAL; the others asked for fall back. The fused gradient,
    the kernel and the parallel scan read the projection hoisted; the kernel and the parallel scan have no scan
    to unroll."""
    ran, lines, winner = {}, {}, None
    for path in OPTIONAL:
        ran[path] = False
        if not asked.get(path):
            continue
        if path not in declared:
            lines[path] = f"speed.{path} asked, but cell {label} {why_not.get(path) or DEFAULT_WHY[path]}: it runs {INSTEAD[path]}"
        elif winner is not None:
            lines[path] = f"speed.{path} asked, but cell {label} runs speed.{winner}, which replaces it"
        else:
            ran[path], winner = True, path
    ran["hoist_projection"] = bool(asked.get("hoist_projection")) or winner is not None
    ran["unroll"] = int(asked.get("unroll", 1)) if winner in (None, "fused_gradient") else 1
    return ran, lines


def scan(rec: Recurrence, ran: dict, carry, x, mask):
    """Run a cell over time-major inputs x [T, B, D] (mask [T, B], False after a sequence's end, or None) by
    the paths `ran` (from `taken`): (final carry, ys [T, B, H]). A sequence's carry stays as it was after its
    last step and its padded outputs are zero, on every path."""
    if ran["parallel_scan"]:
        from paths.parallel import parallel_scan

        return parallel_scan(rec.parallel, carry, rec.project(x), mask)
    hoisted = ran["hoist_projection"]
    if hoisted:
        x = rec.project(x)  # [T, B, G·H], one large matmul
    if ran["kernel"]:
        return kernel_scan(rec.blocked, carry, x, mask)
    if ran["fused_gradient"]:
        return fused_scan(rec.linear, carry, x, mask, ran["unroll"])

    def body(carry, inputs):
        x_t, m_t = inputs
        new_carry, y = rec.step(carry, x_t if hoisted else rec.project(x_t))
        if m_t is not None:  # after a sequence's end: keep its state, output zeros
            keep = m_t[:, None]
            new_carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
            y = jnp.where(keep, y, 0.0)
        return new_carry, y

    return jax.lax.scan(body, carry, (x, mask), unroll=ran["unroll"])
