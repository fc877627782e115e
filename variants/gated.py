"""One gated cell for the vanilla LSTM of Greff et al. (2017) and all eight of its variants.

Vanilla LSTM ("V"): block input z, cell state c, block output y; g = h = tanh, σ = logistic::

    z_t = g(W_z x_t + R_z y_{t-1} + b_z)
    i_t = σ(W_i x_t + R_i y_{t-1} + p_i ⊙ c_{t-1} + b_i)
    f_t = σ(W_f x_t + R_f y_{t-1} + p_f ⊙ c_{t-1} + b_f)
    c_t = z_t ⊙ i_t + c_{t-1} ⊙ f_t
    o_t = σ(W_o x_t + R_o y_{t-1} + p_o ⊙ c_t + b_o)      # the output peephole reads the NEW cell state
    y_t = h(c_t) ⊙ o_t

Each variant is one switch of `GateSpec` away from V (see `VARIANTS`); a missing gate has no
parameters at all, so parameter trees show the difference. Any combination of switches that does
not contradict itself is a valid cell (`GateSpec.__post_init__` names the conflicts).
"""

from __future__ import annotations

import dataclasses
from functools import partial
from types import SimpleNamespace
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.cell import Cell, Recurrent, Statement, select
from variants.registry import INIT_KEYS, Entry, add

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GateSpec:
    """The switches of the gated cell. Defaults are Greff's vanilla LSTM."""

    input_gate: bool = True  # False: i_t = 1 (NIG)
    forget_gate: bool = True  # False: f_t = 1 (NFG)
    output_gate: bool = True  # False: o_t = 1 (NOG)
    input_activation: bool = True  # False: g = identity (NIAF)
    output_activation: bool = True  # False: h = identity (NOAF)
    peepholes: bool = True  # False: p_i = p_f = p_o = 0, no peephole weights (NP)
    coupled: bool = False  # True: f_t = 1 - i_t, no forget-gate weights (CIFG)
    full_recurrence: bool = False  # True: gates also read all gates of step t-1 (FGR)

    def __post_init__(self):
        conflicts = []
        if self.coupled and not self.input_gate:
            conflicts.append("coupled (f = 1 - i) needs the input gate, but input_gate=False")
        if self.coupled and not self.forget_gate:
            conflicts.append("coupled (f = 1 - i) defines the forget gate, but forget_gate=False removes it")
        if self.full_recurrence and not self.gates:
            conflicts.append("full_recurrence connects gates to gates, but every gate is switched off")
        if conflicts:
            raise ValueError("Invalid GateSpec: " + "; ".join(conflicts) + ".")

    @property
    def gates(self) -> tuple[str, ...]:
        """Gates with their own parameters, in the order of the fused projection."""
        gates = []
        if self.input_gate:
            gates.append("i")
        if self.forget_gate and not self.coupled:
            gates.append("f")
        if self.output_gate:
            gates.append("o")
        return tuple(gates)

    @property
    def blocks(self) -> tuple[str, ...]:
        """All pre-activations computed by the fused matmul: the block input z, then the gates."""
        return ("z",) + self.gates

    @property
    def peephole_gates(self) -> tuple[str, ...]:
        return self.gates if self.peepholes else ()

    def replace(self, **switches) -> "GateSpec":
        return dataclasses.replace(self, **switches)


VARIANTS: dict[str, GateSpec] = {
    "v": GateSpec(),
    "nig": GateSpec(input_gate=False),
    "nfg": GateSpec(forget_gate=False),
    "nog": GateSpec(output_gate=False),
    "niaf": GateSpec(input_activation=False),
    "noaf": GateSpec(output_activation=False),
    "np": GateSpec(peepholes=False),
    "cifg": GateSpec(coupled=True),
    "fgr": GateSpec(full_recurrence=True),
}


class LSTMCarry(NamedTuple):
    c: Array  # cell state c_{t-1}            [B, H]
    y: Array  # block output y_{t-1}          [B, H]
    gates: Array | None  # gate activations of t-1 side by side, only with full_recurrence: [B, n_gates·H]


