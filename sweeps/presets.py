"""The sweep presets in sweeps/: compose one as its command would, and list its trials without running them.

    python -m sweeps.presets                         # every preset: its sweeper, launcher and trial count (from the files)
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

SWEEPS = Path(__file__).resolve().parent
CONF = SWEEPS.parent / "conf"


def preset_names() -> list[str]:
    """The presets: sweeps/*.yaml (wandb sweep files, *.wandb.yaml, are for `wandb sweep`, not Hydra)."""
    return sorted(p.stem for p in SWEEPS.glob("*.yaml") if not p.name.endswith(".wandb.yaml"))


def known(name: str) -> str:
    """`name`, if sweeps/ holds that preset; otherwise a ValueError that lists the presets there are."""
    if name not in preset_names():
        raise ValueError(f"No sweep preset {name!r} in {SWEEPS}; choose one of {', '.join(preset_names())}.")
    return name


def compose_preset(name: str, overrides: list[str] | tuple = ()) -> DictConfig:
    """The config `python train.py -m -cd sweeps -cn <name> <overrides>` gives a trial with these overrides,
    with its `hydra` node (overrides hold single values; `trials` expands a sweep)."""
    known(name)
    import training  # noqa: F401  (registers the config schema and the one_minus resolver; imports JAX, so only here)

    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        return compose(name, overrides=[f"hydra.searchpath=[file://{CONF}]", *overrides], return_hydra_config=True)


def trials(name: str, overrides: list[str] | tuple = ()) -> list[list[str]]:
    """The overrides of each trial that `python train.py -m -cd sweeps -cn <name> <overrides>` launches."""
    return [list(job) for job, _ in _dry_run(name, tuple(overrides))]


def trial_folders(name: str, overrides: list[str] | tuple = ()) -> list[str]:
    """Each trial's folder under the sweep folder, as the command names it: a grid's by its overrides
    (cell=gru,lr=0.001), a random search's by its trial number (cell=nig,trial_007)."""
    return [subdir for _, subdir in _dry_run(name, tuple(overrides))]


def trial_dir(name: str, trial_overrides: list[str]) -> Path:
    """The folder a grid's trial writes to: hydra.sweep.dir / its overrides (hydra.job.override_dirname).
    An Optuna sweep numbers its trials' folders instead (trial_folders)."""
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
    # the Optuna sweeper names each trial's folder with a hydra.sweep.subdir override (its trial number): a folder, not a setting
    return tuple((tuple(o for o in j["overrides"] if not o.startswith(("~launch", "hydra.sweep.subdir="))), j["subdir"])
                 for j in jobs)


def summary(name: str) -> str:
    """One line from the preset file alone, without composing it (composing every trial takes ~0.25 s each):
    its sweeper and launcher (the defaults list's overrides) and its trial count (a grid's product, or n_trials)."""
    from omegaconf import OmegaConf

    chosen, sweeper = _file_choices(name)
    if "n_trials" in sweeper:
        count = f"{sweeper['n_trials']} trial{'s' * (sweeper['n_trials'] != 1)} per command"
    else:
        count = 1
        for value in (sweeper.get("params") or {}).values():
            count *= len(str(value).split(","))
        count = f"{count} trial{'s' * (count != 1)}"
    return f"{name:16s} sweeper {chosen.get('hydra/sweeper', 'basic'):8s} launch {chosen.get('launch', '-'):10s} {count}"


def _file_choices(name: str) -> tuple[dict, dict]:
    """(defaults-list choices, hydra.sweeper node) of a preset file, after those of a preset it builds on
    (a plain string entry naming another sweeps/ file, e.g. new_cells.yaml's `- tutorial`)."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(SWEEPS / f"{name}.yaml"))
    chosen, sweeper = {}, {}
    for entry in raw.get("defaults", []):
        if isinstance(entry, str) and entry in preset_names() and entry != name:
            chosen, sweeper = _file_choices(entry)
        elif isinstance(entry, dict):
            chosen.update({k.removeprefix("override ").strip("/"): v for k, v in entry.items()})
    own = raw.get("hydra", {}).get("sweeper", {})
    return chosen, {**sweeper, **own, "params": {**sweeper.get("params", {}), **own.get("params", {})}}


def main(argv: list[str]) -> None:
    if not argv:
        for name in preset_names():
            print(summary(name))
        print("python -m sweeps.presets <name> [overrides]: the trials that command launches and their folders")
        return
    if argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    name, overrides = argv[0], argv[1:]
    try:
        known(name)
    except ValueError as e:
        sys.exit(f"sweeps.presets: {e} (No argument lists them; --help gives the usage.)")
    print(f"composing {name}'s trials (~0.25 s each) ...", file=sys.stderr, flush=True)
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweep.dir=")]
    sweep_dir = Path(given[-1] if given else compose_preset(name).hydra.sweep.dir)
    for subdir in trial_folders(name, overrides):
        print(sweep_dir / subdir)

if __name__ == "__main__":
    main(sys.argv[1:])
