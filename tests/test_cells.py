"""The cells: Greff et al.'s vanilla LSTM (V), its eight one-switch variants, every valid combination
of the switches, GRU and the simple RNN.

The numbers are checked against `reference_step` below, a NumPy transcription of the equations in
DESIGN.md written independently of `variants/` (float64, from the same float32 parameters):

    z_t = g(W_z x_t + R_z y_{t-1} + b_z)
    i_t = σ(W_i x_t + R_i y_{t-1} + p_i ⊙ c_{t-1} + b_i)
    f_t = σ(W_f x_t + R_f y_{t-1} + p_f ⊙ c_{t-1} + b_f)
    c_t = z_t ⊙ i_t + c_{t-1} ⊙ f_t
    o_t = σ(W_o x_t + R_o y_{t-1} + p_o ⊙ c_t + b_o)
    y_t = h(c_t) ⊙ o_t

with FGR adding Σ_s R_{a_s} s_{t-1} to gate a's pre-activation (s over the gates of step t-1 that have
parameters of their own), GRU in the reset-before form and SRN y_t = tanh(W x_t + R y_{t-1} + b).
Any other registered cell is checked against the NumPy reference and parameter tree its module declares
(`@register(name, reference=..., parameters=...)`, docs/cells.md), so it needs no line here.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from variants import CELLS, RNN, VARIANTS, GatedCell, GateSpec, GRUCell, SimpleCell, entry, make_cell

D, H, B, T = 3, 4, 3, 5  # inputs, units, batch, time steps: tiny, and W [D, H] differs from R [H, H]
SWITCHES = tuple(f.name for f in dataclasses.fields(GateSpec))
ONE_SWITCH = {  # DESIGN.md's table: each variant is V with this one switch flipped
    "nig": "input_gate", "nfg": "forget_gate", "nog": "output_gate", "niaf": "input_activation",
    "noaf": "output_activation", "np": "peepholes", "cifg": "coupled", "fgr": "full_recurrence",
}


@pytest.fixture(autouse=True)
def float32_matmuls():
    """Comparisons to 1e-5 need true float32 matmuls (GPUs default to TF32)."""
    with jax.default_matmul_precision("float32"):
        yield


# ---------------------------------------------------------------------------------------------
# The NumPy reference
# ---------------------------------------------------------------------------------------------

def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def identity(a):
    return a


def own_gates(spec: GateSpec) -> list[str]:
    """Gates with parameters of their own, in the order i, f, o (a coupled f = 1 - i has none)."""
    on = {"i": spec.input_gate, "f": spec.forget_gate and not spec.coupled, "o": spec.output_gate}
    return [a for a in "ifo" if on[a]]


def lstm_step(P, spec: GateSpec, carry, x, output_peephole_reads_new_c=True):
    """One step of DESIGN.md's equations. carry = (c_{t-1}, y_{t-1}, gates_{t-1}), the last being the
    activations of `own_gates` side by side (only with full recurrence, else empty)."""
    c_prev, y_prev, gates_prev = carry
    gates = own_gates(spec)
    prev = dict(zip(gates, np.split(gates_prev, len(gates), axis=-1))) if spec.full_recurrence else {}

    def pre(a):  # W_a x_t + R_a y_{t-1} + b_a, and for a gate a also Σ_s R_{a_s} s_{t-1} (z is no gate)
        gate_recurrence = sum(s @ P[f"R_{a}_{n}"] for n, s in prev.items()) if a != "z" else 0.0
        return x @ P[f"W_{a}"] + y_prev @ P[f"R_{a}"] + P[f"b_{a}"] + gate_recurrence

    def peep(a, c):
        return P[f"p_{a}"] * c if spec.peepholes else 0.0

    g = np.tanh if spec.input_activation else identity
    h = np.tanh if spec.output_activation else identity
    z = g(pre("z"))
    i = sigmoid(pre("i") + peep("i", c_prev)) if spec.input_gate else 1.0
    if spec.coupled:
        f = 1.0 - i
    elif spec.forget_gate:
        f = sigmoid(pre("f") + peep("f", c_prev))
    else:
        f = 1.0
    c = z * i + c_prev * f
    c_seen_by_o = c if output_peephole_reads_new_c else c_prev
    o = sigmoid(pre("o") + peep("o", c_seen_by_o)) if spec.output_gate else 1.0
    y = h(c) * o
    acts = {"i": i, "f": f, "o": o}
    gates_new = np.concatenate([acts[a] for a in gates], axis=-1) if spec.full_recurrence else gates_prev
    return (c, y, gates_new), y


def gru_step(P, h_prev, x):
    z = sigmoid(x @ P["W_z"] + h_prev @ P["R_z"] + P["b_z"])
    r = sigmoid(x @ P["W_r"] + h_prev @ P["R_r"] + P["b_r"])
    h_hat = np.tanh(x @ P["W_h"] + (r * h_prev) @ P["R_h"] + P["b_h"])  # reset before R_h
    h = z * h_prev + (1.0 - z) * h_hat
    return h, h


def srn_step(P, y_prev, x):
    y = np.tanh(x @ P["W"] + y_prev @ P["R"] + P["b"])
    return y, y


def reference_step(name, P, carry, x, spec=None, **kwargs):
    """The reference for the cell `name` (or, for a gated cell, any `spec`), in float64: the transcriptions
    above for Greff's cells, GRU and SRN, else the one the cell's module registers."""
    P = {k: np.asarray(v, np.float64) for k, v in P.items()}
    carry = jax.tree.map(lambda a: np.asarray(a, np.float64), carry)
    x = np.asarray(x, np.float64)
    if name == "gru":
        return gru_step(P, carry, x)
    if name == "srn":
        return srn_step(P, carry, x)
    if spec is not None or name in VARIANTS:
        return lstm_step(P, spec or VARIANTS[name], tuple(carry), x, **kwargs)
    own = entry(name).reference
    assert own is not None, f"cell {name!r} registers no NumPy reference: @register({name!r}, reference=...) (docs/cells.md)"
    return own(make_cell(name, H), P, carry, x)


def reference_sequence(name, P, xs, carry, **kwargs):
    """Run `reference_step` over xs [B, T, D]; returns (final carry, outputs [B, T, H])."""
    ys = []
    for t in range(xs.shape[1]):
        carry, y = reference_step(name, P, carry, xs[:, t], **kwargs)
        ys.append(y)
    return carry, np.stack(ys, axis=1)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def random_params(cell, seed=0, scale=0.5, inputs=D):
    """The cell's parameter tree with every entry random and non-zero (the default peephole init is 0)."""
    shapes = jax.eval_shape(cell.init, jax.random.key(0), cell.initialize_carry((1,)), jnp.zeros((1, inputs)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(0.0, scale, s.shape).astype(np.float32), shapes["params"])


def random_carry(cell, seed=1):
    """A non-zero state, so that R and the peepholes matter from the first step."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.uniform(-1.0, 1.0, a.shape).astype(np.float32), cell.initialize_carry((B,)))


def random_inputs(seed=2):
    return np.random.default_rng(seed).normal(0.0, 1.0, (B, T, D)).astype(np.float32)


def flat(carry):
    """All of a carry's arrays side by side: (c, y, gates) for the gated cell, h or y otherwise."""
    return np.concatenate([np.asarray(a) for a in jax.tree.leaves(carry)], axis=-1)


def assert_close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


def run_steps(cell, P, xs, carry=None):
    """The cell protocol step by step (eager): (final carry, outputs [B, T, H])."""
    carry = cell.initialize_carry((xs.shape[0],)) if carry is None else carry
    ys = []
    for t in range(xs.shape[1]):
        carry, y = cell.apply({"params": P}, carry, xs[:, t])
        ys.append(y)
    return carry, jnp.stack(ys, axis=1)


run_rnn = jax.jit(lambda rnn, P, xs: rnn.apply({"params": {"cell": P}}, xs), static_argnums=0)


def lstm_params(gates="zifo", peepholes="ifo", gate_recurrence="", inputs=D, hidden=H):
    """The expected parameter tree of a gated cell: name -> shape."""
    tree = {}
    for a in gates:
        tree |= {f"W_{a}": (inputs, hidden), f"R_{a}": (hidden, hidden), f"b_{a}": (hidden,)}
    tree |= {f"p_{a}": (hidden,) for a in peepholes}
    tree |= {f"R_{a}_{s}": (hidden, hidden) for a in gate_recurrence for s in gate_recurrence}
    return tree


def param_shapes(cell, inputs=D):
    shapes = jax.eval_shape(cell.init, jax.random.key(0), cell.initialize_carry((1,)), jnp.zeros((1, inputs)))
    return {k: tuple(v.shape) for k, v in shapes["params"].items()}


# ---------------------------------------------------------------------------------------------
# The variants and the space of switches
# ---------------------------------------------------------------------------------------------

def test_vanilla_is_greffs_lstm():
    v = VARIANTS["v"]
    assert v == GateSpec()
    assert (v.input_gate, v.forget_gate, v.output_gate) == (True, True, True)
    assert (v.input_activation, v.output_activation, v.peepholes) == (True, True, True)
    assert (v.coupled, v.full_recurrence) == (False, False)


def test_each_named_variant_is_one_switch_away_from_vanilla():
    assert set(VARIANTS) == {"v"} | set(ONE_SWITCH)
    for name, switch in ONE_SWITCH.items():
        differ = [s for s in SWITCHES if getattr(VARIANTS[name], s) != getattr(VARIANTS["v"], s)]
        assert differ == [switch], name


def test_cells_registry_holds_greffs_nine_variants_gru_srn_the_muts_and_the_minimal_rnns():
    assert set(CELLS) >= {"v", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr", "gru", "srn",
                          "mut1", "mut2", "mut3", "mingru", "minlstm"}


def conflicts(switches: dict) -> list[tuple[str, ...]]:
    """The contradictions a GateSpec must refuse, each as the words its message must contain."""
    s = switches
    found = []
    if s["coupled"] and not s["input_gate"]:  # f = 1 - i without an i
        found.append(("coupled", "input_gate=False"))
    if s["coupled"] and not s["forget_gate"]:  # f = 1 - i and f = 1 at once
        found.append(("coupled", "forget_gate=False"))
    if s["full_recurrence"] and not (s["input_gate"] or s["output_gate"] or (s["forget_gate"] and not s["coupled"])):
        found.append(("full_recurrence", "every gate is switched off"))  # no gates to connect
    return found


ALL_SWITCHES = [dict(zip(SWITCHES, bits)) for bits in itertools.product((False, True), repeat=len(SWITCHES))]
VALID = [GateSpec(**s) for s in ALL_SWITCHES if not conflicts(s)]


def test_a_spec_is_refused_exactly_when_its_switches_conflict_and_the_message_names_the_conflict():
    assert len(ALL_SWITCHES) == 256 and len(VALID) == 152
    for switches in ALL_SWITCHES:
        expected = conflicts(switches)
        if not expected:
            GateSpec(**switches)
            continue
        with pytest.raises(ValueError) as info:
            GateSpec(**switches)
        for words in itertools.chain(*expected):
            assert words in str(info.value), (switches, str(info.value))


GATE_GROUPS = list(itertools.product((True, False), repeat=3))  # which of i, f, o have parameters


@pytest.mark.parametrize("gates", [GATE_GROUPS[-1], *(pytest.param(g, marks=pytest.mark.slow) for g in GATE_GROUPS[:-1])], ids=lambda g: "i{:d}f{:d}o{:d}".format(*g))
def test_every_valid_combination_runs_under_jit_with_finite_outputs_and_gradients(gates):
    """All 152 valid specs, grouped by which of the three gates they have: for each, value_and_grad of
    the summed outputs of a short sequence, all of a group in one jitted program.

    Compiling is all this costs, so the shapes are tiny, XLA runs at -O0, and it runs on the CPU
    wherever the tests run: it checks structure, which no accelerator changes."""
    specs = [s for s in VALID if (s.input_gate, s.forget_gate, s.output_gate) == gates]
    xs = np.random.default_rng(3).normal(0.0, 1.0, (2, 2, 2)).astype(np.float32)  # B=2, T=2, D=2; and H=2
    rnns = [RNN(GatedCell(2, spec)) for spec in specs]
    params = [random_params(rnn.cell, seed=k, inputs=2) for k, rnn in enumerate(rnns)]

    def loss_and_grads(rnn, P):
        return jax.value_and_grad(lambda P: jnp.sum(rnn.apply({"params": {"cell": P}}, xs)[1]))(P)

    fn = jax.jit(lambda params: [loss_and_grads(rnn, P) for rnn, P in zip(rnns, params)])
    with jax.default_device(jax.devices("cpu")[0]):
        results = fn.lower(params).compile({"xla_backend_optimization_level": 0})(params)
    for spec, P, (loss, grads) in zip(specs, params, results):
        assert np.isfinite(loss), spec
        assert set(grads) == set(P), spec
        for name, grad in grads.items():
            assert np.isfinite(grad).all(), (spec, name)
            assert np.any(grad != 0), (spec, name, "a parameter that does not affect the output")


# ---------------------------------------------------------------------------------------------
# Every cell equals the NumPy reference
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CELLS)
def test_one_step_equals_the_reference(name):
    cell = make_cell(name, H)
    P, carry, x = random_params(cell), random_carry(cell), random_inputs()[:, 0]
    new_carry, y = cell.apply({"params": P}, carry, x)
    ref_carry, ref_y = reference_step(name, P, carry, x)
    assert_close(y, ref_y)
    assert_close(flat(new_carry), flat(ref_carry))


