"""Trials per hour of a small sweep trial: one after another, or one single-device process per core.

    ODYSSEY_DATA_DIR=../shared/data python -m benchmarks.sweep_throughput   # 4 trials of the trial below, each way
    python -m benchmarks.sweep_throughput --trials 6 -- hidden=32 task=adding

Each trial is a real `python train.py ...` process (compile, data loading, training, evaluation,
records): by default `task=mnist epochs=1 max_steps_per_epoch=50 hidden=64 wandb.mode=disabled`, plus
any overrides after `--`. Ways compared, with the same number of trials:
  - sequential:       one process at a time, train.py's default (speed.cpu_devices=auto: each batch
                      split over one XLA CPU device per core);
  - sequential-1dev:  one process at a time on one XLA CPU device;
  - parallel:         one process per core at a time, as the sweep presets run them (speed.cpu_devices=1);
  - parallel+pin:     the same, each process pinned to its own core with `taskset` (Linux only).
Prints a markdown table: wall seconds, trials per hour, and the speed-up over sequential. Parallel
processes can only gain where cores are idle: measure on an otherwise quiet machine (the load is printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

TRIAL = ["task=mnist", "epochs=1", "max_steps_per_epoch=50", "hidden=64", "wandb.mode=disabled"]


def trial_command(run_dir: str, index: int, overrides: list[str]) -> list[str]:
    # a distinct seed per trial, so no trial finds another's record and returns early
    return [sys.executable, "train.py", *TRIAL, *overrides, f"seed={index}", f"hydra.run.dir={run_dir}/t{index}"]


WAYS = {  # way: (processes at a time: None = one per core, pin, speed.cpu_devices); every way's Eigen
    "sequential": (1, False, "auto"),              # matmuls run on one thread (training/devices.py)
    "sequential-1dev": (1, False, 1),
    "parallel": (None, False, 1),
    "parallel+pin": (None, True, 1),
}


def run_trials(n: int, parallel: int, pin: bool, overrides: list[str]) -> float:
    """Wall seconds for n trials, `parallel` at a time; raises if a trial fails."""
    env = dict(os.environ)
    run_dir = tempfile.mkdtemp(prefix="odyssey-sweep-bench-")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count()))
    t0 = time.perf_counter()
    try:
        pending, running = list(range(n)), []
        while pending or running:
            while pending and len(running) < parallel:
                i = pending.pop(0)
                slot = min(set(range(parallel)) - {r[1] for r in running})  # a free core, when pinned
                cmd = trial_command(run_dir, i, overrides)
                if pin:
                    cmd = ["taskset", "-c", str(cores[slot % len(cores)])] + cmd
                running.append((i, slot, subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
            time.sleep(0.2)
            for item in list(running):
                i, _, proc = item
                if proc.poll() is not None:
                    running.remove(item)
                    if proc.returncode:
                        raise RuntimeError(f"trial {i} failed ({' '.join(trial_command(run_dir, i, overrides))}):\n"
                                           + proc.stderr.read().decode()[-2000:])
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    """The command line (tests/test_readme.py parses every command the docs quote with it)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4, help="trials per way (a multiple of the core count is fairest)")
    p.add_argument("--parallel", type=int, default=os.cpu_count(), help="processes at a time in the parallel ways")
    p.add_argument("--ways", nargs="+", default=list(WAYS), choices=list(WAYS))
    p.add_argument("overrides", nargs="*", help="extra train.py overrides (after --)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d')} · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f} · trial: "
          f"python train.py {' '.join(TRIAL + args.overrides)} · {args.trials} trials per way\n")
    print("| way | processes | speed.cpu_devices | wall s | trials/hour | vs sequential |")
    print("|---|---:|---:|---:|---:|---:|")
    base = None
    for way in args.ways:
        parallel, pin, devices = WAYS[way]
        parallel = parallel or args.parallel
        seconds = run_trials(args.trials, parallel, pin, [f"speed.cpu_devices={devices}", *args.overrides])
        per_hour = 3600 * args.trials / seconds
        base = base or (per_hour if way == "sequential" else None)
        print(f"| {way} | {parallel} | {devices} | {seconds:.0f} | {per_hour:.0f} | "
              f"{f'{per_hour / base:.2f}×' if base else '–'} |", flush=True)


if __name__ == "__main__":
    main()
