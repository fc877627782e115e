"""The sweep presets in sweeps/: compose one as its command would, and list its trials without running them.

    python -m sweeps.presets                         # every preset: its sweeper, launcher and trial count
    python -m sweeps.presets random_search cell=nig  # one preset's trials: overrides and output folders

A preset runs as `python train.py -m -cd sweeps -cn <name> [overrides]`: conf/ holds the defaults, sweeps/
the presets and their launchers (sweeps/launch/). Listing a preset's trials is a dry run of Hydra's own
sweeper (the basic grid sweeper, or Optuna with its seeded sampler) with a launcher that only records
what it would start, so the list is exactly what `-m` launches: same overrides, same folders, same order.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

import training  # noqa: F401  (registers the config schema and the one_minus resolver)

SWEEPS = Path(__file__).resolve().parent
CONF = SWEEPS.parent / "conf"


def preset_names() -> list[str]:
    """The presets: sweeps/*.yaml (wandb sweep files, *.wandb.yaml, are for `wandb sweep`, not Hydra)."""
    return sorted(p.stem for p in SWEEPS.glob("*.yaml") if not p.name.endswith(".wandb.yaml"))


def compose_preset(name: str, overrides: list[str] | tuple = (), multirun: bool = False) -> DictConfig:
    """The config `python train.py [-m] -cd sweeps -cn <name> <overrides>` composes, with its `hydra` node
    (with multirun, overrides may hold sweeps such as `lr=1e-3,1e-2`; the sweeper expands them)."""
    if name not in preset_names():
        raise ValueError(f"No sweep preset {name!r} in {SWEEPS}; choose one of {', '.join(preset_names())}.")
    overrides = [f"hydra.searchpath=[file://{CONF}]", *overrides]
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        if not multirun:
            return compose(name, overrides=overrides, return_hydra_config=True)
        return GlobalHydra.instance().hydra.compose_config(  # what `-m` composes before the sweeper runs
            name, overrides, run_mode=RunMode.MULTIRUN, with_log_configuration=False)


def trials(name: str, overrides: list[str] | tuple = ()) -> list[list[str]]:
    """The overrides of each trial that `python train.py -m -cd sweeps -cn <name> <overrides>` launches."""
    cfg = compose_preset(name, overrides, multirun=True)
    parser = OverridesParser.create()
    # as Hydra does: the sweeper sees the job's overrides; hydra.* ones configure Hydra itself
    arguments = [o.input_line for o in parser.parse_overrides(list(overrides)) if not o.is_hydra_override()]
    if cfg.hydra.sweeper._target_.endswith("OptunaSweeper"):
        return _optuna_trials(cfg, arguments)
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()] + arguments
    parsed = parser.parse_overrides(params)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def trial_dir(name: str, trial_overrides: list[str]) -> Path:
    """The folder a trial writes to: hydra.sweep.dir / its overrides (hydra.job.override_dirname)."""
    cfg = compose_preset(name, trial_overrides)
    return Path(cfg.hydra.sweep.dir) / cfg.hydra.job.override_dirname


class _Recorder:
    """A launcher that starts nothing: it keeps the overrides it is given and reports each trial done."""

    def __init__(self):
        self.launched: list[list[str]] = []

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        self.launched += [list(o) for o in job_overrides]
        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value=0.0) for o in job_overrides]


def _optuna_trials(cfg: DictConfig, arguments: list[str]) -> list[list[str]]:
    """Run the preset's own Optuna sweeper (its sampler and seed) against a launcher that only records."""
    from hydra.utils import instantiate

    sweeper = instantiate(cfg.hydra.sweeper).sweeper  # hydra_optuna_sweeper's OptunaSweeperImpl
    recorder = _Recorder()
    with tempfile.TemporaryDirectory() as tmp:  # the sweeper writes optimization_results.yaml there
        cfg = OmegaConf.merge(cfg, {})
        with open_dict(cfg):
            cfg.hydra.sweep.dir = tmp
        sweeper.config, sweeper.launcher, sweeper.hydra_context = cfg, recorder, object()
        sweeper.sweep(arguments)
    return recorder.launched


def main(argv: list[str]) -> None:
    from training.logs import configure_logging

    configure_logging()  # no Optuna study lines (with raw colour codes) between the listed folders
    if not argv:
        for name in preset_names():
            cfg = compose_preset(name)
            print(f"{name:16s} {cfg.hydra.sweeper._target_.rsplit('.', 1)[-1]:14s} "
                  f"{cfg.hydra.launcher._target_.rsplit('.', 1)[-1]:16s} {len(trials(name))} trials")
        return
    name, overrides = argv[0], argv[1:]
    for job in trials(name, overrides):
        print(trial_dir(name, job))


if __name__ == "__main__":
    main(sys.argv[1:])
