"""The network every task trains: a recurrent stack read out by one dense layer."""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from training import speed_rules
from variants import RecurrentStack, make_cell

log = logging.getLogger("odyssey")


class SequenceModel(nn.Module):
    cell: str  # a name from variants.CELLS
    hidden: int
    output_size: int
    readout: str = "last"  # "last": predict from the output after each whole sequence; "all": every step
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    switches: Any = None  # extra GateSpec switches for gated cells
    forget_bias: float = 1.0
    kernel_init: str = "glorot_uniform"  # W's initialiser (variants.INITIALIZERS)
    recurrent_init: str = "orthogonal"  # R's initialiser
    unroll: int = 1
    hoist_projection: bool = False
    fused_gradient: bool = False
    kernel: bool = False  # variants.kernel's Pallas time loop (speed.kernel)
    switches_as_data: bool = False  # a Greff variant as variants.SwitchedCell (a population of mixed variants)
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, lengths: jax.Array | None = None, train: bool = False,
                 rows: jax.Array | None = None) -> jax.Array:
        """rows: each example's row number in the whole batch (dropout is keyed by it; default 0..B-1)."""
        switches = dict(self.switches or {})
        stack = RecurrentStack(
            lambda: make_cell(self.cell, self.hidden, switches, self.forget_bias, self.dtype, self.kernel_init, self.recurrent_init,
                              self.switches_as_data),
            self.layers, self.bidirectional, self.dropout, self.unroll, self.hoist_projection, self.fused_gradient,
            self.kernel,
        )
        outputs, last = stack(x, lengths, train, rows)
        features = last if self.readout == "last" else outputs  # [B, dirs·H] or [B, T, dirs·H]
        return nn.Dense(self.output_size, name="head")(features)


def model_from_config(cfg, task, hidden: int | None = None, switches_as_data: bool = False) -> SequenceModel:
    """The config's model; `hidden` overrides its width (a population pads narrower trials to it),
    `switches_as_data` makes a Greff variant's cell the superset of every variant (a population mixes them)."""
    speed = cfg.speed
    dtype = None if speed.dtype in (None, "float32") else jnp.dtype(speed.dtype)
    paths = speed_paths(cfg, hidden)
    return SequenceModel(
        cell=cfg.cell.name, hidden=hidden or cfg.hidden, output_size=task.output_size, readout=task.readout,
        layers=cfg.layers, bidirectional=bool(cfg.bidirectional), dropout=cfg.dropout,
        switches={k: v for k, v in (cfg.cell.get("switches") or {}).items() if v is not None}, forget_bias=cfg.cell.forget_bias,
        kernel_init=cfg.cell.kernel_init, recurrent_init=cfg.cell.recurrent_init,
        **paths, switches_as_data=switches_as_data, dtype=dtype,
    )


def speed_paths(cfg, hidden: int | None = None) -> dict:
    """The scan paths the config's `speed` settings choose on the run's backend (training/speed_rules.py)."""
    backend = speed_rules.backend_of(cfg.get("platform"))
    paths = speed_rules.chosen(cfg.speed, backend, cfg.cell.name, hidden or cfg.hidden)
    if paths["kernel"] and backend != "gpu":
        log.warning("speed.kernel=true on %s runs Pallas' interpreter (variants/kernel.py): the same numbers, "
                    "but far slower than the scan; it is meant for GPUs", backend)
    return paths


def paths_of(model: SequenceModel) -> dict:
    """The speed paths a model runs, for its run's record (a cell without a fused or blocked step still
    falls back to the scan, with a log line: variants/layer.py)."""
    return {k: getattr(model, k) for k in speed_rules.PATHS}


def count_params(params) -> int:
    return int(sum(p.size for p in jax.tree.leaves(params)))

