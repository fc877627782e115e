"""Quiet logs by default: Odyssey's own lines, and every warning or error from anyone; `verbose=true`
brings back the libraries' INFO chatter (JAX's backend probes, Orbax, wandb's banners)."""

from __future__ import annotations

import logging

# INFO lines that look like errors or repeat what Odyssey says: JAX probing for backends it does not find
# ("Unable to initialize backend 'tpu'"), Orbax's and absl's file-by-file progress, Optuna's study lines,
# alembic's plugin set-up (imported with Optuna when Hydra scans its plugins, before the run starts).
CHATTY = ("jax._src.xla_bridge", "jax", "absl", "orbax", "optuna", "alembic")


def configure_logging(verbose: bool = False) -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    except ImportError:
        pass
