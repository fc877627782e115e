"""paths/kernel.py: the whole time loop in one Pallas kernel computes what the scan computes.

On CPU the kernel runs in Pallas' interpreter, the same program a GPU compiles with Triton; on a GPU
(benchmarks/gpu_check.sh kernel) these tests run the compiled kernel. Whether Triton accepts the program
is checked here too, by lowering it for CUDA (Triton rejects slicing values, non-power-of-two tensors...).
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import declares, registered_cells
from training.model import SequenceModel
from variants import make_cell
from paths.kernel import kernel_scan, kernel_width

T, D, H = 6, 3, 8


def cell_and_params(name, hidden=H, batch=5):
    cell = make_cell(name, hidden)
    params = cell.init(jax.random.key(0), jnp.zeros((batch, D)), method=lambda m, x: m.recurrence(x).project(x))
    return cell, params


def scan_or_kernel(cell, params, xs, mask, kernel, block=16):
    """(final carry, ys, gradients of a loss on both) with the cell's step under lax.scan or the kernel."""

    def loss(params, xs):
        rec = cell.apply(params, xs[0], method=lambda m, x: m.recurrence(x))
        carry0 = jax.tree.map(lambda a: a + 0.1, cell.initialize_carry((xs.shape[1],)))  # a carry in, too
        xw = rec.project(xs)
        if kernel:
            carry, ys = kernel_scan(rec.blocked, carry0, xw, mask, block=block)
        else:
            def body(carry, inputs):
                x_t, m_t = inputs
                new, y = rec.step(carry, x_t)
                keep = m_t[:, None]
                return jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry), jnp.where(keep, y, 0.0)
            carry, ys = jax.lax.scan(body, carry0, (xw, mask))
        value = jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.cos(c)) for c in jax.tree.leaves(carry))
        return value, (carry, ys)

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, xs)
    return out, grads


def assert_same(a, b, tol=1e-5):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=tol, rtol=tol)


@pytest.mark.parametrize("name", registered_cells(fast=("srn",), where=declares("kernel")))
def test_the_kernel_gives_the_scans_values_and_gradients_over_several_programs_and_padded_sequences(name):
    """37 sequences of lengths 1-6 in programs of 16 rows (Triton's smallest): three programs, 11 padded rows."""
    B = 37
    cell, params = cell_and_params(name, batch=B)
    xs = jnp.asarray(np.random.default_rng(1).normal(size=(T, B, D)), jnp.float32)
    mask = jnp.arange(T)[:, None] < jnp.asarray(np.random.default_rng(1).integers(1, T + 1, B))[None, :]
    assert_same(scan_or_kernel(cell, params, xs, mask, kernel=True), scan_or_kernel(cell, params, xs, mask, kernel=False))


@pytest.mark.parametrize("name", registered_cells(fast=(), where=declares("kernel")))
def test_a_width_triton_cannot_take_runs_zero_padded_to_one_it_can_with_the_same_numbers(name):
    """20 units (Greff's search draws 20-200) run as 32: the padded units stay zero and change nothing."""
    assert [kernel_width(h) for h in (8, 16, 20, 128, 200)] == [16, 16, 32, 128, 256]
    B = 3
    cell, params = cell_and_params(name, hidden=20, batch=B)
    xs = jnp.asarray(np.random.default_rng(3).normal(size=(T, B, D)), jnp.float32)
    mask = jnp.arange(T)[:, None] < jnp.array([T, 3, 5])[None, :]
    assert_same(scan_or_kernel(cell, params, xs, mask, kernel=True), scan_or_kernel(cell, params, xs, mask, kernel=False))


@pytest.mark.slow
def test_how_many_rows_a_program_takes_changes_no_number():
    """One program of 64 rows, or three of 16: each program's gradient slot is added to the others'."""
    cell, params = cell_and_params("np", batch=40)
    xs = jnp.asarray(np.random.default_rng(2).normal(size=(T, 40, D)), jnp.float32)
    full = jnp.ones((T, 40), bool)
    one_program = scan_or_kernel(cell, params, xs, full, kernel=True, block=64)[1]
    three_programs = scan_or_kernel(cell, params, xs, full, kernel=True, block=16)[1]
    assert_same(one_program, three_programs)


KERNEL = {"np": True, "cifg": True, "gru": True, "srn": True, "fgr": False}  # which cells run it; others: what they declare


@pytest.mark.parametrize("name", registered_cells(fast=tuple(KERNEL)))
def test_the_kernel_really_runs_and_fgr_falls_back_to_the_scan_with_a_log_line(name, caplog):
    runs_kernel = KERNEL.get(name, "kernel" in make_cell(name, H).declared_paths())
    x = jnp.ones((2, T, D))
    model = SequenceModel(cell=name, hidden=H, output_size=2, kernel=True)
    params = model.init(jax.random.key(0), x)
    with caplog.at_level(logging.INFO, logger="odyssey"):
        jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: jnp.sum(model.apply(p, x))))(params))
    assert (jaxpr.count("pallas_call") == 2) == runs_kernel  # the forward kernel and the backward kernel
    assert ("has no blocked step" in caplog.text) == (not runs_kernel)


@pytest.mark.parametrize("name", registered_cells(fast=("srn",), where=declares("kernel")))
def test_the_kernel_lowers_to_triton_for_a_gpu_at_pixel_mnists_shape(name):
    """Lowered for CUDA on this machine (jax.export): every op of both kernels has a Triton lowering and
    every loaded tensor has a power-of-two size, at T=784, B=128, H=128 with padded sequences."""
    T, B, H = 784, 128, 128
    cell, params = cell_and_params(name, hidden=H, batch=B)

    def loss(params, xs, lengths):
        rec = cell.apply(params, xs[0], method=lambda m, x: m.recurrence(x))
        mask = jnp.arange(T)[:, None] < lengths[None, :]
        _, ys = kernel_scan(rec.blocked, cell.initialize_carry((B,)), rec.project(xs), mask, interpret=False)
        return jnp.sum(ys ** 2)

    spec = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)
    exported = jax.export.export(
        jax.jit(jax.grad(loss)), platforms=["cuda"],
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")],
    )(jax.tree.map(spec, params), jax.ShapeDtypeStruct((T, B, D), jnp.float32), jax.ShapeDtypeStruct((B,), jnp.int32))
    assert exported.mlir_module().count("@__gpu$xla.gpu.triton(") == 2
