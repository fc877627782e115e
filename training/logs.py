"""Quiet logs by default: Odyssey's own lines, and every warning or error from anyone; `verbose=true`
brings back the libraries' INFO chatter (JAX's backend probes, Orbax, wandb's banners)."""

from __future__ import annotations

import logging
import sys

# INFO lines that look like errors or repeat what Odyssey says: JAX probing for backends it does not find
# ("Unable to initialize backend 'tpu'"), Orbax's and absl's file-by-file progress, Optuna's study lines,
# alembic's set-up of the study database (both imported when an Optuna sweep starts: hydra_plugins.odyssey_optuna,
# which calls configure_logging again once Optuna is imported).
CHATTY = ("jax._src.xla_bridge", "jax", "absl", "orbax", "optuna", "alembic")


class RoutineWait(logging.Filter):
    """Orbax's warning that a checkpoint waited for the previous epoch's save ("Waiting for previous save to
    complete took 1.65 seconds"): routine on a busy machine with short epochs, since every epoch saves."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Waiting for previous save to complete")


ROUTINE_WAIT = RoutineWait()


def configure_logging(verbose: bool = False) -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    absl = logging.getLogger("absl")  # Orbax logs through absl
    if verbose:
        absl.removeFilter(ROUTINE_WAIT)
    else:
        absl.addFilter(ROUTINE_WAIT)
    optuna = sys.modules.get("optuna")  # Optuna sets its own level when imported, so it is set again once it is here
    if optuna is not None:
        optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)