@pytest.mark.parametrize("name", CELLS)
def test_a_sequence_through_the_layer_equals_the_reference(name):
    cell = make_cell(name, H)
    P, xs = random_params(cell), random_inputs()
    carry, ys = run_rnn(RNN(cell), P, xs)
    ref_carry, ref_ys = reference_sequence(name, P, xs, cell.initialize_carry((B,)))
    assert ys.shape == (B, T, H)
    assert_close(ys, ref_ys)
    assert_close(flat(carry), flat(ref_carry))


# ---------------------------------------------------------------------------------------------
# What each switch means
# ---------------------------------------------------------------------------------------------

def without(P, *names):
    return {k: v for k, v in P.items() if k not in names}


OPEN = 50.0  # a bias that saturates a gate: σ(50 + O(5)) == 1 in float32


@pytest.mark.parametrize("name, gate", [("nig", "i"), ("nfg", "f"), ("nog", "o")])
def test_a_missing_gate_is_a_gate_held_open(name, gate):
    """NIG: i_t = 1, NFG: f_t = 1, NOG: o_t = 1, and the missing gate has no parameters: the variant
    equals V whose gate is saturated open by a huge bias."""
    P_v = random_params(make_cell("v", H))
    gate_params = (f"W_{gate}", f"R_{gate}", f"b_{gate}", f"p_{gate}")
    P = without(P_v, *gate_params)
    assert param_shapes(make_cell(name, H)) == {k: v.shape for k, v in P.items()}
    xs = random_inputs()
    _, ys = run_steps(make_cell(name, H), P, xs)
    _, ys_v_open = run_steps(make_cell("v", H), P_v | {f"b_{gate}": np.full(H, OPEN, np.float32)}, xs)
    _, ys_v = run_steps(make_cell("v", H), P_v, xs)
    assert_close(ys, ys_v_open)
    assert not np.allclose(ys, ys_v, atol=1e-3)  # the gate does matter in V


