"""SIGTERM and SIGINT (a cluster's preemption, Ctrl-C) end a run between two steps, resumably.

While a run trains (`handled()`), either signal only records itself; the loops call `check()` before
every training or evaluation step and between epochs, which raises `Interrupted` there. The partial
epoch is abandoned: the last completed epoch's checkpoint is the consistent point the run's records
already describe (metrics.jsonl holds its lines through that epoch), so the run waits for that
checkpoint to be on disk, writes result.json with status `interrupted`, says so in one line, and
train.py exits with 128 + the signal's number. Rerunning the same command (or the sweep) resumes from
that checkpoint and ends with the numbers of an uninterrupted run. A second signal ends the process at
once, as kill -9 would (the rerun still resumes from the last checkpoint).
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []  # the signal that arrived while a run was training


class Interrupted(BaseException):
    """Raised at a step boundary after SIGTERM or SIGINT. A BaseException, as KeyboardInterrupt, so no
    `except Exception` on the way (a sweep's launcher, an analysis) mistakes it for a failed trial."""

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


@contextmanager
def handled():
    """SIGTERM and SIGINT only set the flag `check` reads, for the duration; the handlers before are put
    back after. Off the main thread (where Python cannot install handlers) it changes nothing."""
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
