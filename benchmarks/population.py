"""Aggregate training throughput of a population of K trials against K separate runs.

    python -m benchmarks.population                       # row MNIST shapes, H=128, K = 1 4 16 64
    python -m benchmarks.population --sizes 1 32 --cell np --steps 50   # e.g. on a GPU

    python -m benchmarks.population --greff 32 --data-dir ../shared/data   # Greff's random search, end to end
    python -m benchmarks.population --greff 24 --cell v nig nfg nog niaf noaf np cifg --mix-variants --width-buckets null

Separate runs train one after another, so their aggregate throughput is that of one run (K=1),
and they compile K times; a population compiles once. Both are placed as train.py places them: a
lone run splits its batch over the devices, a population its trials (on CPU, `--cpu-devices` XLA CPU
devices, default auto: one per core). Inputs are random arrays of row-MNIST shape (throughput does
not depend on the pixel values). Prints a markdown table.

--greff N runs the real thing instead: N trials of sweeps/random_search.yaml (row MNIST, widths,
learning rates, momenta and noise drawn per trial; one short epoch each) through the real `-m`
command, once as populations (launch=population, for each --width-buckets setting) and once as one
process per trial (launch=joblib, a process per core), and prints trials per hour of wall time,
process start, compilation, evaluation and records included.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from tasks import task_from_conf
from training.provenance import describe_cpu
from training import speed_rules
from training.config import compose_conf
from training.devices import Placement, configure_xla_cpu
from training.model import SequenceModel
from training.optim import make_optimizer
from training.population import over_trials, stack
from training.split import make_steps
from training.steps import make_train_step


def population_step_fn(cell: str, hidden: int, batch: int, K: int, strategy: str):
    """The population's jitted train step and stacked state; K=None: a lone run's step and state."""
    task = task_from_conf("mnist")
    cfg = compose_conf(f"cell={cell}", f"hidden={hidden}", "optimizer=adam")  # train.py's settings, conf/'s values
    model = SequenceModel(cell=cell, hidden=hidden, output_size=10,  # train.py's paths, as its speed settings pick them
                          **speed_rules.chosen(cfg.speed, jax.default_backend(), cell, hidden))
    lrs = np.logspace(-4, -2, K or 1)
    txs = [make_optimizer(cfg.optimizer, float(lr)) for lr in lrs]
    x = jnp.zeros((1, 28, 28))
    states = []
    for k, tx in enumerate(txs):
        params = model.init(jax.random.key(k), x)
        states.append({"params": params, "opt_state": tx.init(params)})
    if K is None:  # a lone run: train.py's steps, its batch split over the devices
        return make_steps(model, task, txs[0], Placement.for_sizes(batch).devices), states[0], None
    step = jax.jit(over_trials(functools.partial(make_train_step(model, task, txs[0]), padded=False), strategy))
    devices = jax.devices()
    if devices[0].platform == "cpu":  # as training.population: one sub-population per CPU device
        n = min(len(devices), K)
        parts = [(jax.device_put(stack(states[i::n]), devices[i]), Placement([devices[i]])) for i in range(n)]
    else:  # one population, its trial axis sharded over the devices
        placement = Placement.for_sizes(K, what="trials", devices=devices)
        parts = [(placement.shard(stack(states)), placement)]
    return step, [state for state, _ in parts], [placement for _, placement in parts]


def measure(cell: str, hidden: int, batch: int, K: int, steps: int, strategy: str = "auto") -> dict:
    step, state, placements = population_step_fn(cell, hidden, batch, K, strategy)
    rng = np.random.default_rng(0)
    b = {"x": rng.random((batch, 28, 28), np.float32), "y": rng.integers(0, 10, batch).astype(np.int32),
         "lengths": np.full(batch, 28, np.int32), "mask": np.ones(batch, np.float32)}
    t0 = time.perf_counter()
    if K is None:
        state = step.place(state)
        call = lambda s: step.train(s, b, jax.random.key(0), np.float32(0.0), padded=False)
    else:  # each (sub-)population reads its trials' copies of the batch; dispatching them all lets them run at once
        args = []
        for part, placement in zip(state, placements):
            k = len(jax.tree.leaves(part)[0])
            trial_batch = {key: np.broadcast_to(v, (k,) + v.shape) for key, v in b.items()}
            where = placement.split if placement.count > 1 else placement.devices[0]
            args.append(jax.device_put((trial_batch, jax.random.split(jax.random.key(0), k), jnp.zeros(k)), where))

        def call(parts):
            return [step(p, *a)[0] for p, a in zip(parts, args)], None
    state, m = call(state)  # the first step compiles
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t0
    state, m = call(state)  # warm-up
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = call(state)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    return {"K": K, "compile_s": compile_s, "seq_per_s": (K or 1) * batch * steps / seconds}


def greff_search(trials: int, cells: list[str], steps: int, data_dir: str, buckets: list[str], launch: str = "joblib",
                 mix_variants: bool = False) -> None:
    """Trials per hour of Greff's random search as populations (per width bucket, and with variants mixed
    or apart) and as processes. Several cells: the sampler draws each trial's cell too."""
    root = Path(__file__).resolve().parent.parent
    base = [sys.executable, str(root / "train.py"), "-m", "-cd", str(root / "sweeps"), "-cn", "random_search",
            f"cell={','.join(cells)}", f"hydra.sweeper.n_trials={trials}", "epochs=1", f"max_steps_per_epoch={steps}",
            "wandb.mode=disabled", f"data_dir={os.path.abspath(data_dir)}"]
    modes = [(f"populations, width_bucket={b}" + (f", mix_variants={m}" if mix_variants else ""),
              ["launch=population", f"hydra.launcher.width_bucket={b}", f"hydra.launcher.mix_variants={m}"])
             for b in buckets for m in ((False, True) if mix_variants else (False,))]
    if launch != "none":
        modes.append((f"one process per trial (launch={launch})", [f"launch={launch}"]))
    print(f"# Greff's random search: {trials} trials of {' '.join(cells)}, 1 epoch of {steps} steps each, row MNIST; "
          f"{describe_cpu()}, jax {jax.__version__}", flush=True)
    rows = []
    for name, extra in modes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            out = subprocess.run([*base, *extra, f"hydra.sweep.dir={tmp}"], cwd=tmp, capture_output=True, text=True)
            seconds = time.perf_counter() - t0
            statuses = [json.loads(p.read_text())["status"] for p in Path(tmp).rglob("result.json")]
        if out.returncode != 0 or len(statuses) != trials:
            raise SystemExit(f"{name}: exit {out.returncode}, {len(statuses)} records\n{out.stderr[-3000:]}")
        rows.append((name, seconds, statuses.count("completed") + statuses.count("diverged")))
        print(f"  {name}: {seconds:.0f}s", flush=True)
    print("\n| how | wall s | trials/hour | × the last row | finished |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, done in rows:
        print(f"| {name} | {seconds:.0f} | {trials * 3600 / seconds:.0f} | {rows[-1][1] / seconds:.2f}× | {done}/{trials} |")


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_readme.py parses every command the docs quote with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", nargs="+", default=["np"], help="the cell (with --greff: one or several, drawn per trial)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--strategy", default="auto", choices=["auto", "vmap", "map"], help="how trials share the program")
    p.add_argument("--steps", type=int, default=20, help="timed steps per K (fewer for large K on CPU)")
    p.add_argument("--cpu-devices", default="auto", help="speed.cpu_devices (auto: one XLA CPU device per core)")
    p.add_argument("--greff", type=int, metavar="N", help="time N trials of sweeps/random_search.yaml end to end instead")
    p.add_argument("--data-dir", default=os.environ.get("ODYSSEY_DATA_DIR", "../shared/data"), help="for --greff")
    p.add_argument("--width-buckets", nargs="+", default=["32", "null"], help="for --greff: width_bucket settings")
    p.add_argument("--mix-variants", action="store_true", help="for --greff: populations with Greff's variants apart and mixed "
                   "(hydra.launcher.mix_variants)")
    p.add_argument("--processes-launch", default="joblib", help="for --greff: the launch= of the process-per-trial "
                   "baseline (joblib: one per core; joblib_gpu: four sharing a GPU)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.greff:
        return greff_search(args.greff, args.cell, args.steps, args.data_dir, args.width_buckets, args.processes_launch,
                            args.mix_variants)
    if len(args.cell) > 1:
        raise SystemExit("--cell takes one cell unless --greff is given")
    args.cell = args.cell[0]
    configure_xla_cpu(args.cpu_devices)  # as train.py, before JAX starts (XLA_FLAGS set by hand win)
    dev = jax.devices()[0]
    print(f"# population throughput: {args.cell}, H={args.hidden}, batch {args.batch}, row MNIST (T=28, D=28); "
          f"{dev.platform} {dev.device_kind} x{jax.device_count()}, jax {jax.__version__}, strategy {args.strategy}")
    base = measure(args.cell, args.hidden, args.batch, None, args.steps)
    print(f"  one lone run: {base['seq_per_s']:.0f} seq/s, compile {base['compile_s']:.1f}s", flush=True)
    rows = []
    for K in args.sizes:
        steps = max(3, args.steps // K) if dev.platform == "cpu" else args.steps
        rows.append(measure(args.cell, args.hidden, args.batch, K, steps, args.strategy))
        print(f"  K={K}: {rows[-1]['seq_per_s']:.0f} seq/s, compile {rows[-1]['compile_s']:.1f}s", flush=True)
    print("\n| K | aggregate seq/s | × K separate runs | compile s (population) | compile s (K separate) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['K']} | {r['seq_per_s']:,.0f} | {r['seq_per_s'] / base['seq_per_s']:.2f}× | "
              f"{r['compile_s']:.1f} | {r['K'] * base['compile_s']:.1f} |")


if __name__ == "__main__":
    main()
