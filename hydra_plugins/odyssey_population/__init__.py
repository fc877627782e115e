"""A Hydra launcher that trains a multirun's trials as vmapped populations.

    python train.py -m hydra/launcher=population cell=v,gru lr=1e-4,1e-3,1e-2 seed=0,1

    python train.py -m -cd sweeps -cn random_search cell=v launch=population   # Greff's search

Jobs are grouped by structure (training.population.group_by_shape: everything but lr, seed,
momentum, input noise and hidden size must match; widths in buckets of `width_bucket` units; with
`mix_variants`, Greff's variants too, their switches as data: variants.SwitchedCell);
each group trains as one compiled program, and every trial still writes its own record and its
`.hydra/` folder into its own sweep subdirectory, exactly as with any other launcher.

`backend` says where the populations run: `here` (in this process, one after another), or through
submitit, one job per population: `local` (a process each on this machine, all at once) or `slurm`
(one Slurm job each; `submitit` holds its parameters: partition, gpus_per_node, timeout_min, ...).
    python train.py -m -cd sweeps -cn random_search cell=v launch=population_slurm hydra.launcher.submitit.slurm_partition=gpu
"""


import logging
import logging.config
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)  # the launcher's own lines (the jobs it lists), as Hydra's launchers write them
trained = logging.getLogger("odyssey")  # what happens to the trials: Odyssey's lines, in a run's format

# the launcher's settings as conf/launch/population.yaml gives them: their one source (the yaml is read, not imported
# through training, so that Hydra's plugin scan stays free of JAX)
SETTINGS = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "launch" / "population.yaml").hydra.launcher


@dataclass
class PopulationLauncherConf:
    _target_: str = "hydra_plugins.odyssey_population.PopulationLauncher"
    # conf/launch/population.yaml's values (read from it, so `hydra/launcher=population` without launch= has them too)
    max_size: Optional[int] = SETTINGS.max_size  # most trials in one population (memory); null: a whole group
    width_bucket: Any = SETTINGS.width_bucket  # widths padded together: N units per bucket, null (to the widest) or auto
    mix_variants: bool = SETTINGS.mix_variants  # Greff's variants of one task in one population (switches as data; FGR apart)
    backend: str = "here"  # here | local | slurm: where each population runs (local and slurm: a submitit job each)
    submitit: Dict[str, Any] = field(default_factory=dict)  # submitit executor parameters (timeout_min, partition, ...)


BACKENDS = ("here", "local", "slurm")
ConfigStore.instance().store(group="hydra/launcher", name="population", node=PopulationLauncherConf, provider="odyssey")


class PopulationLauncher(Launcher):
    def __init__(self, max_size: Optional[int], width_bucket: Any, mix_variants: bool,
                 backend: str = "here", submitit: Optional[Dict[str, Any]] = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"hydra.launcher.backend={backend!r}; choose one of {', '.join(BACKENDS)}.")
        self.max_size, self.width_bucket, self.backend = max_size, width_bucket, backend
        self.mix_variants = bool(mix_variants)
        self.submitit = dict(submitit or {})
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from training.devices import configure_host
        from training.logs import configure_logging
        from training.records import job_configs

        # hydra.job.env_set, which Hydra's own launchers set in each job's process: here, before JAX starts its
        # backends, and inherited by submitit's jobs (BLAS threads, GPU memory; a user's XLA_FLAGS). Then
        # configure_host pins XLA:CPU's matmul kernels as every train.py does, so a population trial computes what
        # its joblib trial does (training/devices.py)
        os.environ.update({str(k): str(v) for k, v in (self.config.hydra.job.env_set or {}).items()})
        configure_host(self.config.speed)  # before JAX starts its backends
        configure_logging(self.config.verbose)

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        jobs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id, cfg.hydra.job.num = f"{cfg.hydra.job.name}_{idx}", idx
            HydraConfig.instance().set_config(cfg)  # subdir interpolations read the job's hydra node
            run_dir = os.path.abspath(sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir")))
            with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
                cfg.hydra.runtime.output_dir = run_dir
            task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            if cfg.hydra.output_subdir is not None:  # Hydra's place for them; conf/config.yaml leaves it null
                save_job_configs(Path(run_dir) / str(cfg.hydra.output_subdir), task_cfg, cfg, list(overrides))
                files = None
            else:  # written by the trial once it takes its folder, as train.py's jobs do
                files = job_configs(task_cfg, OmegaConf.create({"hydra": cfg.hydra}), list(overrides))
            jobs.append((list(overrides), cfg, task_cfg, run_dir, files))
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))

        returns = []
        console_job_logging(self.config)
        try:
            results = self._train([j[2] for j in jobs], [j[3] for j in jobs], sweep_dir, [j[4] for j in jobs])
        except Exception:  # each trial's result.json already says failed; the sweep goes on
            trained.exception("a population failed")
            results = [None] * len(jobs)
        for (overrides, cfg, task_cfg, run_dir, _), result in zip(jobs, results):
            value = None
            if result and result.get("test"):
                value = result["test"].get(result["objective"]["name"])
            job = JobReturn(overrides=overrides, cfg=task_cfg, hydra_cfg=cfg, working_dir=run_dir,
                            task_name=cfg.hydra.job.name, status=JobStatus.COMPLETED)
            job.return_value = value  # what an optimizing sweeper reads (the Optuna study's value)
            returns.append(job)
        return returns

    def _train(self, cfgs, run_dirs, sweep_dir: Path, files: list) -> list:
        """Each trial's result: the populations trained here, or as submitit jobs (one per population)."""
        from training.population import plan_populations, train_population

        if self.backend == "here":
            return train_population(cfgs, run_dirs, self.max_size, self.width_bucket, self.mix_variants, files)
        import submitit

        plan = plan_populations(cfgs, self.max_size, self.width_bucket, self.mix_variants)
        executor = submitit.AutoExecutor(folder=sweep_dir / ".submitit" / "%j", cluster=self.backend)
        executor.update_parameters(**executor_parameters(self.backend, self.submitit))
        submitted = [executor.submit(PopulationJob(), [cfgs[i] for i in idx], [run_dirs[i] for i in idx],
                                     [files[i] for i in idx]) for idx in plan]
        trained.info("%d populations submitted (%s): %s", len(plan), self.backend, " ".join(j.job_id for j in submitted))
        results: list = [None] * len(cfgs)
        for idx, job in zip(plan, submitted):
            try:
                for i, r in zip(idx, job.result()):
                    results[i] = r
            except Exception:  # its trials' records say what happened (failed, or running: rerun resumes)
                trained.exception("population job %s failed; see %s", job.job_id, job.paths.stderr)
        return results


