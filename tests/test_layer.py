"""The recurrent layer: `RNN` scans any cell over time, `RecurrentStack` stacks (bidirectional) layers.

Every claim is checked against the plainest thing that can be trusted: the cell protocol
`cell.apply(params, carry, x_t)` called in a Python loop, one sequence at a time.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import registered_cells
from test_cells import B, D, H, T, assert_close, flat, random_carry, random_params, run_steps
from variants import RNN, RecurrentStack, last_outputs, make_cell, reverse_sequences

LENGTHS = np.array([5, 2, 4])  # one full sequence, two shorter ones
PAD = 100.0  # what fills the padding: it must not matter


@pytest.fixture(autouse=True)
def float32_matmuls():
    """Comparisons to 1e-5 need true float32 matmuls (GPUs default to TF32)."""
    with jax.default_matmul_precision("float32"):
        yield


def random_tree(shapes, seed=0, scale=0.5):
    """Random, non-zero values for a tree of shapes (e.g. from jax.eval_shape of init)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, scale, s.shape).astype(np.float32), shapes)


def stack_params(stack, seed=0):
    return random_tree(jax.eval_shape(stack.init, jax.random.key(0), jnp.zeros((B, T, D)))["params"], seed)


def inputs(seed=2, lengths=None):
    x = np.random.default_rng(seed).normal(0.0, 1.0, (B, T, D)).astype(np.float32)
    if lengths is not None:
        x[np.arange(T)[None, :] >= lengths[:, None]] = PAD
    return x


@partial(jax.jit, static_argnums=0)
def run(rnn, P, x, lengths=None, initial_carry=None):
    return rnn.apply({"params": {"cell": P}}, x, lengths, initial_carry)


@partial(jax.jit, static_argnums=0, static_argnames="train")
def run_stack(stack, params, x, lengths=None, train=False, dropout_key=None):
    rngs = None if dropout_key is None else {"dropout": dropout_key}
    return stack.apply({"params": params}, x, lengths, train=train, rngs=rngs)


def row(carry, b):
    """Sequence b's part of a batched carry."""
    return jax.tree.map(lambda a: a[b:b + 1], carry)


# ---------------------------------------------------------------------------------------------
# The scan is the cell in a loop
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("unroll", [1, T])
@pytest.mark.parametrize("hoist_projection", [False, True])
@pytest.mark.parametrize("name", registered_cells(fast=("fgr", "gru")))
def test_the_scanned_layer_equals_the_cell_in_a_python_loop(name, hoist_projection, unroll):
    """From a non-zero initial carry; fgr has the richest carry (c, y, previous gates), gru two matmuls."""
    cell = make_cell(name, H)
    P, x, carry0 = random_params(cell), inputs(), random_carry(cell)
    carry, ys = run(RNN(cell, hoist_projection=hoist_projection, unroll=unroll), P, x, initial_carry=carry0)
    loop_carry, loop_ys = run_steps(cell, P, x, carry0)
    assert_close(ys, loop_ys)
    assert_close(flat(carry), flat(loop_carry))


