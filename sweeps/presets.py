"""The sweep presets in sweeps/: compose one as its command would, and list its trials without running them.

    python -m sweeps.presets                         # every preset: its sweeper, launcher and trial count
    python -m sweeps.presets random_search cell=nig  # one preset's trials: overrides and output folders

A preset runs as `python train.py -m -cd sweeps -cn <name> [overrides]`: conf/ holds the defaults and the
launch settings (conf/launch/), sweeps/ the presets. Listing a preset's trials runs that very command with
the dry-run launcher (hydra_plugins/odyssey_dry_run), which starts nothing and prints each trial: the real
sweeper (the basic grid sweeper, or Optuna with its seeded sampler) and Hydra's own folder naming, through
public APIs, so the list is exactly what `-m` launches: same overrides, same folders, same order.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import training  # noqa: F401  (registers the config schema and the one_minus resolver)

SWEEPS = Path(__file__).resolve().parent
CONF = SWEEPS.parent / "conf"


def preset_names() -> list[str]:
    """The presets: sweeps/*.yaml (wandb sweep files, *.wandb.yaml, are for `wandb sweep`, not Hydra)."""
    return sorted(p.stem for p in SWEEPS.glob("*.yaml") if not p.name.endswith(".wandb.yaml"))


def compose_preset(name: str, overrides: list[str] | tuple = ()) -> DictConfig:
    """The config `python train.py -m -cd sweeps -cn <name> <overrides>` gives a trial with these overrides,
    with its `hydra` node (overrides hold single values; `trials` expands a sweep)."""
    if name not in preset_names():
        raise ValueError(f"No sweep preset {name!r} in {SWEEPS}; choose one of {', '.join(preset_names())}.")
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(name, overrides=[f"hydra.searchpath=[file://{CONF}]", *overrides], return_hydra_config=True)


def trials(name: str, overrides: list[str] | tuple = ()) -> list[list[str]]:
    """The overrides of each trial that `python train.py -m -cd sweeps -cn <name> <overrides>` launches."""
    return [list(job) for job, _ in _dry_run(name, tuple(overrides))]


def trial_dir(name: str, trial_overrides: list[str]) -> Path:
    """The folder a trial writes to: hydra.sweep.dir / its overrides (hydra.job.override_dirname)."""
    cfg = compose_preset(name, trial_overrides)
    return Path(cfg.hydra.sweep.dir) / cfg.hydra.job.override_dirname


@functools.lru_cache(maxsize=64)
def _dry_run(name: str, overrides: tuple) -> tuple:
    """((trial overrides, trial subdir), ...) from the real multirun command with the dry-run launcher."""
    if name not in preset_names():
        raise ValueError(f"No sweep preset {name!r} in {SWEEPS}; choose one of {', '.join(preset_names())}.")
    ours = ["~launch", "hydra/launcher=dry_run"]  # the preset's launch settings configure a real launcher
    with tempfile.TemporaryDirectory() as tmp:  # the sweeper writes its own files (multirun.yaml, results) there
        env = dict(os.environ, WANDB_MODE="disabled")
        proc = subprocess.run([sys.executable, str(SWEEPS.parent / "train.py"), "-m", "-cd", str(SWEEPS), "-cn", name,
                               *overrides, *ours, f"hydra.sweep.dir={tmp}"], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise ValueError(f"python train.py -m -cd sweeps -cn {name} {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    jobs = [json.loads(line[len("dry-run: "):]) for line in proc.stdout.splitlines() if line.startswith("dry-run: ")]
    return tuple((tuple(o for o in j["overrides"] if not o.startswith("~launch")), j["subdir"]) for j in jobs)


def main(argv: list[str]) -> None:
    if not argv:
        for name in preset_names():
            cfg = compose_preset(name)
            print(f"{name:16s} {cfg.hydra.sweeper._target_.rsplit('.', 1)[-1]:14s} "
                  f"{cfg.hydra.launcher._target_.rsplit('.', 1)[-1]:16s} {len(trials(name))} trials")
        return
    name, overrides = argv[0], argv[1:]
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweep.dir=")]
    sweep_dir = Path(given[-1] if given else compose_preset(name).hydra.sweep.dir)
    for _, subdir in _dry_run(name, tuple(overrides)):
        print(sweep_dir / subdir)


if __name__ == "__main__":
    main(sys.argv[1:])