def test_nig_is_the_reference_with_i_equal_to_one():
    cell = make_cell("nig", H)
    P, carry, x = random_params(cell), random_carry(cell), random_inputs()[:, 0]
    P64 = {k: np.float64(v) for k, v in P.items()}
    c_prev, y_prev = np.float64(carry.c), np.float64(carry.y)
    z = np.tanh(x @ P64["W_z"] + y_prev @ P64["R_z"] + P64["b_z"])
    f = sigmoid(x @ P64["W_f"] + y_prev @ P64["R_f"] + P64["p_f"] * c_prev + P64["b_f"])
    c = z * 1.0 + c_prev * f
    o = sigmoid(x @ P64["W_o"] + y_prev @ P64["R_o"] + P64["p_o"] * c + P64["b_o"])
    new_carry, y = cell.apply({"params": P}, carry, x)
    assert_close(new_carry.c, c)
    assert_close(y, np.tanh(c) * o)


def test_nog_outputs_the_squashed_cell_state():
    cell = make_cell("nog", H)
    carry, y = cell.apply({"params": random_params(cell)}, random_carry(cell), random_inputs()[:, 0])
    assert_close(y, jnp.tanh(carry.c))


def test_cifg_couples_the_forget_gate_to_the_input_gate():
    """CIFG: f_t = 1 - i_t = σ(-(pre-activation of i)), so it equals V whose forget-gate parameters are
    the negated input-gate parameters; CIFG itself has no W_f, R_f, b_f, p_f."""
    P = random_params(make_cell("cifg", H))
    assert not {"W_f", "R_f", "b_f", "p_f"} & set(P)
    P_v = P | {f"{w}_f": -P[f"{w}_i"] for w in "WRbp"}
    xs = random_inputs()
    _, ys = run_steps(make_cell("cifg", H), P, xs)
    _, ys_v = run_steps(make_cell("v", H), P_v, xs)
    assert_close(ys, ys_v)


