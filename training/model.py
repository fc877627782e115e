"""The network every task trains: a recurrent stack read out by one dense layer."""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from omegaconf import OmegaConf

import paths
from training import speed_rules
from variants import RecurrentStack, make_cell
from variants.layer import asked

log = logging.getLogger("odyssey")


class SequenceModel(nn.Module):
    cell: str  # a name from variants.CELLS
    hidden: int
    output_size: int
    readout: str = "last"  # "last": predict from the output after each whole sequence; "all": every step
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    cell_keys: Any = None  # the cell's config keys but its name (conf/cell/<name>.yaml: switches, initialisers...)
    unroll: int = 1
    hoist_projection: bool = False
    fused_gradient: bool = False
    kernel: bool = False  # paths/kernel.py's Pallas time loop (speed.kernel)
    parallel_scan: bool = False  # paths/parallel.py (speed.parallel_scan)
    switches_as_data: bool = False  # a Greff variant as variants.SwitchedCell (a population of mixed variants)
    dtype: Any = None

    @nn.nowrap
    def make_cell(self):
        """A fresh cell of this model (one per layer and direction; and to ask it which paths it takes)."""
        return make_cell(self.cell, self.hidden, self.dtype, self.switches_as_data, **dict(self.cell_keys or {}))

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None, train: bool = False,
                 rows: jax.Array | None = None) -> jax.Array:
        """rows: each example's row number in the whole batch (dropout is keyed by it; default 0..B-1)."""
        stack = RecurrentStack(self.make_cell, self.layers, self.bidirectional, self.dropout, **asked(self))
        outputs, last = stack(x, lengths, train, rows)
        features = last if self.readout == "last" else outputs  # [B, dirs·H] or [B, T, dirs·H]
        return nn.Dense(self.output_size, name="head")(features)


def model_from_config(cfg, task, hidden: int | None = None, switches_as_data: bool = False, quiet: bool = False) -> SequenceModel:
    """The config's model; `hidden` overrides its width (a population pads narrower trials to it),
    `switches_as_data` makes a Greff variant's cell the superset of every variant (a population mixes them).

    The speed paths are those the config's `speed` settings choose on the run's backend (training/speed_rules.py);
    one the cell cannot take is logged here, once, naming the cell, the path and why (a warning when the
    setting said true, else info; `quiet`: not logged, for models built only to initialise a population's
    trials), and left out of the model, which `paths_of` then records as not run."""
    speed = cfg.speed
    dtype = None if speed.dtype in (None, "float32") else jnp.dtype(speed.dtype)
    backend = speed_rules.backend_of(cfg.platform)
    model = SequenceModel(
        cell=cfg.cell.name, hidden=hidden or cfg.hidden, output_size=task.output_size, readout=task.readout,
        layers=cfg.layers, bidirectional=bool(cfg.bidirectional), dropout=cfg.dropout, cell_keys=cell_keys(cfg.cell),
        **speed_rules.chosen(speed, backend, cfg.cell.name, hidden or cfg.hidden), switches_as_data=switches_as_data,
        dtype=dtype,
    )
    cell = model.make_cell()
    ran, fallbacks = paths.taken(cell.label(), cell.declared_paths(), cell.why_not, asked(model))
    for path, line in fallbacks.items() if not quiet else ():
        log.log(logging.WARNING if speed.get(path) is True else logging.INFO, line)
    if ran["kernel"] and backend != "gpu" and not quiet:
        log.warning("speed.kernel=true on %s runs Pallas' interpreter (paths/kernel.py): the same numbers, "
                    "but far slower than the scan; it is meant for GPUs", backend)
    return model.clone(**{path: False for path in fallbacks if path not in cell.declared_paths()})


def cell_keys(cell_cfg) -> dict:
    """A cell's config keys but its name, as variants.make_cell takes them."""
    return {k: v for k, v in OmegaConf.to_container(cell_cfg, resolve=True).items() if k != "name"}


def paths_of(model: SequenceModel) -> dict:
    """The speed paths a model really runs, for its run's record: what its settings ask for, less what its
    cell cannot take or another path replaces (paths.taken)."""
    cell = model.make_cell()
    ran, _ = paths.taken(cell.label(), cell.declared_paths(), cell.why_not, asked(model))
    return {path: ran[path] for path in speed_rules.PATHS}


def count_params(params) -> int:
    return int(sum(p.size for p in jax.tree.leaves(params)))

