"""Which local devices a run or a population uses, and how many CPU devices XLA makes.

A single run splits each batch over the devices its batch sizes divide evenly over
(`Placement.for_sizes`; the steps are training/split.py's). A population shards its trials' axis
over a mesh of the devices (`Placement`, axis "data"; on GPU/TPU only, see training/population.py).

On CPU the devices are a choice: XLA:CPU runs a recurrent step's many small kernels on one core
about as fast as on two (its intra-op threading costs what it gains), so Odyssey splits the machine
into one XLA CPU device per core and each batch over them (`speed.cpu_devices`, README: Measured).
"""

from __future__ import annotations

import logging
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from training.host_memory import keep_freed_memory

log = logging.getLogger("odyssey")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under taskset or a Slurm allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_device_count(setting) -> int:
    """The count `speed.cpu_devices` asks for: "auto" is one per available core (a command line's "2" is 2)."""
    if setting in (None, "auto"):
        return available_cores()
    if isinstance(setting, str) and setting.isdigit():
        setting = int(setting)
    if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
        return setting
    raise ValueError(f"speed.cpu_devices={setting!r}; choose auto (one per core) or a whole number >= 1")


def configure_cpu_devices(setting) -> int:
    """Give XLA:CPU `setting` devices ("auto": one per available core) and return the count in effect.

    Must run before JAX starts its backends; a process whose backends already run keeps its count
    (a warning says so when it differs), since the count is fixed for the life of a process.
    """
    wanted = cpu_device_count(setting)
    try:
        jax.config.update("jax_num_cpu_devices", wanted)
    except RuntimeError:
        current = jax.device_count("cpu")
        if current != wanted:
            log.warning("JAX already started with %d CPU device(s) in this process; speed.cpu_devices=%s "
                        "takes effect in a new process", current, setting)
        return current
    return wanted


# XLA:CPU picks another matmul kernel for some shapes when Eigen may use threads, and with it another order of
# float sums (measured: dy[32,88] @ W[80,88].T in a JSB trial, 2169 of 2560 elements differ; tests/test_population.py).
SINGLE_THREADED_EIGEN = "--xla_cpu_multi_thread_eigen=false"


_flags_at_start: str | None = None  # XLA_FLAGS as this process's backends read them, once pinned before they started


def pin_matmul_kernels() -> None:
    """Give the process Eigen's single-threaded matmuls, unless XLA_FLAGS already says which, so that a lone
    `train.py`, a sweep's trial and a population's trial compute the same numbers (they did not while only the
    launchers set the flag). train.py, the launchers' jobs, `python -m training.evaluate` and the benchmarks call
    it before JAX starts; a script of one's own that calls `training.train` should too. It costs nothing
    measurable (sweeps/README.md): Odyssey spreads work over one XLA CPU device per core, or one trial per core,
    not over Eigen's threads. XLA reads the flags once, when its backends start: a process whose backends
    already run keeps what it started with (a warning says so where that lacks the flag), and `xla_flags()`
    names what they read."""
    from jax._src import xla_bridge

    global _flags_at_start
    flags = os.environ.get("XLA_FLAGS", "")
    if xla_bridge.backends_are_initialized():
        if _flags_at_start is None and "xla_cpu_multi_thread_eigen" not in flags:
            log.warning("JAX started before Odyssey could pin XLA:CPU's matmul kernels (%s); this process's "
                        "numbers may differ from train.py's in the last float bits", SINGLE_THREADED_EIGEN)
        return
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = flags = f"{flags} {SINGLE_THREADED_EIGEN}".strip()
    _flags_at_start = flags


def xla_flags() -> str | None:
    """XLA_FLAGS as this process's backends read them: as pinned before they started, else the environment's.
    (A launcher may restore the environment between the trials one process runs: Hydra's env_set does.)"""
    return _flags_at_start if _flags_at_start is not None else os.environ.get("XLA_FLAGS")


def configure_xla_cpu(cpu_devices) -> int:
    """Before JAX starts: XLA:CPU's matmul kernels (pin_matmul_kernels) and its device count (configure_cpu_devices),
    as every run has them; the benchmarks call this where they set malloc's policy themselves. Returns the count."""
    pin_matmul_kernels()
    return configure_cpu_devices(cpu_devices)


def configure_host(speed) -> int:
    """Before JAX starts: XLA:CPU as configure_xla_cpu (speed.cpu_devices) and malloc's policy
    (speed.keep_freed_memory, training/host_memory.py). Returns the CPU device count in effect."""
    keep_freed_memory(speed.keep_freed_memory)
    return configure_xla_cpu(speed.cpu_devices)


class Placement:
    def __init__(self, devices=None):
        self.devices = list(devices or jax.devices())
        self.mesh = Mesh(np.array(self.devices), ("data",))
        self.split = NamedSharding(self.mesh, P("data"))  # leading axis across devices
        self.whole = NamedSharding(self.mesh, P())  # a full copy on every device

    @property
    def count(self) -> int:
        return len(self.devices)

    @classmethod
    def for_sizes(cls, *sizes: int, what: str = "batch sizes", devices=None, platform: str | None = None) -> "Placement":
        """The most devices (a prefix of `devices`, default the platform's) over which every size splits evenly."""
        devices = list(devices or (jax.devices(platform) if platform else jax.devices()))
        count = max(d for d in range(1, len(devices) + 1) if all(s % d == 0 for s in sizes))
        if count < len(devices):
            log.warning("%s %s split evenly over %d of the %d %s devices; using %d (a multiple of %d uses them all)",
                        what, "/".join(map(str, sizes)), count, len(devices), devices[0].platform, count, len(devices))
        return cls(devices[:count])

    def shard(self, tree):
        """Split the leading axis of every array across the devices."""
        return tree if self.count == 1 else jax.device_put(tree, self.split)

    def replicate(self, tree):
        return tree if self.count == 1 else jax.device_put(tree, self.whole)
