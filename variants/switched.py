"""Every Greff variant as one cell whose switches are data: variants train together in one program.

`GatedCell` fixes its switches when the program is built, and a variant lacks the parameters it does not
use. `SwitchedCell` has the parameters of V (plus FGR's gate-to-gate matrices when `full_recurrence`,
a structural choice that stays static: it adds a [3H, 3H] matmul to every step) and reads its switches
from the "switches" variable collection, one 0/1 number per switch, so a population can stack trials
of different variants along its trial axis (training/population.py; their parameters are laid into
this superset by training/switches.py).

Its equations are GatedCell's own (`variants.gated.update`) with the switches as data: `select` picks a
switched-off gate away with `jnp.where` (i = 1, f = 1, o = 1, f = 1 − i, g or h = identity), never blending
arithmetically, so a trial computes exactly what its lone `GatedCell` computes, and the gradient of a
parameter its variant lacks is exactly zero (a `where` passes no gradient to the branch it did not select;
peepholes and fed-back gates enter through `select(switch, value, 0)` for the same reason). Those parameters
start at zero and an optimizer step with a zero gradient leaves them there.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from variants.gated import GatedCell, GateSpec

SWITCHES = tuple(f.name for f in dataclasses.fields(GateSpec) if f.name != "full_recurrence")


def switch_values(spec: GateSpec) -> dict[str, float]:
    """A variant's switches as the numbers SwitchedCell reads (full_recurrence is the cell's structure)."""
    return {name: float(getattr(spec, name)) for name in SWITCHES}


class SwitchedCell(GatedCell):
    """V's parameters (and FGR's, with full_recurrence) and the switches as data; see the module doc.
    `spec` is ignored: the parameters are V's, or FGR's with `full_recurrence`."""

    full_recurrence: bool = False

    paths = ("fused_gradient",)

    @nn.nowrap
    def declared_paths(self) -> tuple[str, ...]:
        return self.paths

    @property
    def why_not(self) -> dict[str, str]:
        return {"kernel": "has no blocked step: its switches are data (a population of mixed variants), and the "
                          "kernel's parameters are arrays of units"}

    @nn.nowrap
    def label(self) -> str:
        return "switched" + ("+full_recurrence" if self.full_recurrence else "")

    @property
    def structure(self) -> GateSpec:
        return GateSpec(full_recurrence=self.full_recurrence)  # V: blocks z, i, f, o and all three peepholes

    def switch_data(self) -> dict:
        """One 0/1 number per switch, from the "switches" collection (V's switches until a trial's are laid in)."""
        default = switch_values(GateSpec())
        return {name: self.variable("switches", name, lambda n=name: jnp.float32(default[n])).value for name in SWITCHES}