@pytest.mark.parametrize("name", ["niaf", "noaf"])
def test_no_input_or_output_activation_makes_g_or_h_the_identity(name):
    cell = make_cell(name, H)
    P, carry, x = random_params(cell, scale=1.0), random_carry(cell), random_inputs()[:, 0] * 2
    _, y = cell.apply({"params": P}, carry, x)
    _, y_identity = reference_step(name, P, carry, x)
    _, y_tanh = reference_step(name, P, carry, x, spec=VARIANTS["v"])  # same parameters, g = h = tanh
    assert_close(y, y_identity)
    assert not np.allclose(y, y_tanh, atol=1e-3)


def test_input_and_forget_peepholes_read_the_old_cell_state_the_output_peephole_the_new_one():
    cell = make_cell("v", H)
    P, x = random_params(cell), random_inputs()[:, 0]
    zero = cell.initialize_carry((B,))
    _, y = cell.apply({"params": P}, zero, x)
    # From c_0 = 0, p_i and p_f (reading c_0) cannot matter at the first step; p_o (reading c_1) does.
    _, y_other_pif = cell.apply({"params": P | {"p_i": P["p_i"] + 3.0, "p_f": P["p_f"] - 3.0}}, zero, x)
    _, y_other_po = cell.apply({"params": P | {"p_o": P["p_o"] + 3.0}}, zero, x)
    assert_close(y_other_pif, y)
    assert not np.allclose(y_other_po, y, atol=1e-3)
    # From a non-zero state: the reference with p_o ⊙ c_t matches, the one with p_o ⊙ c_{t-1} does not.
    carry = random_carry(cell)
    _, y = cell.apply({"params": P}, carry, x)
    _, y_new_c = reference_step("v", P, carry, x)
    _, y_old_c = reference_step("v", P, carry, x, output_peephole_reads_new_c=False)
    assert_close(y, y_new_c)
    assert not np.allclose(y, y_old_c, atol=1e-3)


