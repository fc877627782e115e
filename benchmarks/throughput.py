"""Training throughput of Odyssey's cells against PyTorch's and Flax's own recurrent layers.

    python -m benchmarks.throughput                    # all cells, row MNIST H=128, pixel MNIST, row MNIST H=512
    python -m benchmarks.throughput --quick            # np, gru, srn on row MNIST only, few steps
    python -m benchmarks.throughput --cells np gru --shapes row --steps 30 --rounds 5
    XLA_FLAGS=--xla_cpu_multi_thread_eigen=true python -m benchmarks.throughput --quick   # try a flag

What is timed is one training step (forward + backward + Adam update) after compilation; the
compile time is reported separately. Odyssey runs its real step (training.split.Steps on
training.model.SequenceModel, Adam from training.optim, loss and metrics from tasks.mnist.MNISTTask),
with the `speed` settings the config would pick (`--unroll`, `--hoist`, `--dtype`, `--fused-gradient` override
them; several `--unroll` / `--fused-gradient` values compare the paths in one interleaved run).
Inputs are random arrays of the task's shape: throughput does not depend on the pixel values.

On CPU, Odyssey splits each batch over one XLA CPU device per core (`--cpu-devices`, train.py's
`speed.cpu_devices`); Flax's peers run as a Flax user runs them, on one device, and with
`--split-peers` also split the same way (the split is plain JAX: any JAX model can adopt it).

Peers, trained the same way (a recurrent layer, a dense head on the last output, softmax
cross-entropy, Adam), in the same run so that ratios survive a noisy shared machine:
  - PyTorch nn.RNN(tanh) / nn.LSTM / nn.GRU (oneDNN on CPU with denormals flushed, cuDNN on GPU;
    skipped with a note when torch is not installed: `pip install -e .[bench]`);
  - Flax nn.RNN over nn.SimpleCell / nn.OptimizedLSTMCell / nn.GRUCell.
Each peer is the closest cell: srn ↔ Elman tanh RNN, gru ↔ GRU (PyTorch and Flax use the
reset-after form, Odyssey Keras' reset-before one: same matmul count per step), every LSTM variant ↔
LSTM (PyTorch's and Flax's LSTM is Greff's NP; V, CIFG and FGR do more or less work than it).

Timing interleaves the frameworks: each round times every entry of a shape for `--steps` steps,
and the table reports the median over `--rounds` rounds.

GFLOP/s counts only the recurrent network's matmuls, which dominate: forward per sequence and step
2·(D + H)·G·H for G fused blocks (G = 1 SRN, 3 GRU, 4 LSTM, 3 CIFG; FGR adds 2·(n·H)² for its n
gates' gate-to-gate recurrence), and training ≈ 3× forward (the backward pass does two matmuls of the
forward one's size per matmul: gradients of inputs and of weights). "% peak" divides that by the
GFLOP/s of a jitted 2048×2048 float32 matmul measured at start-up.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform
import statistics
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tasks import task_from_conf
from training import speed_rules
from training.config import compose_conf
from training.provenance import describe_cpu
from training.devices import Placement, configure_xla_cpu
from training.host_memory import keep_freed_memory
from training.model import SequenceModel
from training.optim import make_optimizer
from training.split import make_steps

SHAPES = {  # name: (T, D, H, B, default timed steps per round)
    "row": (28, 28, 128, 128, 30),
    "pixel": (784, 1, 128, 128, 3),
    "row512": (28, 28, 512, 128, 10),
}
CELLS = ("srn", "np", "v", "gru", "cifg", "fgr")
PEER = {"srn": "rnn", "gru": "gru"}  # every other (LSTM) cell's peer is the LSTM
BLOCKS = {"srn": 1, "gru": 3, "np": 4, "v": 4, "cifg": 3, "fgr": 4, "rnn": 1, "lstm": 4}
FGR_GATES = 3


@dataclass
class Entry:
    label: str
    run: Callable[[int], None]  # run(n): n training steps, blocking until done
    compile_s: float
    flops_per_seq: float
    times: list


def train_flops_per_seq(cell: str, T: int, D: int, H: int) -> float:
    """Matmul FLOPs of forward + backward for one sequence (see the module docstring)."""
    G = BLOCKS[cell]
    forward = 2 * (D + H) * G * H
    if cell == "fgr":
        forward += 2 * (FGR_GATES * H) ** 2
    return 3.0 * forward * T


def random_batch(T: int, D: int, B: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.random((B, T, D), np.float32), "y": rng.integers(0, 10, B).astype(np.int32),
            "lengths": np.full(B, T, np.int32), "mask": np.ones(B, np.float32)}


def timed_loop(step, state, args) -> tuple[Callable[[int], None], float]:
    """Compile `step` for these arguments; returns (run(n), compile seconds)."""
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=0).lower(state, *args).compile()
    compile_s = time.perf_counter() - t0
    holder = [state]

    def run(n):
        s = holder[0]
        for _ in range(n):
            s, metrics = compiled(s, *args)
        jax.block_until_ready(s)
        holder[0] = s

    run(1)  # warm-up
    return run, compile_s


def steps_loop(model, tx, T, D, B) -> tuple[Callable[[int], None], float]:
    """train.py's own steps (training.split.Steps: each batch split over the devices the batch size
    divides over); returns (run(n), seconds of the first step, which compiles)."""
    steps = make_steps(model, task_from_conf("mnist"), tx, Placement.for_sizes(B).devices)
    params = model.init(jax.random.key(0), jnp.zeros((1, T, D)))
    holder = [steps.place({"params": params, "opt_state": tx.init(params)})]
    args = (random_batch(T, D, B), jax.random.key(1), np.float32(0.0))

    def run(n):
        s = holder[0]
        for _ in range(n):
            s, metrics = steps.train(s, *args, padded=False)  # is_padded(batch) is False
        jax.block_until_ready(s)
        holder[0] = s

    t0 = time.perf_counter()
    run(1)
    compile_s = time.perf_counter() - t0
    run(1)  # warm-up
    return run, compile_s


def odyssey_entry(cell, T, D, H, B, unroll, hoist, dtype, fused, label, kernel=False, parallel="auto") -> Entry:
    """Odyssey's real training step, its batch split over the devices as train.py splits it; "auto" settings
    resolve as train.py resolves them (training/speed_rules.py)."""
    speed = SimpleNamespace(unroll=unroll, hoist_projection=hoist, fused_gradient=fused, kernel=kernel, parallel_scan=parallel)
    model = SequenceModel(cell=cell, hidden=H, output_size=10, readout="last",
                          **speed_rules.chosen(speed, jax.default_backend(), cell, H),
                          dtype=None if dtype == "float32" else jnp.dtype(dtype))
    cfg = compose_conf("optimizer=adam")  # the optimizer and learning rate train.py passes, from conf/
    run, compile_s = steps_loop(model, make_optimizer(cfg.optimizer, cfg.lr), T, D, B)
    return Entry(label, run, compile_s, odyssey_flops_per_seq(model.make_cell(), T, D), [])


def odyssey_flops_per_seq(cell, T: int, D: int) -> float:
    """Matmul FLOPs of forward + backward for one sequence: 3 × 2 × every weight matrix's size, per step."""
    shapes = jax.eval_shape(cell.init, jax.random.key(0), cell.initialize_carry((1,)), jnp.zeros((1, D)))
    return 3.0 * 2 * sum(p.size for p in jax.tree.leaves(shapes) if p.ndim == 2) * T


