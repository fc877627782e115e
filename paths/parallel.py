"""The parallel scan: a recurrence h_t = a_t ⊙ h_{t-1} + b_t whose a_t, b_t come from the inputs alone."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class Coefficients(NamedTuple):
    """A cell's linear recurrence, as the parallel scan reads it (variants/cell.py: Statement)."""

    linear: Callable  # (inner, pre) -> (a, b)
    log: Callable | None  # (inner, pre) -> (log a, log b), for b > 0: the scan in log space
    inner: Any
    blocks: int  # G: the projected input's last axis is G blocks of H
