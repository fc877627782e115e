"""SIGTERM and SIGINT (a cluster's preemption, Ctrl-C) end a run between two steps, resumably.

While a run trains (`handled()`), either signal only records itself; the loops call `check()` before
every training or evaluation step and between epochs, which raises `Interrupted` there. The partial
epoch is abandoned: the last completed epoch's checkpoint is the consistent point the run's records
already describe (metrics.jsonl holds its lines through that epoch), so the run waits for that
checkpoint to be on disk, writes result.json with status `interrupted`, says so in one line, and
train.py exits with 128 + the signal's number. Rerunning the same command (or the sweep) resumes from
that checkpoint and ends with the numbers of an uninterrupted run. A second signal ends the process at
once, as kill -9 would (the rerun still resumes from the last checkpoint).

A third signal is submitit's preemption signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL names another; Slurm
sends it before a time limit, `scancel --signal`, and submitit's local executor before its timeout).
submitit's own handler for it checkpoints the job's callable and requeues the job at once, mid-step,
leaving result.json `running` and the epoch's work in an unknown state. So while a run trains, that
signal stops it as the other two do; once its records say `interrupted`, `hand_over` gives the signal
to submitit's handler, which requeues the job (its callable reruns, and the run resumes from its
checkpoint to the numbers of an uninterrupted run).
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager


def preemption_signal() -> signal.Signals:
    """submitit's preemption and timeout signal (submitit.JobEnvironment's USR_SIG, read the same way)."""
    return signal.Signals[f"SIG{os.environ.get('SUBMITIT_PREEMPT_SIGNAL', 'USR2')}"]


SIGNALS = (signal.SIGTERM, signal.SIGINT, preemption_signal())
_received: list[int] = []  # the signal that arrived while a run was training


class Interrupted(BaseException):
    """Raised at a step boundary after SIGTERM, SIGINT or the preemption signal. A BaseException, as
    KeyboardInterrupt, so no `except Exception` on the way (a sweep's launcher, an analysis) mistakes it
    for a failed trial."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {self.name}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention for a process ended by a signal


def check() -> None:
    """Raise Interrupted once a signal has arrived (called between steps, from any thread)."""
    if _received:
        raise Interrupted(_received[0])


def scheduler_handler(stop: Interrupted):
    """The handler outside the run for the preemption signal that stopped it, when a job scheduler's
    library installed one (submitit: checkpoint, requeue, exit); None otherwise (SIGTERM and SIGINT
    included: they end the process with their exit code, and a rerun resumes)."""
    if stop.signum != preemption_signal():
        return None
    handler = signal.getsignal(stop.signum)
    return handler if callable(handler) and handler is not signal.default_int_handler else None


def hand_over(stop: Interrupted) -> None:
    """Called once the stopped run's records are written, outside `handled()`: give the signal to the
    scheduler's handler, as if Odyssey had not held it. submitit's requeues the job and exits the process
    (or raises its UncompletedJobError when it may not requeue: timed out too often). Without one, this
    returns and the caller re-raises `stop`."""
    handler = scheduler_handler(stop)
    if handler is not None:
        handler(stop.signum, None)


@contextmanager
def handled():
    """SIGTERM, SIGINT and the preemption signal only set the flag `check` reads, for the duration; the
    handlers before are put back after. Off the main thread (where Python cannot install handlers) it
    changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in SIGNALS}

    def on_signal(signum, frame):
        if _received:  # the second: give up at once, with the handlers the process had before
            for s, h in before.items():
                signal.signal(s, h)
            os.kill(os.getpid(), signum)
            return
        _received.append(signum)

    for s in SIGNALS:
        signal.signal(s, on_signal)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        _received.clear()
