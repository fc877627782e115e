"""Does glibc's malloc policy slow XLA:CPU's training step? An interleaved A/B in one process.

    python -m benchmarks.malloc                                  # np, row MNIST H=128 and H=512
    python -m benchmarks.malloc --cells np gru --shapes pixel --rounds 3

Why this exists (issue 17): on one XLA CPU device at batch 128, an `np` gradient with the input
projection hoisted before the scan took ~64 ms against ~36 ms in the step. A profile
(`jax.profiler`) showed the time in memory-bound ops over the [T, B, 4H] buffers (zero fills,
copies, the bias add) running at about 1 GB/s: page faults. XLA:CPU allocates a program's
temporaries with malloc; glibc serves a block above its mmap threshold with a fresh mmap and
unmaps it on free, and its dynamic threshold stops growing at 32 MiB, so a step whose temporaries
exceed that faults every page in again on every call. "keep" (training/host_memory.py, train.py's
default: speed.keep_freed_memory=auto) raises the mmap and trim thresholds with mallopt(3), so freed
memory stays in the heap for the next step.

This script times train.py's real step (each batch split over one device per core, as
benchmarks/throughput.py does) with the two policies toggled between timed runs, so load hits both
alike: "glibc" is glibc's dynamic policy at its ceiling (32 MiB mmap, 64 MiB trim thresholds),
"keep" never maps or trims. Linux with glibc only.
"""

from __future__ import annotations

import argparse
import statistics
import time

from training.devices import configure_xla_cpu
from training.host_memory import POLICIES, glibc, set_policy


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_readme.py parses every command the docs quote with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["np"])
    p.add_argument("--shapes", nargs="+", default=["row", "row512"], choices=["row", "pixel", "row512"])
    p.add_argument("--fused-gradient", nargs="+", default=["false", "true"], choices=["true", "false"])
    p.add_argument("--rounds", type=int, default=5, help="timing rounds per policy; the median counts")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default: benchmarks/throughput.py's per shape)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    configure_xla_cpu("auto")  # as train.py, before JAX starts (XLA_FLAGS set by hand win)
    from benchmarks.throughput import SHAPES, odyssey_entry  # imports JAX

    libc = glibc()
    if libc is None:
        raise SystemExit("benchmarks.malloc needs glibc (Linux): this C library has no mallopt")
    print("| shape | cell | fused gradient | glibc seq/s | keep seq/s | keep / glibc |\n|---|---|---|---:|---:|---:|")
    for shape in args.shapes:
        T, D, H, B, steps = SHAPES[shape]
        steps = args.steps or steps
        for cell in args.cells:
            for fused in args.fused_gradient:
                entry = odyssey_entry(cell, T, D, H, B, 1, "auto", "float32", fused == "true", cell)
                times = {name: [] for name in POLICIES}
                for _ in range(args.rounds):
                    for name in POLICIES:
                        set_policy(name, libc)
                        entry.run(1)  # the first step under a policy settles the heap
                        t0 = time.perf_counter()
                        entry.run(steps)
                        times[name].append(time.perf_counter() - t0)
                rate = {name: B * steps / statistics.median(t) for name, t in times.items()}
                print(f"| {shape} | {cell} | {fused} | {rate['glibc']:,.0f} | {rate['keep']:,.0f} | "
                      f"{rate['keep'] / rate['glibc']:.2f}× |", flush=True)
    set_policy("glibc", libc)


if __name__ == "__main__":
    main()
