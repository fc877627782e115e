"""glibc's malloc policy for XLA:CPU's step temporaries (`speed.keep_freed_memory`).

XLA:CPU allocates a compiled program's temporaries with malloc at every call. glibc serves a block
above its mmap threshold with a fresh mmap and unmaps it again on free; the threshold adapts to
freed blocks but stops growing at 32 MiB. A training step whose temporaries exceed that (one
device at batch 128, H=512, hoisted projections: [T, B, 4H] buffers) faults every page in again on
every step: the memory-bound ops over those buffers ran at about 1 GB/s in a profile, and a hoisted
`np` gradient took 64 ms against 40 ms once freed memory stayed in the heap
(`python -m benchmarks.cpu_step --batch 128 [--keep-freed-memory]`). "keep" raises the mmap and
trim thresholds with mallopt(3), so the next step reuses the memory the last one freed. The process
then keeps its peak heap until it ends. Numbers do not change (an allocator setting).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("odyssey")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
POLICIES = {  # (mmap threshold, trim threshold) in bytes
    "glibc": (32 << 20, 64 << 20),  # glibc's dynamic policy at its ceiling
    "keep": (2**31 - 1, 2**31 - 1),  # never map a block of its own, never give the heap's top back
}


def glibc():
    """The C library if it is glibc (it has mallopt and gnu_get_libc_version), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version
        libc.mallopt
    except (OSError, TypeError, AttributeError):
        return None
    return libc


def set_policy(name: str, libc=None) -> bool:
    """Apply POLICIES[name]; False where the C library is not glibc or refuses it."""
    libc = libc or glibc()
    if libc is None:
        return False
    mmap, trim = POLICIES[name]
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap) and libc.mallopt(M_TRIM_THRESHOLD, trim))


def check_setting(setting) -> None:
    """Refuse a speed.keep_freed_memory that is not auto, true or false (check_config reports it)."""
    if setting not in (True, False, "auto"):
        raise ValueError(f"speed.keep_freed_memory={setting!r}; choose auto, true or false")


def keep_freed_memory(setting) -> bool:
    """speed.keep_freed_memory: auto/true keep freed memory in the heap where glibc allows it (true
    says so when it cannot); false leaves malloc as it is. Returns whether the policy is in effect."""
    check_setting(setting)
    if setting is False:
        return False
    applied = set_policy("keep")
    if not applied and setting is True:
        log.warning("speed.keep_freed_memory=true needs glibc's mallopt, which this platform lacks; malloc is unchanged")
    return applied
