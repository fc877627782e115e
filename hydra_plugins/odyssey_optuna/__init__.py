"""A Hydra sweeper that draws a multirun's trials from an Optuna study kept in the sweep folder:

    python train.py -m -cd sweeps -cn random_search cell=nig            # Greff's random search (sweeps/)
    python train.py -m hydra/sweeper=odyssey_optuna hydra/sweeper/sampler=tpe hydra.sweeper.direction=maximize \
        hydra.sweeper.n_trials=30 hydra.sweeper.n_jobs=2 'lr=tag(log, interval(1e-5, 1e-1))' 'hidden=int(interval(16, 256))'

Search spaces are written as hydra-optuna-sweeper wrote them, in `hydra.sweeper.params` or on the command line,
and read with Hydra's override parser: `interval(a, b)` (uniform), `int(interval(a, b))`, `tag(log, ...)`
(log-uniform), `a,b,c` or `choice(a, b)` (categorical), `range(a, b, step)` (b excluded, as Hydra's range).
Any other override is passed to every trial as it is. Samplers (`hydra/sweeper/sampler`): `random` (the
default), `tpe`, `qmc`, each Optuna's own with its `seed`.

The study is Optuna's, in SQLite: `<sweep dir>/optuna.db` (`optuna.load_study(study_name=...,
storage="sqlite:///<sweep dir>/optuna.db")`, `optuna-dashboard sqlite:///<sweep dir>/optuna.db`), named
`<sweep folder name>/<the command's other overrides>` (`random_search/cell=nig`: those that name trial
folders, and epochs), so the cells of a shell loop are studies side by side in one database. Drawing goes through Optuna's ask/tell API, `n_jobs` draws at a time,
each batch run by the launcher; a trial's value is what train.py returns (its test objective), and a trial
with none (failed, diverged before its first epoch) is told FAIL and never stops the study.

Each trial's folder is named by its number in the study, after the fixed overrides folders are named by:
`<sweep dir>/cell=nig,trial_007` (the cell too where the search draws it); its drawn values are its overrides
(`.hydra/overrides.yaml`, result.json's config) and the report's columns. A sweep begun when folders were named
by the drawn values goes on in those folders (_study.trial_subdir).

Rerunning the same command resumes the study: told trials are not drawn again; trials an interrupted sweep
asked but never told run again with their own draws (so in their own folders, where a finished run is not
retrained), a failed trial's draw is retried once per rerun (Optuna's enqueue_trial: a new trial, user attr
`retry_of`, in the failed trial's folder), and the sampler goes on from where the study stopped (the random sampler's seeded sequence
exactly, so `n_trials=10` after `n_trials=5` draws what `n_trials=10` would have). A database of another
sweep (another preset, search space or direction, or this study with another sampler) is refused.
"""

import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from omegaconf import MISSING, DictConfig, OmegaConf

log = logging.getLogger(__name__)

RETIRED = ("hydra_plugins.hydra_optuna_sweeper", "hydra_plugins.odyssey_optuna.RetiredOptunaSweeper")
RETIRED_MESSAGE = (
    "error: this sweep names hydra-optuna-sweeper (hydra/sweeper=optuna, Optuna 2.10), which Odyssey no longer "
    "uses: write `override /hydra/sweeper: odyssey_optuna` in the sweep file's defaults (hydra/sweeper=odyssey_optuna "
    "on a command line), keep hydra.sweeper.params, sampler, direction, n_trials and n_jobs, and drop "
    "max_failure_rate (a failed trial never stops the study) and storage/study_name (the study is <sweep dir>/optuna.db).")


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None  # the draws (and so the trial folders) follow from it; null: different every time


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None  # its random start and candidate draws
    n_startup_trials: int = 10  # random draws before the model takes over (count whole batches: n_jobs)


@dataclass
class QMCSamplerConf:
    _target_: str = "optuna.samplers.QMCSampler"
    seed: Optional[int] = None  # the first trial (drawn at random) and a scrambled sequence
    qmc_type: str = "sobol"  # sobol | halton
    scramble: bool = False  # true: a seeded scrambled sequence


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.odyssey_optuna.OptunaSweeper"
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "random"}])
    sampler: Any = MISSING  # hydra/sweeper/sampler: random | tpe | qmc
    direction: str = "minimize"  # minimize | maximize: the test objective train.py returns
    n_trials: int = 20  # draws in the study; a rerun with more goes on drawing
    n_jobs: int = 2  # draws per batch, launched together (the launcher runs them its n_jobs at a time)
    study_name: Optional[str] = None  # null: <sweep folder name>/<the command's other overrides, as trial folders name them, and epochs>
    params: Optional[Dict[str, str]] = None  # the search space: key -> interval(...), tag(log, ...), a,b,c


cs = ConfigStore.instance()
cs.store(group="hydra/sweeper", name="odyssey_optuna", node=OptunaSweeperConf, provider="odyssey")
cs.store(group="hydra/sweeper/sampler", name="random", node=RandomSamplerConf, provider="odyssey")
cs.store(group="hydra/sweeper/sampler", name="tpe", node=TPESamplerConf, provider="odyssey")
cs.store(group="hydra/sweeper/sampler", name="qmc", node=QMCSamplerConf, provider="odyssey")
# hydra-optuna-sweeper's name, kept so that a sweep file still naming it composes (any keys, its sampler
# override too) and then stops with one line saying what to write instead (sweeps.callbacks.SweepGuard)
cs.store(group="hydra/sweeper", name="optuna", provider="odyssey",
         node={"_target_": RETIRED[1], "defaults": [{"sampler": "random"}]})


def refuse_retired(config: DictConfig) -> None:
    """Stop, in one line, a multirun whose sweeper is hydra-optuna-sweeper (its name or its class)."""
    if str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).startswith(RETIRED):
        sys.exit(RETIRED_MESSAGE)


class RetiredOptunaSweeper(Sweeper):
    """What hydra/sweeper=optuna now selects: nothing but the message (if no callback said it first)."""

    def __init__(self, **_: Any) -> None:
        sys.exit(RETIRED_MESSAGE)

    def setup(self, **_: Any) -> None: ...

    def sweep(self, arguments: List[str]) -> None: ...


class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, direction: str = "minimize", n_trials: int = 20, n_jobs: int = 2,
                 study_name: Optional[str] = None, params: Optional[DictConfig] = None) -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction={direction!r}; choose minimize or maximize.")
        if n_trials < 0 or n_jobs < 1:
            raise ValueError(f"hydra.sweeper.n_trials={n_trials}, n_jobs={n_jobs}: n_trials must be at least 0 "
                             "and n_jobs (draws per batch) at least 1.")
        self.sampler, self.direction, self.n_trials, self.n_jobs = sampler, direction, n_trials, n_jobs
        self.study_name = study_name
        self.params = dict(params or {})
        self.config = self.hydra_context = self.launcher = None
        self.job_idx = 0

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def sweep(self, arguments: List[str]) -> None:
        from hydra_plugins.odyssey_optuna._study import run_study  # imports Optuna: only an Optuna sweep pays for it

        run_study(self, list(arguments))