def test_full_gate_recurrence_feeds_the_previous_steps_gates_into_every_gate():
    """FGR's gates read the gates of step t-1 (zero before the first step): zeroing its nine R_a_s
    leaves step 1 alone, changes step 2 on, and leaves exactly V."""
    P = random_params(make_cell("fgr", H))
    recurrent_gates = [f"R_{a}_{s}" for a in "ifo" for s in "ifo"]
    P_zero = P | {k: np.zeros_like(P[k]) for k in recurrent_gates}
    xs = random_inputs()
    _, ys = run_steps(make_cell("fgr", H), P, xs)
    _, ys_zero = run_steps(make_cell("fgr", H), P_zero, xs)
    _, ys_v = run_steps(make_cell("v", H), without(P, *recurrent_gates), xs)
    assert_close(ys[:, 0], ys_zero[:, 0])
    assert not np.allclose(ys[:, 1], ys_zero[:, 1], atol=1e-3)
    assert_close(ys_zero, ys_v)


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, count", [("srn", 20_096), ("np", 80_384), ("gru", 60_288)])
def test_parameter_counts_match_the_keras_tutorial(name, count):
    """28 inputs, 128 units: Keras' SimpleRNN, LSTM and GRU(reset_after=False)."""
    shapes = param_shapes(make_cell(name, 128), inputs=28)
    assert sum(int(np.prod(s)) for s in shapes.values()) == count


EXPECTED_PARAMS = {
    "v": lstm_params(),
    "nig": lstm_params(gates="zfo", peepholes="fo"),
    "nfg": lstm_params(gates="zio", peepholes="io"),
    "nog": lstm_params(gates="zif", peepholes="if"),
    "niaf": lstm_params(),
    "noaf": lstm_params(),
    "np": lstm_params(peepholes=""),
    "cifg": lstm_params(gates="zio", peepholes="io"),
    "fgr": lstm_params(gate_recurrence="ifo"),  # nine extra H×H matrices R_a_s
    "gru": {f"{w}_{a}": shape for a in "zrh" for w, shape in (("W", (D, H)), ("R", (H, H)), ("b", (H,)))},
    "srn": {"W": (D, H), "R": (H, H), "b": (H,)},
}


