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
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from variants.fused import LinearStep
from variants.kernel import BlockStep
from variants.protocol import Recurrence, matmul as _matmul

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
    gates: Array  # gate activations of t-1, only with full_recurrence: [B, n_gates·H], else [B, 0]


def _identity(x):
    return x


class GatedCell(nn.Module):
    """Greff's LSTM with switches. Parameter names are the paper's symbols:

    W_a [D, H] input weights, R_a [H, H] recurrent weights, b_a [H] biases for a in (z, i, f, o);
    p_a [H] peepholes for the gates; with full_recurrence, R_a_b [H, H] carries gate b of step t-1
    into gate a (nine matrices for V).
    """

    hidden: int
    spec: GateSpec = GateSpec()
    forget_bias: float = 1.0  # b_f starts here: remembering by default helps gradients flow early (Jozefowicz et al. 2015)
    kernel_init: Callable = nn.initializers.glorot_uniform()  # W_a: Keras' default, the tutorial's reference
    recurrent_init: Callable = nn.initializers.orthogonal()  # R_a: orthogonal keeps early gradients from exploding or vanishing
    peephole_init: Callable = nn.initializers.zeros  # p_a: start as the NP cell and learn peepholes from there
    dtype: Any = None  # computation dtype (e.g. bfloat16 on GPU/TPU); params stay float32

    def initialize_carry(self, batch_shape: tuple[int, ...]) -> LSTMCarry:
        zeros = jnp.zeros(batch_shape + (self.hidden,), jnp.float32)
        n = len(self.spec.gates) * self.hidden if self.spec.full_recurrence else 0
        return LSTMCarry(zeros, zeros, jnp.zeros(batch_shape + (n,), jnp.float32))

    def parameters(self, spec: GateSpec, D: int):
        """Create (or fetch) the parameters of `spec`, fused: (W_all [D, G·H], R_all [H, G·H], b_all [G·H],
        peepholes {gate: [H]}, R_gates [n·H, n·H] or None). Called from a compact method."""
        H = self.hidden
        W = {a: self.param(f"W_{a}", self.kernel_init, (D, H)) for a in spec.blocks}
        R = {a: self.param(f"R_{a}", self.recurrent_init, (H, H)) for a in spec.blocks}
        b = {a: self.param(f"b_{a}", nn.initializers.constant(self.forget_bias if a == "f" else 0.0), (H,)) for a in spec.blocks}
        p = {a: self.param(f"p_{a}", self.peephole_init, (H,)) for a in spec.peephole_gates}
        if spec.full_recurrence:
            RG = {(a, s): self.param(f"R_{a}_{s}", self.recurrent_init, (H, H)) for a in spec.gates for s in spec.gates}
            # rows: gates of t-1 in spec.gates order; columns: gate pre-activations in spec.gates order
            R_gates = jnp.block([[RG[a, s] for a in spec.gates] for s in spec.gates])
        else:
            R_gates = None
        W_all = jnp.concatenate([W[a] for a in spec.blocks], axis=1)  # [D, G·H]
        R_all = jnp.concatenate([R[a] for a in spec.blocks], axis=1)  # [H, G·H]
        b_all = jnp.concatenate([b[a] for a in spec.blocks])  # [G·H]
        return W_all, R_all, b_all, p, R_gates

    @nn.compact
    def recurrence(self, x: Array) -> Recurrence:
        """Create (or fetch) the parameters and return the cell's pure, fused functions."""
        spec, H = self.spec, self.hidden
        W_all, R_all, b_all, p, R_gates = self.parameters(spec, x.shape[-1])
        g = jnp.tanh if spec.input_activation else _identity
        h = jnp.tanh if spec.output_activation else _identity
        dtype = self.dtype

        def project(x):
            return _matmul(x, W_all, dtype) + b_all

        def finish(p, pre, carry: LSTMCarry):
            """Everything after the recurrent matmuls: gates, peepholes, activations (elementwise)."""
            return finish_blocks(p, dict(zip(spec.blocks, jnp.split(pre, len(spec.blocks), axis=-1))), carry)

        def finish_blocks(p, pre: dict, carry: LSTMCarry):
            """`finish` on the pre-activations as one [B, H] block per name of spec.blocks."""
            c_prev = carry.c
            z = g(pre["z"])
            i = jax.nn.sigmoid(pre["i"] + _peep(p, "i", c_prev)) if "i" in pre else 1.0
            if spec.coupled:
                f = 1.0 - i
            elif "f" in pre:
                f = jax.nn.sigmoid(pre["f"] + _peep(p, "f", c_prev))
            else:
                f = 1.0
            c = z * i + c_prev * f
            o = jax.nn.sigmoid(pre["o"] + _peep(p, "o", c)) if "o" in pre else 1.0
            y = h(c) * o
            if spec.full_recurrence:
                acts = {"i": i, "f": f, "o": o}
                gates = jnp.concatenate([acts[a] for a in spec.gates], axis=-1)
            else:
                gates = carry.gates
            return LSTMCarry(c, y, gates), y

        # one fused matmul [B, H] × [H, G·H]; with FGR a second one adds the gates of t-1 to the gates' columns
        if R_gates is None:
            step = LinearStep((R_all,), (0,), reads_output, finish, p, dtype)
        else:
            step = LinearStep((R_all, R_gates), (0, H), reads_output_and_gates, finish, p, dtype)

        def blocked_step(params, xw, state):
            """The step on gate blocks (variants.kernel): one [B, H] × [H, H] matmul per block."""
            (R_blocks, p), (c, y) = params, state
            pre = {a: x + _matmul(y, R, dtype) for a, x, R in zip(spec.blocks, xw, R_blocks)}
            new, out = finish_blocks(p, pre, LSTMCarry(c, y, None))
            return (new.c, new.y), out

        # FGR concatenates its gates into the carry, which a Triton kernel cannot do: it has no blocked step
        blocked = None if spec.full_recurrence else BlockStep(
            (tuple(jnp.split(R_all, len(spec.blocks), axis=1)), p), blocked_step, len(spec.blocks), _cell_state, _with_cell_state)
        return Recurrence(project=project, step=step, linear=step, blocked=blocked)

    def __call__(self, carry, x):
        """The plain cell protocol: one time step, (carry, x_t) -> (carry, y_t)."""
        rec = self.recurrence(x)
        return rec.step(carry, rec.project(x))


def reads_output(carry: LSTMCarry):
    return (carry.y,)


def reads_output_and_gates(carry: LSTMCarry):
    return (carry.y, carry.gates)


def _cell_state(carry: LSTMCarry):
    return carry.c, carry.y


def _with_cell_state(state, carry: LSTMCarry) -> LSTMCarry:
    return carry._replace(c=state[0], y=state[1])


def _peep(p: dict, gate: str, c: Array):
    return p[gate] * c if gate in p else 0.0