class FlaxPeer(nn.Module):
    kind: str
    hidden: int

    @nn.compact
    def __call__(self, x, lengths=None, train=False):  # Odyssey's model signature; every sequence is whole
        cell = {"rnn": nn.SimpleCell, "lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell}[self.kind](self.hidden)
        ys = nn.RNN(cell)(x)
        return nn.Dense(10)(ys[:, -1])


def flax_entry(kind, T, D, H, B, split: bool) -> Entry:
    """Flax's nn.RNN as a Flax user trains it on one device; with `split`, inside Odyssey's own training
    step, its batch split over the devices exactly as Odyssey's is (only the recurrent layer differs)."""
    model = FlaxPeer(kind, H)
    tx = optax.adam(1e-3)
    if split:
        run, compile_s = steps_loop(model, tx, T, D, B)
    else:
        params = model.init(jax.random.key(0), jnp.zeros((1, T, D)))
        state = jax.device_put({"params": params, "opt_state": tx.init(params)}, jax.devices()[0])

        def step(state, x, y):
            def loss(p):
                return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
            grads = jax.grad(loss)(state["params"])
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, None

        b = random_batch(T, D, B)
        run, compile_s = timed_loop(step, state, (jnp.asarray(b["x"]), jnp.asarray(b["y"])))
    return Entry(f"flax {kind}" + (" (split)" if split else ""), run, compile_s, train_flops_per_seq(kind, T, D, H), [])


def torch_entry(kind, T, D, H, B, device):
    import torch

    torch.manual_seed(0)
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](D, H, batch_first=True).to(device)
    head = torch.nn.Linear(H, 10).to(device)
    params = list(layer.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    b = random_batch(T, D, B)
    x, y = torch.from_numpy(b["x"]).to(device), torch.from_numpy(b["y"]).long().to(device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            ys, _ = layer(x)
            loss_fn(head(ys[:, -1]), y).backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    run(1)  # first step: oneDNN/cuDNN set-up, PyTorch's analogue of compilation
    return Entry(f"torch {kind}", run, time.perf_counter() - t0, train_flops_per_seq(kind, T, D, H), [])


def torch_device() -> tuple[str | None, str]:
    """PyTorch's device for the peers and a note: CPU unless JAX runs on a GPU; None when not usable."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch not installed (pip install -e .[bench]); its peers are skipped"
    if jax.default_backend() == "gpu":
        if not torch.cuda.is_available():
            return None, f"torch {torch.__version__} has no CUDA here; its peers are skipped on this GPU run"
        return "cuda", f"torch {torch.__version__} cuDNN {torch.backends.cudnn.version()}"
    torch.set_flush_denormal(True)  # without it, T=784 runs ~9x slower on CPU (denormal hidden states)
    return "cpu", f"torch {torch.__version__} CPU ({torch.get_num_threads()} threads), denormals flushed"


def matmul_peak_gflops(n: int = 2048, reps: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a).lower(a).compile()
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            out = f(a)
        out.block_until_ready()
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2 * n ** 3 / best / 1e9


def bench_shape(shape, cells, args, tdev, peak) -> list[str]:
    T, D, H, B, default_steps = SHAPES[shape]
    steps = args.steps or default_steps
    entries: dict[str, Entry] = {}
    for cell in cells:
        for unroll in args.unroll:
            for fused, kernel, parallel in itertools.product(args.fused_gradient, args.kernel, args.parallel_scan):
                label = (f"odyssey {cell}" + (f" unroll={unroll}" if len(args.unroll) > 1 else "")
                         + (f" fused={fused}" if len(args.fused_gradient) > 1 else "")
                         + (f" kernel={kernel}" if len(args.kernel) > 1 else "")
                         + (f" parallel={parallel}" if len(args.parallel_scan) > 1 else ""))
                entries[label] = odyssey_entry(cell, T, D, H, B, unroll, args.hoist, args.dtype, fused, label, kernel, parallel)
    peers = sorted({PEER.get(c, "lstm") for c in cells})
    for kind in peers:
        if not args.no_flax:
            entries[f"flax {kind}"] = flax_entry(kind, T, D, H, B, split=False)
            if args.split_peers:
                entries[f"flax {kind} (split)"] = flax_entry(kind, T, D, H, B, split=True)
        if tdev and not args.no_torch:
            entries[f"torch {kind}"] = torch_entry(kind, T, D, H, B, tdev)
    for _ in range(args.rounds):  # interleaved, so load changes hit every entry alike
        for e in entries.values():
            t0 = time.perf_counter()
            e.run(steps)
            e.times.append(time.perf_counter() - t0)
    rate = {k: B * steps / statistics.median(e.times) for k, e in entries.items()}

    def ratio(k, peer):
        return f"{rate[k] / rate[peer]:.2f}×" if peer in rate else "–"

    rows = []
    for k, e in entries.items():
        peer = PEER.get(k.split()[1], "lstm") if k.startswith("odyssey") else k.split()[1]
        gflops = e.flops_per_seq * rate[k] / 1e9
        rows.append(f"| {shape} T={T} D={D} H={H} | {k} | {rate[k]:,.0f} | {ratio(k, f'torch {peer}')} | "
                    f"{ratio(k, f'flax {peer}')} | {ratio(k, f'flax {peer} (split)')} | {gflops:.1f} | {100 * gflops / peak:.0f}% | {e.compile_s:.1f} |")
    return rows


SETTING = {"auto": "auto", "true": True, "false": False}


def unroll_setting(text: str):
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: give auto or a whole number >= 1")


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_readme.py parses every command the docs quote with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=list(CELLS), help=f"Odyssey cells (default: {' '.join(CELLS)})")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--steps", type=int, default=None, help="timed steps per entry and round (default: per shape)")
    p.add_argument("--rounds", type=int, default=3, help="timing rounds; the table shows the median")
    p.add_argument("--unroll", type=unroll_setting, nargs="+", default=["auto"], help="speed.unroll: auto (conf/config.yaml's "
                   "default, training/speed_rules.py) or a whole number; several values time each cell with each")
    p.add_argument("--hoist", default="auto", help="speed.hoist_projection: true, false or auto")
    p.add_argument("--fused-gradient", nargs="+", default=["auto"], choices=["auto", "true", "false"],
                   help="speed.fused_gradient (paths/fused.py); several values time each cell with each")
    p.add_argument("--parallel-scan", nargs="+", default=["auto"], choices=["auto", "true", "false"],
                   help="speed.parallel_scan (paths/parallel.py, for minGRU and minLSTM); several values time each")
    p.add_argument("--kernel", nargs="+", default=["auto"], choices=["auto", "true", "false"],
                   help="speed.kernel (paths/kernel.py, the time loop in one Pallas kernel: for GPUs; off GPU it "
                        "runs in Pallas' interpreter); several values time each cell with each")
    p.add_argument("--dtype", default="float32", help="speed.dtype, e.g. bfloat16")
    p.add_argument("--cpu-devices", default="auto", help="speed.cpu_devices: XLA CPU devices a batch is split over "
                   "(auto: one per core, train.py's default)")
    p.add_argument("--split-peers", action="store_true", help="also time Flax's peers split over the devices as Odyssey is")
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-flax", action="store_true")
    p.add_argument("--quick", action="store_true", help="np gru srn on row MNIST, 10 steps, 3 rounds")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.quick:
        args.cells, args.shapes, args.steps = ["np", "gru", "srn"], ["row"], args.steps or 10
    args.hoist = args.hoist if args.hoist == "auto" else args.hoist.lower() in ("1", "true", "yes")
    args.fused_gradient = [SETTING[v] for v in args.fused_gradient]
    args.kernel = [SETTING[v] for v in args.kernel]
    args.parallel_scan = [SETTING[v] for v in args.parallel_scan]

    cpu_devices = configure_xla_cpu(args.cpu_devices)  # as train.py, before JAX starts (XLA_FLAGS set by hand win)
    keep_freed_memory("auto")  # train.py's default (speed.keep_freed_memory); the peers share the process
    if args.torch_threads and not args.no_torch:
        import torch
        torch.set_num_threads(args.torch_threads)
    tdev, tnote = torch_device()
    peak = matmul_peak_gflops()
    dev = jax.devices()[0]
    print(f"{datetime.date.today()} · {platform.node()} · {describe_cpu()} · JAX {jax.__version__} on "
          f"{dev.platform} ({dev.device_kind}) · {tnote} · XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"speed: unroll={args.unroll} hoist={args.hoist} fused_gradient={args.fused_gradient} kernel={args.kernel} dtype={args.dtype} cpu_devices={args.cpu_devices} "
          f"({cpu_devices} in effect) · matmul peak {peak:.0f} GFLOP/s · "
          f"median of {args.rounds} rounds · load {os.getloadavg()[0]:.1f}\n")
    print("| shape | model | seq/s | vs PyTorch | vs Flax | vs Flax split | GFLOP/s | % peak | compile s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for shape in args.shapes:
        for row in bench_shape(shape, args.cells, args, tdev, peak):
            print(row, flush=True)


if __name__ == "__main__":
    main()
