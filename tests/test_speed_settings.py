"""Speed settings change how fast a model trains, never what it computes.

`speed.unroll`, `speed.hoist_projection`, `speed.fused_gradient`, `speed.kernel` (the Pallas time loop; on
CPU in Pallas' interpreter, tests/test_kernel.py has the rest), `speed.keep_freed_memory` and the full-length shortcut of the scanned layer (no masking
when no sequence of the batch is padded) must give the same outputs and gradients; `speed.dtype`
bfloat16 computes the matmuls at lower precision and must stay close to float32.
"""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import compose_config, declares, registered_cells
from training import host_memory, speed_rules
from training.model import SequenceModel, model_from_config, paths_of
from variants import make_cell

T, D, H, B = 5, 3, 8, 4
CELLS = registered_cells()  # np, gru and srn by default; every other registered cell with the slow tests
FUSED = {"np": True, "fgr": True, "srn": True, "gru": False}  # which cells run the fused gradient; others: what they declare


def outputs_and_grads(cell, x, lengths, readout="all", **speed):
    model = SequenceModel(cell=cell, hidden=H, output_size=2, readout=readout, **speed)
    params = model.init(jax.random.key(0), x, lengths)

    @jax.jit
    def run(params, x, lengths):
        out = model.apply(params, x, lengths)
        return out, jax.grad(lambda p: jnp.sum(jnp.sin(model.apply(p, x, lengths))))(params)

    return run(params, x, lengths)


def assert_same(a, b, atol):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u, np.float32), np.asarray(v, np.float32), atol=atol, rtol=atol)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    return x, jnp.full((B,), T, jnp.int32), jnp.array([T, 2, 4, 1], jnp.int32)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("padded", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["full", "padded"])
def test_unroll_and_hoisting_give_the_same_outputs_and_gradients(cell, padded, data):
    x, full, short = data
    lengths = short if padded else full
    reference = outputs_and_grads(cell, x, lengths, unroll=1, hoist_projection=False)
    for unroll, hoist, fused in [(2, False, False), (T, False, False), (1, True, False), (T, True, False), (2, False, True)]:
        assert_same(outputs_and_grads(cell, x, lengths, unroll=unroll, hoist_projection=hoist, fused_gradient=fused), reference, 1e-5)
    assert_same(outputs_and_grads(cell, x, lengths, kernel=True), reference, 1e-5)
    assert_same(outputs_and_grads(cell, x, lengths, parallel_scan=True), reference, 1e-5)


@pytest.mark.parametrize("cell", registered_cells(fast=tuple(FUSED)))
def test_the_fused_gradient_serves_gated_cells_and_srn_and_gru_keeps_autodiff(cell, data):
    """paths.fused's hand-written VJP is really what runs (not a silent fallback), except for the GRU,
    whose reset gate comes before its second matmul."""
    fused = FUSED.get(cell, "fused_gradient" in make_cell(cell, H).declared_paths())
    x, full, _ = data
    model = SequenceModel(cell=cell, hidden=H, output_size=2, fused_gradient=True)
    params = model.init(jax.random.key(0), x)
    jaxpr = str(jax.make_jaxpr(model.apply)(params, x))
    assert ("custom_vjp_call" in jaxpr) == fused


