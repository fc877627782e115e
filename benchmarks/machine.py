"""The CPU a benchmark ran on, in one line: a speed ratio against PyTorch depends on it (README: Measured).

On one 2-core AMD EPYC VM of this project's kind (Zen 4, AVX-512 with bf16 and VNNI) Odyssey's LSTM ran
1.10-1.13x PyTorch's nn.LSTM at row MNIST; on another (Zen 5) 0.79-0.83x, where oneDNN gained more from
the wider vector units. So every benchmark header names the model, family, vector extensions and cores.
"""

from __future__ import annotations

import os
import platform
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
