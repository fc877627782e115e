"""The whole time loop in one Pallas kernel: no kernel launch per time step on GPU.

`lax.scan` on GPU launches a handful of small kernels per time step; at T=784 (pixel MNIST) that is
thousands of launches per batch, and cuDNN's fused RNN ran 5-12x faster on the H200 (issue 17). Here
each program of the kernel owns `block` rows of the batch (rows never interact in a recurrent step) and
runs all T steps itself, reading x W + b for step t from the projected input and writing y_t; the
backward kernel runs the steps in reverse. FlashRNN (Pöppel et al. 2024) goes further (it splits R over
several programs that synchronise every step); this is the simple persistent form.

The kernel runs a `BlockStep`: the cell's step on gate *blocks* — xw for step t as a tuple of G arrays
[B, H] and the state as a tuple of [B, H] arrays — because Triton (Pallas' GPU backend here) cannot slice
or concatenate values in registers, only load and store slices of memory. paths/derive.py writes it from
the cell's statement for every cell that declares `kernel` (every gated switch but FGR, whose carry holds
its gates side by side, the GRU and the SRN); the others fall back to the scan, with a log line.

Gradient: the backward kernel takes `jax.vjp` of the cell's own step at every step (recomputing it from
the saved state of step t-1), so a new switch needs no derivative code; each program sums its rows'
parameter gradients into its own slot of the output and the slots are added afterwards. Off GPU the
kernels run in Pallas' interpreter (`interpret=True`): slow, but the same program, which is how the
tests compare it with the scan (values and gradients to 1e-5) on CPU.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

Array = jax.Array

BLOCK = 16  # batch rows per program: Triton's matmul needs at least 16 rows (powers of two only)


class BlockStep(NamedTuple):
    """A recurrent step in the form the kernel runs (module doc).

    The kernel may pad the units (`kernel_width`), so `apply` must keep a unit whose state, input and
    weights are zero at zero (true of every gated switch, the GRU and the SRN), and every axis of size H
    of `params` must be an axis of units.
    """

    params: Any  # pytree of the arrays the step reads: recurrent matrices, peepholes
    apply: Callable  # (params, xw blocks: tuple of G [B, H], state: tuple of [B, H]) -> (state, y [B, H]); pure
    blocks: int  # G: the projected input's last axis is G blocks of H
    state_of: Callable  # the cell's carry -> its state tuple
    carry_of: Callable  # (state tuple, a carry of the same cell) -> that carry with the new state


def kernel_scan(step: BlockStep, carry0, xw: Array, mask: Array | None, block: int = BLOCK,
                interpret: bool | None = None):
    """Run `step` over xw [T, B, G·H] (mask [T, B] or None: padded steps keep the state and output zero):
    (final carry, ys [T, B, H]), as `jax.lax.scan` over the cell's step would return."""
    T, B, GH = xw.shape
    G = step.blocks
    H, Hp = GH // G, kernel_width(GH // G)
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    rows = -B % block

    def padded(a, units=True):  # [..., B, H] -> [..., B + rows, Hp]: zero rows and zero units
        return jnp.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, rows), (0, Hp - H if units else 0)])

    # A zero-padded unit stays zero (its block input, cell and output are 0 for zero weights and input),
    # and its weights are zero, so the real units compute exactly what they compute unpadded.
    xw = jnp.pad(xw.reshape(T, B, G, H), [(0, 0), (0, rows), (0, 0), (0, Hp - H)]).reshape(T, B + rows, G * Hp)
    params = [jnp.pad(p, [(0, Hp - H if d == H else 0) for d in p.shape]) for p in jax.tree.leaves(step.params)]
    m = None if mask is None else padded(mask.astype(jnp.float32)[..., None], units=False)
    config = _Config(step.apply, G, block, interpret, jax.tree.structure(step.params))
    ys, state = _scan(config, params, tuple(map(padded, step.state_of(carry0))), xw, m)
    return step.carry_of(tuple(s[:B, :H] for s in state), carry0), ys[:, :B, :H]