class GatedCell(Cell):
    """Greff's LSTM with switches. Parameter names are the paper's symbols:

    W_a [D, H] input weights, R_a [H, H] recurrent weights, b_a [H] biases for a in (z, i, f, o);
    p_a [H] peepholes for the gates; with full_recurrence, R_a_b [H, H] carries gate b of step t-1
    into gate a (nine matrices for V).
    """

    spec: GateSpec = GateSpec()
    forget_bias: float = 1.0  # b_f starts here: remembering by default helps gradients flow early (Jozefowicz et al. 2015)
    peephole_init: Callable = nn.initializers.zeros  # p_a: start as the NP cell and learn peepholes from there

    paths = ("fused_gradient", "kernel")

    @nn.nowrap
    def declared_paths(self) -> tuple[str, ...]:
        return ("fused_gradient",) if self.spec.full_recurrence else self.paths

    @property
    def why_not(self) -> dict[str, str]:
        return {"kernel": "has no blocked step: its carry holds the gates of step t-1 side by side (FGR), which the "
                          "kernel's H-unit blocks cannot hold",
                "parallel_scan": "is not linear in its state (its gates read y_{t-1})"}

    @nn.nowrap
    def label(self) -> str:
        return variant_name(self.spec)

    @property
    def structure(self) -> GateSpec:
        """The switches whose parameters the cell has (SwitchedCell: V's or FGR's, whatever its switches)."""
        return self.spec

    def initialize_carry(self, batch_shape: tuple[int, ...]) -> LSTMCarry:
        spec, zeros = self.structure, jnp.zeros(batch_shape + (self.hidden,), jnp.float32)
        gates = jnp.zeros(batch_shape + (len(spec.gates) * self.hidden,), jnp.float32) if spec.full_recurrence else None
        return LSTMCarry(zeros, zeros, gates)

    def parameters(self, spec: GateSpec, D: int):
        """Create (or fetch) the parameters of `spec`: (W [D, G·H], b [G·H], R [H, G·H], peepholes {gate: [H]},
        R_gates [n·H, n·H] or None). Called from the compact `statement`."""
        H = self.hidden
        W, b, R = self.weights(spec.blocks, D, recurrent=spec.blocks, biases={"f": nn.initializers.constant(self.forget_bias)})
        p = {a: self.param(f"p_{a}", self.peephole_init, (H,)) for a in spec.peephole_gates}
        if spec.full_recurrence:
            RG = {(a, s): self.param(f"R_{a}_{s}", self.recurrent_init, (H, H)) for a in spec.gates for s in spec.gates}
            # rows: gates of t-1 in spec.gates order; columns: gate pre-activations in spec.gates order
            R_gates = jnp.block([[RG[a, s] for a in spec.gates] for s in spec.gates])
        else:
            R_gates = None
        return W, b, jnp.concatenate([R[a] for a in spec.blocks], axis=1), p, R_gates

    def switch_data(self) -> dict:
        """The switches as data (SwitchedCell); none here: `spec`'s are fixed when the program is built."""
        return {}

    @nn.compact
    def statement(self, x: Array) -> Statement:
        spec = self.structure
        W, b, R, p, R_gates = self.parameters(spec, x.shape[-1])
        recurrent = (Recurrent(_output, R, spec.blocks),)
        if R_gates is not None:  # FGR: the gates of step t-1 into every gate's pre-activation
            recurrent += (Recurrent(_gates, R_gates, spec.gates),)
        return Statement(spec.blocks, W, b, recurrent, partial(update, spec), (p, self.switch_data()), self.dtype)


def update(spec: GateSpec, inner, pre: dict, carry: LSTMCarry):
    """The module doc's equations, from the pre-activations W_a x_t + R_a y_{t-1} + b_a (+ FGR's gate terms),
    for a cell with the parameters of `spec`.

    inner = (p, switches): the peepholes, and the switches as data ({}: `spec`'s own, fixed when the program is
    built; else 0/1 numbers, read through `select`). With FGR the carry holds the gates' activations."""
    p, values = inner
    s = spec if not values else SimpleNamespace(**{k: v > 0.5 for k, v in values.items()})
    c_prev = carry.c

    def peep(gate, c):
        return select(s.peepholes, lambda: p[gate] * c, 0.0)

    z = select(s.input_activation, lambda: jnp.tanh(pre["z"]), pre["z"])
    i = select(s.input_gate, lambda: jax.nn.sigmoid(pre["i"] + peep("i", c_prev)), 1.0)
    f = select(s.coupled, lambda: 1.0 - i,
               lambda: select(s.forget_gate, lambda: jax.nn.sigmoid(pre["f"] + peep("f", c_prev)), 1.0))
    c = z * i + c_prev * f
    o = select(s.output_gate, lambda: jax.nn.sigmoid(pre["o"] + peep("o", c)), 1.0)  # the output peephole reads c_t
    y = select(s.output_activation, lambda: jnp.tanh(c), c) * o
    if carry.gates is None:
        return LSTMCarry(c, y, None), y
    has = {"i": s.input_gate, "f": select(s.coupled, False, s.forget_gate), "o": s.output_gate}  # gates with parameters
    acts = {"i": i, "f": f, "o": o}
    gates = jnp.concatenate([select(has[a], acts[a], 0.0) for a in spec.gates], axis=-1)
    return LSTMCarry(c, y, gates), y


def _output(carry: LSTMCarry):
    return carry.y


def _gates(carry: LSTMCarry):
    return carry.gates


def variant_name(spec: GateSpec) -> str:
    """A spec's name: its variant's ("np"), or the nearest variant's with the switches that differ ("np+coupled=True")."""
    def differ(name):
        return {k: v for k, v in dataclasses.asdict(spec).items() if v != getattr(VARIANTS[name], k)}

    nearest = min(VARIANTS, key=lambda name: len(differ(name)))
    return "+".join([nearest, *(f"{k}={v}" for k, v in differ(nearest).items())])


def build(spec: GateSpec, name: str, hidden: int, dtype=None, switches: dict | None = None, forget_bias: float = 1.0,
          switches_as_data: bool = False, **initializers) -> Cell:
    """The variant `spec` (called `name`), with `switches` changed: `cell=np cell.switches={coupled: true}` is
    NP + CIFG. switches_as_data: variants.SwitchedCell, V's parameters with the switches read as data."""
    known = [f.name for f in dataclasses.fields(GateSpec)]
    unknown = sorted(set(switches or {}) - set(known))
    if unknown:
        raise ValueError(f"Unknown switch(es) {unknown} for cell {name!r}; the switches are {', '.join(known)}.")
    spec = spec.replace(**dict(switches or {}))
    if switches_as_data:
        from variants.switched import SwitchedCell

        return SwitchedCell(hidden, forget_bias=forget_bias, dtype=dtype, full_recurrence=spec.full_recurrence, **initializers)
    return GatedCell(hidden, spec, forget_bias=forget_bias, dtype=dtype, **initializers)


for _name, _spec in VARIANTS.items():  # the nine cells of Greff et al., by their names
    add(Entry(_name, partial(build, _spec, _name), keys=("switches", "forget_bias", *INIT_KEYS), switches=True))