# ---------------------------------------------------------------------------------------------
# Variable lengths and reverse
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", registered_cells(fast=("fgr", "gru")))
def test_lengths_freeze_the_state_after_the_end_and_zero_the_padded_outputs(name):
    cell = make_cell(name, H)
    P, x = random_params(cell), inputs(lengths=LENGTHS)
    carry, ys = run(RNN(cell), P, x, LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone_carry, alone_ys = run_steps(cell, P, x[b:b + 1, :n])  # the sequence's valid part, alone
        assert_close(ys[b:b + 1, :n], alone_ys)
        assert (np.asarray(ys[b, n:]) == 0).all()
        assert_close(flat(row(carry, b)), flat(alone_carry))


def test_lengths_that_are_all_full_change_nothing():
    cell = make_cell("fgr", H)
    P, x = random_params(cell), inputs()
    carry, ys = run(RNN(cell), P, x, np.full(B, T))
    no_lengths_carry, no_lengths_ys = run(RNN(cell), P, x)
    assert_close(ys, no_lengths_ys)
    assert_close(flat(carry), flat(no_lengths_carry))


@pytest.mark.parametrize("name", registered_cells(fast=("fgr", "gru")))
def test_reverse_reads_each_sequence_backwards_from_its_own_last_step(name):
    cell = make_cell(name, H)
    P, x = random_params(cell), inputs(lengths=LENGTHS)
    carry, ys = run(RNN(cell, reverse=True), P, x, LENGTHS)
    for b, n in enumerate(LENGTHS):
        alone_carry, alone_ys = run_steps(cell, P, x[b:b + 1, :n][:, ::-1])  # forward over the reversed part
        assert_close(ys[b:b + 1, :n], alone_ys[:, ::-1])  # outputs stay aligned with their inputs
        assert (np.asarray(ys[b, n:]) == 0).all()
        assert_close(flat(row(carry, b)), flat(alone_carry))


def test_reverse_without_lengths_reads_the_whole_sequence_backwards():
    cell = make_cell("v", H)
    P, x = random_params(cell), inputs()
    _, ys = run(RNN(cell, reverse=True), P, x)
    _, forward_on_reversed = run_steps(cell, P, x[:, ::-1])
    assert_close(ys, forward_on_reversed[:, ::-1])


def test_reverse_sequences_reverses_within_each_length_and_leaves_padding_in_place():
    x = jnp.arange(B * T).reshape(B, T)[..., None] % T  # rows 0 1 2 3 4
    got = reverse_sequences(x, jnp.asarray(LENGTHS))[..., 0]
    assert got.tolist() == [[4, 3, 2, 1, 0], [1, 0, 2, 3, 4], [3, 2, 1, 0, 4]]
    assert reverse_sequences(x, None)[..., 0].tolist() == [[4, 3, 2, 1, 0]] * B


def test_last_outputs_is_step_length_minus_one_forward_and_step_zero_backward():
    outputs = jnp.arange(B * T, dtype=jnp.float32).reshape(B, T, 1)
    lengths = jnp.asarray(LENGTHS)
    assert last_outputs(outputs, lengths)[:, 0].tolist() == [4, 5 + 1, 10 + 3]
    assert last_outputs(outputs, lengths, reverse=True)[:, 0].tolist() == [0, 5, 10]
    assert last_outputs(outputs, None)[:, 0].tolist() == [4, 9, 14]


# ---------------------------------------------------------------------------------------------
# The stack: bidirectional, layers, dropout
# ---------------------------------------------------------------------------------------------

make_v = partial(make_cell, "v", H)
BIDIRECTIONAL = RecurrentStack(make_v, bidirectional=True)
TWO_LAYERS = RecurrentStack(make_v, layers=2, dropout=0.5)
TWO_BIDIRECTIONAL_LAYERS = RecurrentStack(make_v, layers=2, bidirectional=True, dropout=0.5)


def test_the_stacks_parameters_are_named_by_layer_and_direction():
    shapes = jax.eval_shape(TWO_BIDIRECTIONAL_LAYERS.init, jax.random.key(0), jnp.zeros((B, T, D)))["params"]
    assert set(shapes) == {"layer0_forward", "layer0_backward", "layer1_forward", "layer1_backward"}
    assert shapes["layer0_backward"]["cell"]["W_z"].shape == (D, H)
    assert shapes["layer1_forward"]["cell"]["W_z"].shape == (2 * H, H)  # reads both directions below it


def test_bidirectional_output_is_forward_and_backward_side_by_side():
    params, x, lengths = stack_params(BIDIRECTIONAL), inputs(lengths=LENGTHS), jnp.asarray(LENGTHS)
    outputs, last = run_stack(BIDIRECTIONAL, params, x, lengths)
    cell = make_v()
    _, forward = run(RNN(cell), params["layer0_forward"]["cell"], x, lengths)
    _, backward = run(RNN(cell, reverse=True), params["layer0_backward"]["cell"], x, lengths)
    assert_close(outputs, jnp.concatenate([forward, backward], axis=-1))
    # the output after reading the whole sequence: step length-1 forward, step 0 backward
    b = np.arange(B)
    assert_close(last, jnp.concatenate([forward[b, LENGTHS - 1], backward[:, 0]], axis=-1))


def test_stacked_layers_feed_each_other_and_drop_out_only_in_training():
    params, x = stack_params(TWO_LAYERS), inputs()
    outputs, _ = run_stack(TWO_LAYERS, params, x)
    _, below = run(RNN(make_v()), params["layer0_forward"]["cell"], x)
    _, above = run(RNN(make_v()), params["layer1_forward"]["cell"], below)
    assert_close(outputs, above)  # train=False: no dropout, deterministic
    assert_close(run_stack(TWO_LAYERS, params, x)[0], outputs)
    key, other = jax.random.key(1), jax.random.key(2)
    train, _ = run_stack(TWO_LAYERS, params, x, train=True, dropout_key=key)
    assert not np.allclose(train, outputs, atol=1e-3)
    assert_close(run_stack(TWO_LAYERS, params, x, train=True, dropout_key=key)[0], train)  # same key, same mask
    assert not np.allclose(run_stack(TWO_LAYERS, params, x, train=True, dropout_key=other)[0], train, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# jit, grad, vmap (every test here runs the layer under jit; these add grad and vmap)
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_gradients_are_finite_reach_every_parameter_and_ignore_the_padding():
    stack, lengths = TWO_BIDIRECTIONAL_LAYERS, jnp.asarray(LENGTHS)
    params, x = stack_params(stack), inputs(lengths=LENGTHS)

    @jax.jit
    def grads(params, x):
        return jax.grad(lambda p, x: jnp.sum(stack.apply({"params": p}, x, lengths)[0]), argnums=(0, 1))(params, x)

    g_params, g_x = grads(params, x)
    for path, g in jax.tree_util.tree_leaves_with_path(g_params):
        assert np.isfinite(g).all() and np.any(g != 0), jax.tree_util.keystr(path)
    padding = np.arange(T)[None, :] >= LENGTHS[:, None]
    assert (np.asarray(g_x)[padding] == 0).all()
    assert np.all(np.asarray(g_x)[~padding].any(axis=-1))


@pytest.mark.slow
def test_vmap_over_two_parameter_sets_equals_two_calls():
    stack, x, lengths = TWO_BIDIRECTIONAL_LAYERS, inputs(lengths=LENGTHS), jnp.asarray(LENGTHS)
    p0, p1 = stack_params(stack, seed=0), stack_params(stack, seed=1)
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), p0, p1)
    outputs, last = jax.jit(jax.vmap(lambda p: stack.apply({"params": p}, x, lengths)))(both)
    for k, p in enumerate((p0, p1)):
        one_outputs, one_last = run_stack(stack, p, x, lengths)
        assert_close(outputs[k], one_outputs)
        assert_close(last[k], one_last)