@pytest.mark.parametrize("cell", registered_cells(fast=("mingru",), where=declares("parallel_scan")))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reversed"])
def test_the_parallel_scan_equals_the_sequential_scan_in_values_and_gradients(cell, reverse):
    """jax.lax.associative_scan over (a_t, b_t) (paths/parallel.py) against lax.scan over the cell's update:
    13 sequences of lengths 1 to 20 (the scan's tree of combines has five levels, and lengths that are not powers
    of two), read forward and in reverse, a carry in, float32 to 1e-5."""
    from variants import RNN

    B, T = 13, 20
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(B, T, D)), jnp.float32)
    lengths = jnp.asarray(rng.integers(1, T + 1, B))
    carry0 = jnp.asarray(rng.normal(size=(B, H)), jnp.float32)
    runs = {}
    for parallel in (False, True):
        rnn = RNN(make_cell(cell, H), reverse=reverse, parallel_scan=parallel)
        params = rnn.init(jax.random.key(0), x, lengths)

        def loss(params, x, carry0):
            carry, ys = rnn.apply(params, x, lengths, carry0)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.cos(carry)), (carry, ys)

        grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
        runs[parallel] = grad(params, x, carry0)
        jaxpr = str(jax.make_jaxpr(grad)(params, x, carry0))
        assert ("scan[" in jaxpr) == (not parallel)  # the parallel path really runs: no sequential loop
    for u, v in zip(jax.tree.leaves(runs[True]), jax.tree.leaves(runs[False]), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", registered_cells(fast=("np", "gru")))
def test_a_batch_without_padding_gives_the_same_numbers_with_or_without_lengths(cell, data):
    x, full, _ = data
    assert_same(outputs_and_grads(cell, x, full), outputs_and_grads(cell, x, None), 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cell", registered_cells(fast=("v", "gru", "srn")))
def test_bfloat16_matmuls_stay_close_to_float32(cell, data):
    x, full, _ = data
    out32, grads32 = outputs_and_grads(cell, x, full)
    out16, grads16 = outputs_and_grads(cell, x, full, dtype=jnp.bfloat16)
    assert out16.dtype == jnp.float32  # parameters and outputs stay float32; only the matmuls are bfloat16
    assert not np.allclose(out16, out32, atol=1e-7, rtol=0)  # it really computes in bfloat16
    assert_same((out16, grads16), (out32, grads32), 5e-2)


class Task:  # what model_from_config reads of a task
    output_size, readout = 10, "last"


def test_the_config_speed_settings_reach_the_model():
    cfg = compose_config("speed.unroll=4", "speed.hoist_projection=true", "speed.dtype=bfloat16", "speed.fused_gradient=true",
                         "speed.kernel=true")
    model = model_from_config(cfg, Task)
    assert (model.unroll, model.hoist_projection, model.dtype, model.fused_gradient, model.kernel) == (4, True, jnp.bfloat16, True, True)


@pytest.mark.parametrize("cell,hidden,cpu_unroll", [("srn", 128, 2), ("srn", 512, 1), ("np", 128, 1), ("gru", 64, 1)])
def test_auto_picks_the_paths_measured_fastest_on_each_backend(cell, hidden, cpu_unroll):
    """training/speed_rules.py: on CPU unrolling slows every gated cell and only the SRN (up to 128 units)
    gains at 2, the projection stays in each step, the fused gradient and the kernel stay off; on GPU the
    projection is hoisted and the rest waits for benchmarks/gpu_check.sh."""
    cfg = compose_config(f"cell={cell}", f"hidden={hidden}")  # conf/config.yaml: every path auto
    off = {"fused_gradient": False, "kernel": False, "parallel_scan": False}
    assert speed_rules.chosen(cfg.speed, "cpu", cell, hidden) == {"unroll": cpu_unroll, "hoist_projection": False, **off}
    assert speed_rules.chosen(cfg.speed, "gpu", cell, hidden) == {"unroll": 1, "hoist_projection": True, **off}
    assert paths_of(model_from_config(cfg, Task)) == speed_rules.chosen(cfg.speed, jax.default_backend(), cell, hidden)


@pytest.mark.slow
def test_keeping_freed_memory_changes_no_number():
    """speed.keep_freed_memory only changes where malloc finds memory for XLA's temporaries: the same
    compiled gradient, with temporaries above glibc's 32 MiB mmap ceiling, gives bitwise the same
    numbers under glibc's policy and under "keep"."""
    if host_memory.glibc() is None:
        pytest.skip("needs glibc's mallopt (Linux)")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(128, 28, 28)), jnp.float32)
    model = SequenceModel(cell="np", hidden=128, output_size=10, hoist_projection=True)
    params = model.init(jax.random.key(0), x)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))).lower(params).compile()
    assert grad.memory_analysis().temp_size_in_bytes > 32 << 20  # the allocations the policy is about
    try:
        assert host_memory.set_policy("glibc")
        before = [grad(params) for _ in range(2)]
        assert host_memory.keep_freed_memory("auto") and host_memory.keep_freed_memory(True)
        after = [grad(params) for _ in range(2)]
    finally:
        host_memory.set_policy("glibc")
    for a in before[1:] + after:
        for u, v in zip(jax.tree.leaves(before[0]), jax.tree.leaves(a)):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert host_memory.keep_freed_memory(False) is False
    with pytest.raises(ValueError, match="choose auto, true or false"):
        host_memory.keep_freed_memory("sometimes")


