"""Every execution path of a cell, derived from its one statement (variants/cell.py: `Statement`).

    project(x)           x W + b                                   (in the step, or hoisted before the scan)
    step(carry, xw)      update(inner, blocks(xw) + read(carry) R, carry)          (the plain scan's step)
    linear               the same step as a `paths.fused.LinearStep`: R apart, update as its elementwise rest
    blocked              the same step on blocks of H units (`paths.kernel.BlockStep`, the Pallas time loop)
    parallel             the coefficients (a_t, b_t) of h_t = a_t ⊙ h_{t-1} + b_t (`paths.parallel`)

A path the cell does not declare is None here; `check` refuses a declaration the statement cannot honour.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from paths.fused import LinearStep
from paths.kernel import BlockStep
from paths.ops import matmul
from paths.parallel import Coefficients

OPTIONAL = ("parallel_scan", "kernel", "fused_gradient")  # the paths a cell declares, in the order they win


class Recurrence(NamedTuple):
    project: Callable  # x [..., D] -> xw [..., G·H]
    step: Callable  # (carry, xw_t) -> (carry, y_t)
    linear: Any = None  # LinearStep: the fused-gradient scan
    blocked: Any = None  # BlockStep: the Pallas time loop
    parallel: Any = None  # Coefficients: the parallel scan


def recurrence(st, declared: tuple[str, ...], carry_like) -> Recurrence:
    """The statement `st` as the functions each path runs; `declared`: the optional paths the cell declares,
    `carry_like`: a carry of the cell (its structure)."""
    G = len(st.blocks)
    H = st.W.shape[-1] // G

    def project(x):
        return matmul(x, st.W, st.dtype) + st.b

    def step(carry, xw):
        pre = dict(zip(st.blocks, jnp.split(xw, G, axis=-1)))
        for term in st.recurrent:
            product = matmul(term.read(carry), term.R, st.dtype)
            for a, p in zip(term.blocks, jnp.split(product, len(term.blocks), axis=-1)):
                pre[a] = pre[a] + p
        return st.update(st.inner, pre, carry)

    return Recurrence(
        project, step,
        linear=_linear(st, G, H) if "fused_gradient" in declared else None,
        blocked=_blocked(st, G, jax.tree.structure(carry_like)) if "kernel" in declared else None,
        parallel=Coefficients(st.coefficients, st.inner, st.blocks) if "parallel_scan" in declared else None,
    )


def _linear(st, G: int, H: int) -> LinearStep:
    """The step as matmuls + elementwise rest: each term's R, at the column of its first block."""
    offsets = tuple(st.blocks.index(term.blocks[0]) * H for term in st.recurrent)
    reads = _reads(st.recurrent)
    update, blocks = st.update, st.blocks

    def finish(inner, pre, carry):
        return update(inner, dict(zip(blocks, jnp.split(pre, G, axis=-1))), carry)

    return LinearStep(tuple(term.R for term in st.recurrent), offsets, reads, finish, st.inner, st.dtype)


def _reads(terms):
    def reads(carry):
        return tuple(term.read(carry) for term in terms)

    return reads


def _blocked(st, G: int, treedef) -> BlockStep:
    """The step on blocks of H units: the carry's arrays are the kernel's state, each R split by block."""
    terms, blocks, update, dtype = st.recurrent, st.blocks, st.update, st.dtype

    def apply(params, xw, state):
        matrices, inner = params
        carry = treedef.unflatten(state)
        pre = dict(zip(blocks, xw))
        for term, Rs in zip(terms, matrices):
            lhs = term.read(carry)
            for a, R in zip(term.blocks, Rs):
                pre[a] = pre[a] + matmul(lhs, R, dtype)
        new, y = update(inner, pre, carry)
        return tuple(jax.tree.leaves(new)), y

    matrices = tuple(tuple(jnp.split(term.R, len(term.blocks), axis=1)) for term in terms)
    return BlockStep((matrices, st.inner), apply, G, _state_of, _carry_of(treedef))


def _state_of(carry) -> tuple:
    return tuple(jax.tree.leaves(carry))