def kernel_width(hidden: int) -> int:
    """The units the kernel computes: Triton's tensors have power-of-two sizes and its matmuls at least 16
    rows and columns, so a layer of 20-200 units (Greff's search) runs zero-padded to 32-256."""
    return max(16, 1 << (hidden - 1).bit_length())


class _Config(NamedTuple):
    """The static half of a kernel call (hashable: custom_vjp's non-differentiable argument)."""

    apply: Callable
    blocks: int
    block: int
    interpret: bool
    treedef: Any


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(config, params, state0, xw, mask):
    ys, state, _ = _forward(config, params, state0, xw, mask, save=False)
    return ys, state


def _scan_fwd(config, params, state0, xw, mask):
    ys, state, history = _forward(config, params, state0, xw, mask, save=True)
    return (ys, state), (params, state0, xw, mask, history)


def _scan_bwd(config, residuals, cotangents):
    params, state0, xw, mask, history = residuals
    d_ys, d_state = cotangents
    d_params, d_state0, d_xw = _backward(config, params, state0, xw, mask, history, d_ys, d_state)
    return d_params, d_state0, d_xw, None


_scan.defvjp(_scan_fwd, _scan_bwd)


def _rows(config, width):
    """The program's rows of a [B, width] array."""
    return pl.BlockSpec((config.block, width), lambda i: (i, 0))


def _steps(config, T, width):
    """The program's rows of a [T, B, width] array, every step."""
    return pl.BlockSpec((T, config.block, width), lambda i: (0, i, 0))


def _inputs(config, T, H, params, n_state, with_mask):
    """BlockSpecs of the inputs both kernels start with: xw, mask, state0, params (whole, in every program)."""
    return ([_steps(config, T, config.blocks * H)] + [_steps(config, T, 1)] * with_mask + [_rows(config, H)] * n_state
            + [pl.BlockSpec(p.shape, partial(_origin, p.ndim)) for p in params])


def _origin(ndim, i):
    return (0,) * ndim


def _call(kernel, config, grid, in_specs, out_specs, out_shape, *args):
    compiler = {}
    if not config.interpret:
        from jax.experimental.pallas import triton as plt  # imported only where the GPU backend runs it
        compiler = {"compiler_params": plt.CompilerParams(num_warps=4)}
    return pl.pallas_call(kernel, out_shape=out_shape, grid=grid, in_specs=in_specs, out_specs=out_specs,
                          interpret=config.interpret, **compiler)(*args)


