"""Quiet logs by default: Odyssey's own lines, and every warning or error from anyone; `verbose=true`
brings back the libraries' INFO chatter (JAX's backend probes, Orbax, wandb's banners)."""

from __future__ import annotations

import logging
import os
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


class OrbaxErrors(logging.Filter):
    """Orbax's own reports of a failed background save (a full disk): each of its threads logs the error with a
    traceback, pages of them, while the same error reaches the run at its next save or at its end, and the
    run says it in one line (training/run.py: mark_failed). Shown with verbose=true."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname)


ORBAX_ERRORS = OrbaxErrors()


class OrbaxTasks(logging.Filter):
    """asyncio's "Task exception was never retrieved" for the tasks of a failed Orbax save, one per array."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.getMessage())


ORBAX_TASKS = OrbaxTasks()


def _quiet_unraisable(unraisable) -> None:
    """After a failed Orbax save, TensorStore's callbacks reach an event loop Orbax has closed; Python reports
    each as unraisable ("RuntimeError: Event loop is closed"), with nothing left to do about it."""
    if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
        return
    sys.__unraisablehook__(unraisable)


def configure_logging(verbose: bool = False) -> None:
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    absl = logging.getLogger("absl")  # Orbax logs through absl
    for logger, quieted in ((absl, ROUTINE_WAIT), (absl, ORBAX_ERRORS), (logging.getLogger("asyncio"), ORBAX_TASKS)):
        if verbose:
            logger.removeFilter(quieted)
        else:
            logger.addFilter(quieted)
    sys.unraisablehook = sys.__unraisablehook__ if verbose else _quiet_unraisable
    optuna = sys.modules.get("optuna")  # Optuna sets its own level when imported, so it is set again once it is here
    if optuna is not None:
        optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)


def quiet_handler_errors() -> None:
    """A handler that cannot write (train.log, wandb's debug.log on a full disk) says so once, in one line,
    instead of logging's "--- Logging error ---" and a traceback for every line it loses."""
    told: set[int] = set()

    def handle_error(handler: logging.Handler, record: logging.LogRecord) -> None:
        if id(handler) in told or not logging.raiseExceptions:
            return
        told.add(id(handler))
        error = sys.exc_info()[1]
        where = getattr(handler, "baseFilename", type(handler).__name__)
        sys.stderr.write(f"{where}: cannot write log lines ({type(error).__name__}: {error}); "
                         "lines meant for it are lost from here on\n")

    logging.Handler.handleError = handle_error


def plural(n: int, word: str) -> str:
    """'1 epoch', '2 epochs', '0 trials': a count in a log line."""
    return f"{n} {word}{'' if n == 1 else 's'}"