def _carry_of(treedef):
    def carry_of(state, carry):
        return treedef.unflatten(state)

    return carry_of


def check(name: str, st, declared: tuple[str, ...], carry_like) -> None:
    """Refuse, when the model is built, a declared path that the statement cannot honour (naming both)."""
    unknown = sorted(set(declared) - set(OPTIONAL))
    problems = [f"declares unknown speed paths {unknown} (the optional paths are {', '.join(OPTIONAL)})"] if unknown else []
    H = st.W.shape[-1] // len(st.blocks)
    for term in st.recurrent:
        at = [st.blocks.index(a) for a in term.blocks if a in st.blocks]
        if len(at) != len(term.blocks) or at != list(range(at[0], at[0] + len(at))):
            problems.append(f"has a recurrent term on blocks {term.blocks}, which are not consecutive blocks of {st.blocks}")
    if "fused_gradient" in declared:
        if not st.recurrent:
            problems.append("declares fused_gradient, but has no recurrent matrix to gather")
        elif _update_multiplies(st, H, carry_like):
            problems.append("declares fused_gradient, but its update multiplies by a matrix (a dot_general in update): "
                            "only the recurrent terms' matrices can be gathered after the loop")
    if "kernel" in declared:
        wide = [leaf.shape for leaf in jax.tree.leaves(carry_like) if leaf.shape[-1] != H]
        if wide:
            problems.append(f"declares kernel, but its carry holds arrays of shape {wide}: the kernel's state is "
                            f"arrays of H = {H} units")
        elif not _zero_stays_zero(st, H, carry_like):
            problems.append("declares kernel, but a unit whose inputs, state and weights are zero does not stay zero "
                            "(the kernel pads the units to a power of two)")
    if "parallel_scan" in declared:
        if st.coefficients is None:
            problems.append("declares parallel_scan, but its statement gives no coefficients (a, b) of "
                            "h_t = a ⊙ h_{t-1} + b")
        elif not _coefficients_agree(st, H, carry_like):
            problems.append("declares parallel_scan, but its update is not a ⊙ h_{t-1} + b (with y_t = h_t) for "
                            "the coefficients it gives, or its carry is not one array h")
    if problems:
        raise ValueError(f"Cell {name!r} " + "; ".join(problems) + ". See docs/cells.md.")


def _probe(st, H: int, carry_like):
    """Zeros of the shapes the update reads, outside any trace (the parameters may be tracers)."""
    zeros = lambda a: np.zeros(np.shape(a), np.float32)
    pre = {a: np.zeros((1, H), np.float32) for a in st.blocks}
    return jax.tree.map(zeros, st.inner), pre, jax.tree.map(zeros, carry_like)


def _update_multiplies(st, H: int, carry_like) -> bool:
    inner, pre, carry = _probe(st, H, carry_like)
    jaxpr = jax.make_jaxpr(st.update)(inner, pre, carry)
    return "dot_general" in str(jaxpr)


def _coefficients_agree(st, H: int, carry_like) -> bool:
    """The update and the coefficients say the same, on random numbers (outside any trace)."""
    if not isinstance(carry_like, (jax.Array, np.ndarray)):
        return False
    rng = np.random.default_rng(0)
    draw = lambda a: rng.normal(size=np.shape(a)).astype(np.float32)
    inner, pre, h = jax.tree.map(draw, st.inner), {a: draw(np.zeros((2, H))) for a in st.blocks}, draw(np.zeros((2, H)))
    with jax.ensure_compile_time_eval():
        new, y = st.update(inner, pre, h)
        a, b = st.coefficients(inner, pre)
        return bool(np.allclose(new, a * h + b, rtol=1e-5, atol=1e-6) and np.allclose(y, new))


def _zero_stays_zero(st, H: int, carry_like) -> bool:
    inner, pre, carry = _probe(st, H, carry_like)
    with jax.ensure_compile_time_eval():
        new, y = st.update(inner, pre, carry)
    return all(not np.any(np.asarray(a)) for a in jax.tree.leaves((new, y)))