def expected_params(name) -> dict:
    """The tree above for the eleven cells it lists, else the one the cell's module registers."""
    if name in EXPECTED_PARAMS:
        return EXPECTED_PARAMS[name]
    own = entry(name).parameters
    assert own is not None, f"cell {name!r} registers no parameter tree: @register({name!r}, parameters=...) (docs/cells.md)"
    return own(D, H)


@pytest.mark.parametrize("name", CELLS)
def test_parameter_tree_names_and_shapes(name):
    assert param_shapes(make_cell(name, H)) == expected_params(name)


def test_the_readme_parameter_table_lists_every_registered_cell_with_its_count():
    """README's table (28 inputs, 128 units) names every cell once, with the count its parameter tree has."""
    from conftest import ROOT

    text = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\|(.*)\|\s*$", text.split("**Cells**", 1)[1].split("\n\n", 2)[1], re.M)
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        for names, count in zip(cells[0::3], cells[1::3]):
            for name in re.findall(r"`(\w+)`", names):
                table[name] = int(count.replace(",", ""))
    counts = {name: sum(int(np.prod(s)) for s in param_shapes(make_cell(name, 128), inputs=28).values()) for name in CELLS}
    assert table == counts


def test_fgr_has_nine_more_hxh_matrices_than_v():
    extra = set(EXPECTED_PARAMS["fgr"]) - set(EXPECTED_PARAMS["v"])
    assert len(extra) == 9 and all(EXPECTED_PARAMS["fgr"][k] == (H, H) for k in extra)


# ---------------------------------------------------------------------------------------------
# make_cell
# ---------------------------------------------------------------------------------------------

def test_make_cell_builds_every_cell_by_name():
    for name in VARIANTS:
        cell = make_cell(name, 8)
        assert isinstance(cell, GatedCell) and cell.spec == VARIANTS[name] and cell.hidden == 8
    assert isinstance(make_cell("gru", 8), GRUCell)
    assert isinstance(make_cell("srn", 8), SimpleCell)


def test_switches_combine_variants_np_plus_coupled_is_np_cifg():
    cell = make_cell("np", 8, switches={"coupled": True})
    assert cell.spec == GateSpec(peepholes=False, coupled=True)
    assert param_shapes(cell) == lstm_params(gates="zio", peepholes="", hidden=8)


def test_make_cell_refuses_unknown_names_and_switches_with_the_choices():
    with pytest.raises(ValueError, match=r"Unknown cell 'lstm'.*\bv\b.*\bgru\b.*\bsrn\b.*to add one.*docs/cells.md"):
        make_cell("lstm", 8)
    with pytest.raises(ValueError, match=r"'gru' has no gate switches"):
        make_cell("gru", 8, switches={"coupled": True})
    with pytest.raises(ValueError, match=r"'srn' has no gate switches"):
        make_cell("srn", 8, switches={"peepholes": False})
    with pytest.raises(ValueError, match=r"coupld.*coupled"):  # a typo names itself and the real switches
        make_cell("v", 8, switches={"coupld": True})
    with pytest.raises(ValueError, match="input_gate=False"):  # a contradiction is refused as well
        make_cell("nig", 8, switches={"coupled": True})


def test_forget_bias_initialises_b_f_and_peepholes_start_at_zero():
    cell = make_cell("v", H, forget_bias=2.5)
    assert cell.forget_bias == 2.5
    cell = cell.clone(recurrent_init=jax.nn.initializers.zeros)  # skip compiling the orthogonal init
    params = cell.init(jax.random.key(0), cell.initialize_carry((1,)), jnp.zeros((1, D)))["params"]
    assert (params["b_f"] == 2.5).all() and (params["b_i"] == 0).all()
    assert all((params[f"p_{a}"] == 0).all() for a in "ifo")


