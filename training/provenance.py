"""Where a number came from: the code version and the machine, for run records and benchmark headers.

A study's records must say which code made them (sweeps.report leaves out records of another commit, as it
does records with other settings), and a speed ratio depends on the CPU it was measured on (README: Measured):

On one 2-core AMD EPYC VM of this project's kind (Zen 4, AVX-512 with bf16 and VNNI) Odyssey's LSTM ran
1.10-1.13x PyTorch's nn.LSTM at row MNIST; on another (Zen 5) 0.79-0.83x, where oneDNN gained more from
the wider vector units. So every benchmark header names the model, family, vector extensions and cores.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path

# the extensions that decide which matmul kernels XLA:CPU (Eigen, YNNPACK) and oneDNN can use
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile", "asimd", "sve")


def cpu_fields(cpuinfo: str) -> dict[str, str]:
    """The first processor's fields of a /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def describe_cpu(cpuinfo: str | None = None) -> str:
    """e.g. 'AMD EPYC (family 25, model 17) · avx2 fma avx512f avx512_bf16 avx512_vnni · 2 cores'."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    f = cpu_fields(cpuinfo)
    name = f.get("model name") or platform.processor() or platform.machine()
    family = f"family {f['cpu family']}, model {f.get('model', '?')}" if "cpu family" in f else platform.machine()
    flags = set((f.get("flags") or f.get("Features") or "").split())
    vector = " ".join(x for x in VECTOR_FLAGS if x in flags) or "no vector flags listed"
    return f"{name} ({family}) · {vector} · {os.cpu_count()} cores"


REPO = Path(__file__).resolve().parent.parent


@functools.cache
def code_version() -> dict:
    """{"commit": the checkout's HEAD, "dirty": whether tracked files differ from it}; None for each when the
    code does not run from a git checkout (an installed wheel). Untracked files (run outputs) do not count."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


@functools.cache
def provenance() -> dict:
    """What a run record carries about its making: code version, host, CPU and the numerical libraries."""
    import flax
    import jax
    import optax

    from training.devices import xla_flags

    return {**code_version(), "host": platform.node(), "cpu": describe_cpu(),
            # XLA_FLAGS changes numbers: --xla_cpu_multi_thread_eigen=false (training/devices.py pins it before JAX
            # starts) picks another matmul kernel for some shapes (measured: dy[32,88] @ W[80,88].T)
            "xla_flags": xla_flags(),
            "versions": {"python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
                         "optax": optax.__version__}}
