"""Every Greff variant as one cell whose switches are data: variants train together in one program.

`GatedCell` fixes its switches when the program is built, and a variant lacks the parameters it does not
use. `SwitchedCell` has the parameters of V (plus FGR's gate-to-gate matrices when `full_recurrence`,
a structural choice that stays static: it adds a [3H, 3H] matmul to every step) and reads its switches
from the "switches" variable collection, one 0/1 number per switch, so a population can stack trials
of different variants along its trial axis (training/population.py; their parameters are laid into
this superset by training/switches.py).

A trial then computes exactly what its lone `GatedCell` computes: a switched-off gate is selected away
with `jnp.where` (i = 1, f = 1, o = 1, f = 1 − i, g or h = identity), never blended arithmetically, so
the values are the lone cell's, and the gradient of a parameter the variant lacks is exactly zero (a
`where` passes no gradient to the branch it did not select; peepholes and fed-back gates enter through
`where(switch, value, 0)` for the same reason). Those parameters start at zero and an optimizer step
with a zero gradient leaves them there (Adam's and SGD's update of a zero gradient is zero).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import flax.linen as nn

from variants.fused import LinearStep
from variants.gated import GatedCell, GateSpec, LSTMCarry, reads_output, reads_output_and_gates
from variants.protocol import Recurrence, matmul

SWITCHES = tuple(f.name for f in dataclasses.fields(GateSpec) if f.name != "full_recurrence")
GATES = ("i", "f", "o")


def switch_values(spec: GateSpec) -> dict[str, float]:
    """A variant's switches as the numbers SwitchedCell reads (full_recurrence is the cell's structure)."""
    return {name: float(getattr(spec, name)) for name in SWITCHES}


class SwitchedCell(GatedCell):
    """V's parameters (and FGR's, with full_recurrence) and the switches as data; see the module doc.
    `spec` is ignored: the parameters are V's, or FGR's with `full_recurrence`."""

    full_recurrence: bool = False

    def initialize_carry(self, batch_shape: tuple[int, ...]) -> LSTMCarry:
        zeros = jnp.zeros(batch_shape + (self.hidden,), jnp.float32)
        n = len(GATES) * self.hidden if self.full_recurrence else 0
        return LSTMCarry(zeros, zeros, jnp.zeros(batch_shape + (n,), jnp.float32))

    @nn.compact
    def recurrence(self, x: jax.Array) -> Recurrence:
        superset = GateSpec(full_recurrence=self.full_recurrence)  # V: blocks z, i, f, o and all three peepholes
        W_all, R_all, b_all, p, R_gates = self.parameters(superset, x.shape[-1])
        default = switch_values(GateSpec())
        switches = {name: self.variable("switches", name, lambda n=name: jnp.float32(default[n])).value for name in SWITCHES}
        full_recurrence, dtype = self.full_recurrence, self.dtype

        def project(x):
            return matmul(x, W_all, dtype) + b_all

        def finish(small, pre, carry: LSTMCarry):
            p, s = small
            on = {name: s[name] > 0.5 for name in SWITCHES}
            z, pi, pf, po = jnp.split(pre, 4, axis=-1)
            c_prev = carry.c

            def peep(gate, c):
                return jnp.where(on["peepholes"], p[gate], 0.0) * c

            z = jnp.where(on["input_activation"], jnp.tanh(z), z)
            i = jnp.where(on["input_gate"], jax.nn.sigmoid(pi + peep("i", c_prev)), 1.0)
            f = jnp.where(on["coupled"], 1.0 - i, jnp.where(on["forget_gate"], jax.nn.sigmoid(pf + peep("f", c_prev)), 1.0))
            c = z * i + c_prev * f
            o = jnp.where(on["output_gate"], jax.nn.sigmoid(po + peep("o", c)), 1.0)
            y = jnp.where(on["output_activation"], jnp.tanh(c), c) * o
            if full_recurrence:  # only the gates the variant has are fed back (GateSpec.gates)
                has = {"i": on["input_gate"], "f": on["forget_gate"] & ~on["coupled"], "o": on["output_gate"]}
                gates = jnp.concatenate([jnp.where(has[a], v, 0.0) for a, v in zip(GATES, (i, f, o))], axis=-1)
            else:
                gates = carry.gates
            return LSTMCarry(c, y, gates), y

        small = (p, switches)
        if R_gates is None:
            step = LinearStep((R_all,), (0,), reads_output, finish, small, dtype)
        else:
            step = LinearStep((R_all, R_gates), (0, self.hidden), reads_output_and_gates, finish, small, dtype)
        return Recurrence(project=project, step=step, linear=step)