# ---------------------------------------------------------------- what ran: result.json's speed_paths and the fallback lines

FALLBACKS = [  # a path asked for, a cell that cannot take it, words of the reason its line gives
    ("fused_gradient", "gru", "R_h"),
    ("kernel", "fgr", "has no blocked step"),
    ("parallel_scan", "np", "is not linear in its state"),
]


def fallback_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "asked, but" in r.getMessage()]


@pytest.mark.parametrize("path,cell,reason", FALLBACKS)
def test_a_path_the_cell_cannot_take_is_recorded_as_not_run_and_logged_once_with_the_cell_and_the_reason(path, cell, reason, caplog):
    with caplog.at_level(logging.INFO, logger="odyssey"):
        model = model_from_config(compose_config(f"cell={cell}", f"speed.{path}=true"), Task)
        jax.eval_shape(model.init, jax.random.key(0), jnp.ones((2, T, D)))  # building it adds no second line
    (line,) = fallback_lines(caplog)
    assert line.levelno == logging.WARNING  # asked for explicitly; `auto` choosing it would be INFO
    assert f"speed.{path}" in line.getMessage() and f"cell {cell}" in line.getMessage() and reason in line.getMessage()
    assert paths_of(model)[path] is False


@pytest.mark.parametrize("path,cell", [("fused_gradient", "np"), ("fused_gradient", "srn"), ("kernel", "gru"), ("kernel", "cifg"),
                                       ("parallel_scan", "mingru")])
def test_a_path_the_cell_takes_is_recorded_as_run_with_the_hoisted_projection_it_reads(path, cell, caplog):
    with caplog.at_level(logging.INFO, logger="odyssey"):
        model = model_from_config(compose_config(f"cell={cell}", f"speed.{path}=true", "speed.unroll=2"), Task)
    assert not fallback_lines(caplog)
    ran = paths_of(model)
    assert ran[path] is True and ran["hoist_projection"] is True
    assert ran["unroll"] == (2 if path == "fused_gradient" else 1)  # the kernel and the parallel scan have no scan to unroll


def test_the_kernel_replaces_the_fused_gradient_and_says_so(caplog):
    cfg = compose_config("cell=v", "speed.fused_gradient=true", "speed.kernel=true")
    with caplog.at_level(logging.INFO, logger="odyssey"):
        model = model_from_config(cfg, Task)
    assert paths_of(model) == {"unroll": 1, "hoist_projection": True, "fused_gradient": False, "kernel": True,
                               "parallel_scan": False}
    (line,) = fallback_lines(caplog)
    assert "speed.fused_gradient asked, but cell v runs speed.kernel" in line.getMessage()


def test_result_json_records_the_path_that_ran_not_the_one_asked_for(tmp_path):
    from training import train

    result = train(compose_config("cell=gru", "speed.fused_gradient=true"), tmp_path)
    assert result["speed_paths"]["fused_gradient"] is False
    assert json.loads((tmp_path / "result.json").read_text())["speed_paths"] == result["speed_paths"]
