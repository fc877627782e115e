"""Where an LSTM training step's time goes on XLA:CPU (issue 17): matmul shapes and scan paths.

    python -m benchmarks.cpu_step                  # batch 64 (one of two CPU devices' share of 128), H=128
    python -m benchmarks.cpu_step --batch 128      # a whole batch on one device
    python -m benchmarks.cpu_step --batch 128 --keep-freed-memory   # glibc keeps freed memory (benchmarks/malloc.py)
    python -m benchmarks.cpu_step --only loop recurrence --length 784   # the loop's own cost, the parallel scan, T=784

Two tables, on one XLA CPU device (train.py splits a batch over one device per core; each device then
runs this):
  1. the recurrent matmul [B, H] × [H, 4H] of T=28 time steps, run as 28 matmuls inside a scan (what the
     recurrence must do) and as one [28·B, H] matmul (what a hoisted projection or a weight gradient
     after the loop does), and the weight gradient Σ_t y_tᵀ·d_t accumulated in a scan or as one matmul;
  2. the gradient of `np` on row MNIST (T=28, D=28) with the projection inside the step (the CPU
     default), hoisted before the scan, and with paths/fused.py's hand-written gradient;
  3. where an LSTM step's time goes over `--length` steps (issue 28: XLA:CPU trails oneDNN at T=784): the
     while loop with a body that does next to nothing, the recurrent matmul alone, the gate math alone, and
     both (an LSTM step), forward and gradient, against np as train.py's model runs it on one input feature
     (pixel MNIST), per time step;
  4. the linear recurrence h_t = a_t ⊙ h_{t-1} + b_t alone (minGRU's and minLSTM's, issue 30), over
     `--length` steps: lax.scan against paths/parallel.py's jax.lax.associative_scan, forward and gradient.
Median of `--rounds` interleaved rounds of `--reps` calls.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from training.devices import pin_matmul_kernels
from training.host_memory import set_policy
from training.model import SequenceModel
from training.provenance import describe_cpu

T, D = 28, 28
TABLES = ["matmul", "paths", "loop", "recurrence"]


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


def loop_cost(B: int, H: int, length: int, rounds: int, reps: int) -> None:
    """An LSTM step's parts, each alone in a `length`-step scan (plain JAX), against np as train.py runs it."""
    k1, k2 = jax.random.split(jax.random.key(0))
    R, xs = jax.random.normal(k1, (H, 4 * H)) * 0.05, jax.random.normal(k2, (length, B, 4 * H)) * 0.1

    def gates(c, z):  # the gate math of an LSTM without peepholes (np), on the [B, 4H] pre-activations
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return c, jax.nn.sigmoid(o) * jnp.tanh(c)

    bodies = {"minimal body (h·0.5 + x_t)": lambda ch, x: (ch[0], ch[1] * 0.5 + x[:, :H]),
              "the recurrent matmul alone": lambda ch, x: (ch[0], (ch[1] @ R)[:, :H] + x[:, :H]),
              "the gate math alone": lambda ch, x: gates(ch[0], x + jnp.tile(ch[1], 4)),
              "matmul and gate math (an LSTM step)": lambda ch, x: gates(ch[0], ch[1] @ R + x)}

    def scanned(body):
        return lambda R_, xs: jnp.sum(jax.lax.scan(lambda ch, x: (body(ch, x), None),
                                                   (jnp.zeros((B, H)), jnp.zeros((B, H))), xs)[0][1])

    x = jnp.asarray(np.random.default_rng(0).random((B, length, 1)), jnp.float32)
    model = SequenceModel(cell="np", hidden=H, output_size=10)
    params = model.init(jax.random.key(0), x)
    np_loss = lambda p: jnp.sum(model.apply(p, x) ** 2)  # noqa: E731
    fns = {}
    for name, body in bodies.items():
        fns[f"{name}, forward"] = (jax.jit(scanned(body)), (R, xs))
        fns[f"{name}, gradient"] = (jax.jit(jax.grad(scanned(body), argnums=(0, 1))), (R, xs))
    fns.update({"np in train.py's model (one input feature), forward": (jax.jit(np_loss), (params,)),
                "np in train.py's model (one input feature), gradient": (jax.jit(jax.grad(np_loss)), (params,))})
    ms = timed({name: (lambda f=f, a=a: f(*a)) for name, (f, a) in fns.items()}, rounds, reps)
    print(f"\n| {length} steps, B={B}, H={H} | ms | µs per step | share of np's |\n|---|---:|---:|---:|")
    for name, t in ms.items():
        of_np = ms[f"np in train.py's model (one input feature), {name.rsplit(', ', 1)[1]}"]
        print(f"| {name} | {t:.2f} | {t * 1e3 / length:.1f} | {t / of_np:.1%} |")


def recurrence(B: int, H: int, length: int, rounds: int, reps: int) -> None:
    from paths.parallel import _compose

    k1, k2 = jax.random.split(jax.random.key(0))
    a, b = jax.nn.sigmoid(jax.random.normal(k1, (length, B, H))), jax.random.normal(k2, (length, B, H))

    def sequential(a, b):
        return jax.lax.scan(lambda h, ab: (ab[0] * h + ab[1],) * 2, jnp.zeros((B, H)), (a, b))[1]

    def parallel(a, b):
        return jax.lax.associative_scan(_compose, (a, b), axis=0)[1]

    fns = {}
    for name, f in (("lax.scan", sequential), ("associative_scan", parallel)):
        fns[f"{name}, forward"] = jax.jit(f)
        fns[f"{name}, gradient"] = jax.jit(jax.grad(lambda a, b, f=f: jnp.sum(jnp.sin(f(a, b))), argnums=(0, 1)))
    ms = timed({name: (lambda f=f: f(a, b)) for name, f in fns.items()}, rounds, reps)
    print(f"\n| h = a ⊙ h + b, {length} steps, B={B}, H={H} | ms | × lax.scan's |\n|---|---:|---:|")
    for name, t in ms.items():
        print(f"| {name} | {t:.2f} | {t / ms['lax.scan, ' + name.split(', ')[1]]:.2f} |")


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_readme.py parses every command the docs quote with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64, help="sequences on the device (train.py: 128 split over 2 cores)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--length", type=int, default=784, help="time steps of the loop-cost table (pixel MNIST: 784)")
    p.add_argument("--only", choices=TABLES, nargs="+", default=TABLES, help="which tables to print (default: all)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="keep freed memory in the heap, as train.py does (training/host_memory.py); default: glibc's policy")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    pin_matmul_kernels()  # as train.py: XLA:CPU's matmul kernels (XLA_FLAGS set by hand win)
    if args.keep_freed_memory:
        set_policy("keep")
    dev = jax.devices()[0]
    print(f"# {dev.platform} ({dev.device_kind}), {describe_cpu()}, jax {jax.__version__}, one device; "
          f"median of {args.rounds} rounds{'; glibc keeps freed memory' if args.keep_freed_memory else ''}\n")
    if "matmul" in args.only:
        matmul_shapes(args.batch, args.hidden, args.rounds, args.reps)
    if "paths" in args.only:
        scan_paths(args.batch, args.hidden, args.rounds, args.reps)
    if "loop" in args.only:
        loop_cost(args.batch, args.hidden, args.length, args.rounds, args.reps)
    if "recurrence" in args.only:
        recurrence(args.batch, args.hidden, args.length, args.rounds, args.reps)


if __name__ == "__main__":
    main()
