"""Odyssey's recurrent cells: Greff et al.'s vanilla LSTM and its eight variants, GRU and SRN.

`make_cell(name, hidden, ...)` builds any of them by name; `CELLS` is the registry that
`conf/cell/*.yaml` mirrors (a test checks the two agree).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from variants.gated import VARIANTS, GatedCell, GateSpec, LSTMCarry
from variants.gru import GRUCell
from variants.layer import RNN, RecurrentStack, last_outputs, reverse_sequences
from variants.protocol import Recurrence
from variants.simple import SimpleCell
from variants.switched import SwitchedCell, switch_values

CELLS: tuple[str, ...] = tuple(VARIANTS) + ("gru", "srn")


INITIALIZERS = ("glorot_uniform", "glorot_normal", "lecun_normal", "lecun_uniform", "he_normal", "orthogonal")


def initializer(name: str):
    """A Flax initialiser by name, for W (kernel_init) and R (recurrent_init) from the config."""
    if name not in INITIALIZERS:
        raise ValueError(f"Unknown initialiser {name!r}; choose one of {', '.join(INITIALIZERS)}.")
    return getattr(nn.initializers, name)()


def make_cell(name: str, hidden: int, switches: dict | None = None, forget_bias: float = 1.0, dtype=None,
              kernel_init: str = "glorot_uniform", recurrent_init: str = "orthogonal", switches_as_data: bool = False):
    """A cell by its Greff name (`v`, `nig`, ..., `fgr`), `gru` or `srn`.

    `switches` overrides the named variant's GateSpec, so combinations are one line:
    `make_cell("np", 64, switches={"coupled": True})` is NP + CIFG. `kernel_init` and `recurrent_init`
    name the initialisers of W and R (defaults: Keras' glorot-uniform W, orthogonal R).
    `switches_as_data`: a Greff variant as `SwitchedCell` (V's parameters, the switches read as data, so
    variants can share one program; only full_recurrence is taken from the variant).
    """
    inits = {"kernel_init": initializer(kernel_init), "recurrent_init": initializer(recurrent_init)}
    if name in VARIANTS:
        known = [f.name for f in dataclasses.fields(GateSpec)]
        unknown = sorted(set(switches or {}) - set(known))
        if unknown:
            raise ValueError(f"Unknown switch(es) {unknown} for cell {name!r}; the switches are {', '.join(known)}.")
        spec = VARIANTS[name].replace(**dict(switches or {}))
        if switches_as_data:
            return SwitchedCell(hidden, forget_bias=forget_bias, dtype=dtype, full_recurrence=spec.full_recurrence, **inits)
        return GatedCell(hidden, spec, forget_bias=forget_bias, dtype=dtype, **inits)
    if switches:
        raise ValueError(f"Cell {name!r} has no gate switches (got {dict(switches)}); switches apply to {sorted(VARIANTS)}.")
    if name == "gru":
        return GRUCell(hidden, dtype=dtype, **inits)
    if name == "srn":
        return SimpleCell(hidden, dtype=dtype, **inits)
    raise ValueError(f"Unknown cell {name!r}; choose one of {', '.join(CELLS)}.")


__all__ = [
    "CELLS", "VARIANTS", "GateSpec", "GatedCell", "GRUCell", "SimpleCell", "LSTMCarry", "RNN",
    "INITIALIZERS", "RecurrentStack", "Recurrence", "SwitchedCell", "switch_values", "initializer", "last_outputs", "make_cell", "reverse_sequences",
]