def _forward(config, params, state0, xw, mask, save):
    T, B, GH = xw.shape
    H, n_state, n_params, with_mask = GH // config.blocks, len(state0), len(params), mask is not None
    per_step = jax.ShapeDtypeStruct((T, B, H), jnp.float32)
    per_row = jax.ShapeDtypeStruct((B, H), jnp.float32)
    n_history = n_state if save else 0
    out_shape = [per_step] + [per_step] * n_history + [per_row] * n_state
    out_specs = [_steps(config, T, H)] * (1 + n_history) + [_rows(config, H)] * n_state

    def kernel(*refs):
        xw_ref, refs = refs[0], refs[1:]
        mask_ref, refs = (refs[0], refs[1:]) if with_mask else (None, refs)
        state_refs, param_refs, refs = refs[:n_state], refs[n_state:n_state + n_params], refs[n_state + n_params:]
        ys_ref, history_refs, final_refs = refs[0], refs[1:1 + n_history], refs[1 + n_history:]

        def body(t, state):  # parameters are loaded at every step: Triton keeps them in L2, not in registers
            params = config.treedef.unflatten([r[...] for r in param_refs])
            state, y = _step(config, params, _blocks(xw_ref, t, H, config.blocks), state, mask_ref, t)
            ys_ref[t] = y
            for r, s in zip(history_refs, state):
                r[t] = s
            return state

        state = jax.lax.fori_loop(0, T, body, tuple(r[...] for r in state_refs))
        for r, s in zip(final_refs, state):
            r[...] = s

    outs = _call(kernel, config, (B // config.block,), _inputs(config, T, H, params, n_state, with_mask), out_specs,
                 out_shape, xw, *([mask] if with_mask else []), *state0, *params)
    return outs[0], tuple(outs[1 + n_history:]), tuple(outs[1:1 + n_history])


def _backward(config, params, state0, xw, mask, history, d_ys, d_state):
    T, B, GH = xw.shape
    H, n_state, n_params, with_mask = GH // config.blocks, len(state0), len(params), mask is not None
    programs = B // config.block
    # each program sums its rows' parameter gradients into its own slot [programs, *shape]; added below
    slot_specs = [pl.BlockSpec((None,) + p.shape, partial(_slot, p.ndim)) for p in params]
    out_shape = ([jax.ShapeDtypeStruct(xw.shape, jnp.float32)] + [jax.ShapeDtypeStruct((B, H), jnp.float32)] * n_state
                 + [jax.ShapeDtypeStruct((programs,) + p.shape, jnp.float32) for p in params])
    out_specs = [_steps(config, T, GH)] + [_rows(config, H)] * n_state + slot_specs

    def kernel(*refs):
        xw_ref, refs = refs[0], refs[1:]
        mask_ref, refs = (refs[0], refs[1:]) if with_mask else (None, refs)
        state_refs, refs = refs[:n_state], refs[n_state:]
        param_refs, refs = refs[:n_params], refs[n_params:]
        history_refs, refs = refs[:n_state], refs[n_state:]
        d_ys_ref, d_final_refs, refs = refs[0], refs[1:1 + n_state], refs[1 + n_state:]
        d_xw_ref, d_state0_refs, d_param_refs = refs[0], refs[1:1 + n_state], refs[1 + n_state:]
        for r in d_param_refs:
            r[...] = jnp.zeros(r.shape, r.dtype)
        first = tuple(r[...] for r in state_refs)

        def body(i, d_state):
            t = T - 1 - i
            before = jnp.maximum(t - 1, 0)
            previous = tuple(jnp.where(t > 0, h[before], s) for h, s in zip(history_refs, first))
            params = config.treedef.unflatten([r[...] for r in param_refs])
            step = lambda p, x, s: _step(config, p, x, s, mask_ref, t)
            _, vjp = jax.vjp(step, params, _blocks(xw_ref, t, H, config.blocks), previous)
            d_params, d_xw, d_previous = vjp((d_state, d_ys_ref[t]))
            for k, d in enumerate(d_xw):
                d_xw_ref[t, :, pl.ds(k * H, H)] = d
            for r, d in zip(d_param_refs, jax.tree.leaves(d_params)):
                r[...] += d
            return d_previous

        d_state0 = jax.lax.fori_loop(0, T, body, tuple(r[...] for r in d_final_refs))
        for r, d in zip(d_state0_refs, d_state0):
            r[...] = d

    in_specs = _inputs(config, T, H, params, n_state, with_mask) + [_steps(config, T, H)] * (n_state + 1) + [_rows(config, H)] * n_state
    outs = _call(kernel, config, (programs,), in_specs, out_specs, out_shape,
                 xw, *([mask] if with_mask else []), *state0, *params, *history, d_ys, *d_state)
    d_params = [slots.sum(axis=0) for slots in outs[1 + n_state:]]
    return d_params, tuple(outs[1:1 + n_state]), outs[0]


def _slot(ndim, i):
    return (i,) + (0,) * ndim


def _blocks(xw_ref, t, H, G):
    """xw of step t as G arrays [rows, H]: loads of slices, never a slice of a loaded value (Triton)."""
    return tuple(xw_ref[t, :, pl.ds(k * H, H)] for k in range(G))


def _step(config, params, xw, state, mask_ref, t):
    """One step of the cell with the layer's padding rule: a padded step keeps the state and outputs zero."""
    new, y = config.apply(params, xw, state)
    if mask_ref is None:
        return tuple(new), y
    keep = mask_ref[t] > 0  # [rows, 1]
    return tuple(jnp.where(keep, n, o) for n, o in zip(new, state)), jnp.where(keep, y, 0.0)