class PopulationJob:
    """The callable each submitit job runs: one population. It has submitit's checkpointing interface
    (`checkpoint`, as submitit.helpers.Checkpointable, whose import would slow Hydra's plugin discovery),
    so a preempted or timed-out job is requeued with the same arguments; its trials, recorded as
    `interrupted` at a step boundary (training/interrupt.py), resume from their checkpoints."""

    def __call__(self, cfgs, run_dirs, files) -> list:
        from training import interrupt
        from training.population import train_one_population

        try:
            return train_one_population(cfgs, run_dirs, True, files)
        except interrupt.Interrupted as e:  # every trial's record says interrupted: submitit requeues the job
            interrupt.hand_over(e)
            raise

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on preemption or timeout: rerun the same population (its trials resume)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def console_job_logging(config) -> None:
    """Log the trials' lines as a lone run's are ([time][odyssey][INFO] - ..., Hydra's job_logging), not as
    [HYDRA]: configure_log set Hydra's own format up for the launcher's lines, and the trials run in this
    process. job_logging's file handlers are left out: its file is one job's (<run folder>/train.log), and
    here one process trains many trials, whose lines name them."""
    conf = OmegaConf.to_container(config.hydra.job_logging, resolve=False) or {}
    handlers = {k: v for k, v in (conf.get("handlers") or {}).items() if "filename" not in v}
    if not handlers:  # hydra/job_logging=disabled or a custom one without a console: keep Hydra's set-up
        return
    conf["handlers"] = handlers
    root = conf.setdefault("root", {})
    root["handlers"] = [h for h in root.get("handlers") or [] if h in handlers]
    logging.config.dictConfig(conf)


LOCAL_TIMEOUT_MIN = 24 * 60  # submitit's local executor kills a job after 2 minutes unless told otherwise


def executor_parameters(backend: str, submitit: dict) -> dict:
    """submitit's parameters: the config's, and on this machine (`local`) a day's time limit by default,
    since submitit's own default (2 min) would kill any real population."""
    if backend == "local":
        return {"timeout_min": LOCAL_TIMEOUT_MIN, **submitit}
    return dict(submitit)


def save_job_configs(folder: Path, task_cfg, cfg, overrides: list[str]) -> None:
    """The `.hydra/` folder Hydra writes for every job it runs itself (config, hydra, overrides)."""
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(task_cfg, folder / "config.yaml", resolve=False)
    OmegaConf.save(OmegaConf.create({"hydra": cfg.hydra}), folder / "hydra.yaml", resolve=False)
    OmegaConf.save(OmegaConf.create(overrides), folder / "overrides.yaml")
