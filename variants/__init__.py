"""Odyssey's recurrent cells: Greff et al.'s vanilla LSTM and its eight variants, GRU, SRN and whatever else a
module of this package registers.

`make_cell(name, hidden, **keys)` builds any of them by name; `CELLS` names the registered cells, which
`conf/cell/*.yaml` mirrors (a test checks the two agree). Every module here is imported, so a cell registers
itself by being defined (variants/registry.py); docs/cells.md shows a new one.
"""

from __future__ import annotations

import importlib
import pkgutil

from variants.cell import Cell, Recurrent, Statement, select
from variants.registry import CELLS, INITIALIZERS, entry, initializer, make_cell, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from variants.gated import VARIANTS, GatedCell, GateSpec, LSTMCarry  # noqa: E402  (registered above, by the loop)
from variants.gru import GRUCell  # noqa: E402
from variants.layer import RNN, RecurrentStack, last_outputs, reverse_sequences  # noqa: E402
from variants.simple import SimpleCell  # noqa: E402
from variants.switched import SwitchedCell, switch_values  # noqa: E402

__all__ = [
    "CELLS", "VARIANTS", "Cell", "GateSpec", "GatedCell", "GRUCell", "INITIALIZERS", "LSTMCarry", "RNN", "Recurrent",
    "RecurrentStack", "SimpleCell", "Statement", "SwitchedCell", "entry", "initializer", "last_outputs", "make_cell",
    "register", "reverse_sequences", "select", "switch_values",
]
