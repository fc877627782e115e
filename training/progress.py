"""Progress within an epoch: tqdm's bar on a terminal; elsewhere (a pipe, a Slurm log, a sweep's workers)
a line every `progress_seconds`, so a log shows a long epoch moving rather than minutes of nothing. A bar
in a file would be thousands of carriage returns, and nothing at all is what a log showed before.

Only what the loop already has is read: the step count, the clock, and the running loss sums the caller
passes when it has them, so the numbers trained are the same whether lines are written or not."""

from __future__ import annotations

import logging
import math
import time

from tqdm import tqdm

log = logging.getLogger("odyssey")


class EpochProgress:
    """`update()` once per step; `close()` at the epoch's end. `every`: seconds between lines when no bar is
    shown (None or 0: no lines); `prefix`: the trial's or population's name, as its other lines carry."""

    def __init__(self, total: int, desc: str, every: float | None, prefix: str = ""):
        self.bar = tqdm(total=total, desc=desc, leave=False, disable=None)  # None: shown on a terminal only
        self.total, self.desc, self.prefix = total, desc, prefix
        self.every = every if (self.bar.disable and every) else None
        self.start = self.last = time.monotonic()
        self.first = None  # when the first step ended: it compiles the program, so the rate is of the steps after it
        self.done = 0

    def update(self, loss=None) -> None:
        """One step done. loss: a callable giving the running training loss (read only when a line is due)."""
        self.done += 1
        self.bar.update(1)
        now = time.monotonic()
        if self.first is None:
            self.first = now
        if self.every is not None and now - self.last >= self.every and self.done < self.total:
            self.last = now
            log.info("%s", self.line(now, loss() if loss is not None else None))

    def line(self, now: float, loss: float | None) -> str:
        """'epoch 3/20: step 120/390 (30%), 4.0 steps/s, about 68s left, loss 0.4321'"""
        text = f"{self.prefix}{self.desc}: step {self.done}/{self.total} ({100 * self.done // self.total}%)"
        if self.done > 1:
            rate = (self.done - 1) / max(now - self.first, 1e-9)
            pace = f"{rate:.1f} steps/s" if rate >= 1 else f"{1 / rate:.1f}s per step"  # not '0.0 steps/s' (recompiles)
            text += f", {pace}, about {(self.total - self.done) / rate:.0f}s left"
        else:
            text += f", its first step took {now - self.start:.0f}s (compiling)"
        return text + (f", loss {loss:.4f}" if loss is not None and math.isfinite(loss) else "")

    def set_loss(self, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}")

    def close(self) -> None:
        self.bar.close()
