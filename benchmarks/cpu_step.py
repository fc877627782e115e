"""Where an LSTM training step's time goes on XLA:CPU (issue 17): matmul shapes and scan paths.

    python -m benchmarks.cpu_step                  # batch 64 (one of two CPU devices' share of 128), H=128
    python -m benchmarks.cpu_step --batch 128      # a whole batch on one device
    python -m benchmarks.cpu_step --batch 128 --keep-freed-memory   # glibc keeps freed memory (benchmarks/malloc.py)

Two tables, on one XLA CPU device (train.py splits a batch over one device per core; each device then
runs this):
  1. the recurrent matmul [B, H] × [H, 4H] of T=28 time steps, run as 28 matmuls inside a scan (what the
     recurrence must do) and as one [28·B, H] matmul (what a hoisted projection or a weight gradient
     after the loop does), and the weight gradient Σ_t y_tᵀ·d_t accumulated in a scan or as one matmul;
  2. the gradient of `np` on row MNIST (T=28, D=28) with the projection inside the step (the CPU
     default), hoisted before the scan, and with paths/fused.py's hand-written gradient.
Median of `--rounds` interleaved rounds of `--reps` calls.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from training.host_memory import set_policy
from training.model import SequenceModel

T, D = 28, 28


def timed(fns: dict, rounds: int, reps: int) -> dict:
    """Median milliseconds per call of each jitted fn(), rounds interleaved so load hits all alike."""
    for f in fns.values():
        jax.block_until_ready(f())
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                out = f()
            jax.block_until_ready(out)
            times[k].append((time.perf_counter() - t0) / reps * 1e3)
    return {k: float(np.median(v)) for k, v in times.items()}


def matmul_shapes(B: int, H: int, rounds: int, reps: int) -> None:
    k = jax.random.key(0)
    y, R, d = jax.random.normal(k, (T, B, H)), jax.random.normal(k, (H, 4 * H)), jax.random.normal(k, (T, B, 4 * H))
    per_step = jax.jit(lambda y, R: jax.lax.scan(lambda c, yt: (c, yt @ R), 0.0, y)[1])
    at_once = jax.jit(lambda y, R: y.reshape(-1, H) @ R)
    grad_loop = jax.jit(lambda y, d: jax.lax.scan(lambda c, a: (c + a[0].T @ a[1], None), jnp.zeros((H, 4 * H)), (y, d))[0])
    grad_once = jax.jit(lambda y, d: y.reshape(-1, H).T @ d.reshape(-1, 4 * H))
    ms = timed({f"{T} matmuls [{B}, {H}] × [{H}, {4 * H}] in a scan": lambda: per_step(y, R),
                f"one matmul [{T * B}, {H}] × [{H}, {4 * H}]": lambda: at_once(y, R),
                "Σ_t y_tᵀ·d_t accumulated in a scan": lambda: grad_loop(y, d),
                "Σ_t y_tᵀ·d_t as one matmul": lambda: grad_once(y, d)}, rounds, reps)
    gflop = 2 * T * B * H * 4 * H / 1e9
    print(f"| matmul (B={B}, H={H}) | ms | GFLOP/s |\n|---|---:|---:|")
    for name, t in ms.items():
        print(f"| {name} | {t:.2f} | {gflop / t * 1e3:.0f} |")


def scan_paths(B: int, H: int, rounds: int, reps: int) -> None:
    x = jnp.asarray(np.random.default_rng(0).random((B, T, D)), jnp.float32)

    def gradient(**speed):
        model = SequenceModel(cell="np", hidden=H, output_size=10, **speed)
        params = model.init(jax.random.key(0), x)
        g = jax.jit(jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2)))
        return lambda: g(params)

    ms = timed({"projection in the step (CPU default)": gradient(),
                "projection hoisted before the scan": gradient(hoist_projection=True),
                "hand-written gradient (speed.fused_gradient)": gradient(fused_gradient=True)}, rounds, reps)
    print(f"\n| gradient of np, row MNIST (B={B}, H={H}) | ms |\n|---|---:|")
    for name, t in ms.items():
        print(f"| {name} | {t:.2f} |")


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_readme.py parses every command the docs quote with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="sequences on the device (train.py: 128 split over 2 cores)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="keep freed memory in the heap, as train.py does (training/host_memory.py); default: glibc's policy")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.keep_freed_memory:
        set_policy("keep")
    dev = jax.devices()[0]
    print(f"# {dev.platform} ({dev.device_kind}), jax {jax.__version__}, one device; median of {args.rounds} rounds"
          f"{'; glibc keeps freed memory' if args.keep_freed_memory else ''}\n")
    matmul_shapes(args.batch, args.hidden, args.rounds, args.reps)
    scan_paths(args.batch, args.hidden, args.rounds, args.reps)


if __name__ == "__main__":
    main()