def test_initialisers_are_configurable_by_name_and_default_to_orthogonal_recurrent_weights():
    x = jnp.ones((1, 3))
    default = make_cell("srn", 8).init(jax.random.key(0), make_cell("srn", 8).initialize_carry((1,)), x)["params"]
    R = np.asarray(default["R"])
    np.testing.assert_allclose(R.T @ R, np.eye(8), atol=1e-5)  # orthogonal
    glorot = make_cell("srn", 8, recurrent_init="glorot_uniform")
    R2 = np.asarray(glorot.init(jax.random.key(0), glorot.initialize_carry((1,)), x)["params"]["R"])
    assert not np.allclose(R2.T @ R2, np.eye(8), atol=1e-2)
    with pytest.raises(ValueError, match="Unknown initialiser 'zeros'; choose one of glorot_uniform"):
        make_cell("v", 8, kernel_init="zeros")


# ---------------------------------------------------------------- declared speed paths (paths/derive.py: check)

class GRUDeclaringTheFusedGradient(GRUCell):  # its update multiplies by R_h: nothing to gather after the loop
    paths = ("fused_gradient", "kernel")


class FGRDeclaringTheKernel(GatedCell):  # its carry holds its gates side by side, [B, 3H]
    def declared_paths(self):
        return ("fused_gradient", "kernel")


class SRNDeclaringTheParallelScan(SimpleCell):  # tanh(W x + R y + b) is no linear recurrence: no coefficients
    paths = ("parallel_scan",)


@pytest.mark.parametrize("cell, words", [
    (GRUDeclaringTheFusedGradient(H), "'gru' declares fused_gradient, but its update multiplies by a matrix"),
    (FGRDeclaringTheKernel(H, VARIANTS["fgr"]), "'fgr' declares kernel, but its carry holds arrays of shape"),
    (SRNDeclaringTheParallelScan(H), "declares parallel_scan, but its statement gives no coefficients"),
], ids=["fused_gradient", "kernel", "parallel_scan"])
def test_a_cell_declaring_a_path_its_statement_cannot_honour_is_refused_when_the_model_is_built(cell, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        RNN(cell).init(jax.random.key(0), random_inputs())


# ---------------------------------------------------------------- variants as data (variants.SwitchedCell)

SWITCHED = [GateSpec(**{ONE_SWITCH[v]: not getattr(GateSpec(), ONE_SWITCH[v])}) for v in ONE_SWITCH] + [
    GateSpec(full_recurrence=True, coupled=True), GateSpec(input_gate=False, peepholes=False, output_activation=False)]


@pytest.mark.parametrize("spec", [SWITCHED[1], *(pytest.param(s, marks=pytest.mark.slow) for s in SWITCHED[:1] + SWITCHED[2:])], ids=lambda s: ",".join(k for k in SWITCHES if getattr(s, k) != getattr(GateSpec(), k)) or "v")
def test_the_switched_cell_computes_each_variants_outputs_and_gradients_and_leaves_the_rest_at_zero(spec):
    """Its switches as data, over V's parameters (FGR's too with full_recurrence): each variant's own
    outputs and gradients, and exactly zero gradient for every parameter the variant lacks."""
    from training import switches
    from variants import SwitchedCell

    x = jnp.asarray(np.random.default_rng(1).normal(size=(B, T, D)), jnp.float32)
    lone, switched = RNN(GatedCell(H, spec)), RNN(SwitchedCell(H, full_recurrence=spec.full_recurrence))
    own = {"params": lone.init(jax.random.key(0), x)}
    state = switches.embed(own, {"params": jax.eval_shape(lambda: switched.init(jax.random.key(0), x))}, spec)

    def loss(model, variables):
        return jnp.sum(jnp.sin(model.apply(variables, x)[1]))

    out_lone, grads_lone = jax.jit(jax.value_and_grad(lambda v: loss(lone, v)))(own["params"])
    out, grads = jax.jit(jax.value_and_grad(lambda v: loss(switched, v)))(state["params"])
    np.testing.assert_allclose(out, out_lone, rtol=1e-5)
    mine = switches.extract({"params": grads}, {"params": grads_lone})["params"]
    for g, g_lone in zip(jax.tree.leaves(mine), jax.tree.leaves(grads_lone)):
        np.testing.assert_allclose(g, g_lone, rtol=1e-4, atol=1e-6)
    own_paths = {path for path, _ in jax.tree_util.tree_flatten_with_path(own["params"])[0]}
    lacking = [g for path, g in jax.tree_util.tree_flatten_with_path(grads)[0] if path not in own_paths]
    assert lacking and all(float(jnp.max(jnp.abs(g))) == 0.0 for g in lacking)
