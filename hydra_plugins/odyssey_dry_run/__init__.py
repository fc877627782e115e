"""A Hydra launcher that starts nothing: it prints what each trial would be, so listing a sweep's trials
runs the real `python train.py -m ...` command, its real sweeper (grid, or the Optuna study with its seeded sampler)
and Hydra's own folder naming, through public plugin APIs only:

    python train.py -m -cd sweeps -cn random_search cell=nig hydra/launcher=dry_run hydra.sweep.dir=/tmp/x

Each trial is one line, `dry-run: {"overrides": [...], "subdir": "..."}`; every trial reports a test
metric of 0.0, so an optimizing sweeper goes on drawing. `python -m sweeps.presets` reads these lines.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)
PREFIX = "dry-run: "


@dataclass
class DryRunLauncherConf:
    _target_: str = "hydra_plugins.odyssey_dry_run.DryRunLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="dry_run", node=DryRunLauncherConf, provider="odyssey")


class DryRunLauncher(Launcher):
    def __init__(self) -> None:
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)  # as real launchers do
        returns = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id, cfg.hydra.job.num = f"{cfg.hydra.job.name}_{idx}", idx
            HydraConfig.instance().set_config(cfg)  # the subdir interpolation reads the job's hydra node
            subdir = str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
            print(PREFIX + json.dumps({"overrides": list(overrides), "subdir": subdir}), flush=True)
            task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            job = JobReturn(overrides=list(overrides), cfg=task_cfg, hydra_cfg=cfg, working_dir=subdir,
                            task_name=cfg.hydra.job.name, status=JobStatus.COMPLETED)
            job.return_value = 0.0
            returns.append(job)
        return returns
