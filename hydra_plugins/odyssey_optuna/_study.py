"""The study behind hydra_plugins.odyssey_optuna (see its docstring): the search space from Hydra overrides,
the SQLite study in the sweep folder, and the ask / launch / tell loop. A module named _*, so Hydra's plugin
scan does not import it (nor Optuna, seconds to import) for runs that are not Optuna sweeps."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from omegaconf import OmegaConf
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution,
                                  distribution_to_json)
from optuna.trial import TrialState

from training.logs import configure_logging

log = logging.getLogger("hydra_plugins.odyssey_optuna")

DATABASE = "optuna.db"  # in the sweep folder
SWEEP_ATTR = "odyssey_sweep"  # study user attr: what the sweep is (preset, search space, direction, sampler)
RETRY_ATTR = "retry_of"  # trial user attr: the number of the failed trial whose draw this trial reruns
VERSION_ATTR = "optuna"  # trial user attr: the Optuna version that drew it


def search_space(params: dict, arguments: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """({key: distribution}, {key: fixed override}) from `hydra.sweeper.params` and the command line's overrides,
    parsed with Hydra's override parser as hydra-optuna-sweeper did; a later override of a key wins."""
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(lines):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return space, fixed


def distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():  # Hydra's range: start, start + step, ..., below stop
        values = list(override.sweep_iterator())
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(value.step))
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
    if override.is_interval_sweep():  # int(interval(...)) keeps integer bounds; interval() alone gives floats
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ValueError(f"{override.input_line}: the Optuna sweeper takes a,b,c or choice(...), interval(a, b), "
                     "int(interval(a, b)), tag(log, ...) and range(a, b, step)")


def trial_overrides(params: dict[str, Any], space: dict, fixed: dict[str, str]) -> list[str]:
    """A trial's overrides, as hydra-optuna-sweeper wrote them (so its folder is the same): the draws in the
    search space's order, then the fixed overrides."""
    return [f"{key}={params[key]}" for key in space if key in params] + list(fixed.values())


def trial_folder(number: int, params: dict[str, Any], space: dict, fixed: dict[str, str], named_by: list[str]) -> str:
    """A trial's folder: the fixed overrides folders are named by (as a grid's: cell=nig, so the cells of a
    shell loop share one sweep folder), the cell where the search draws it, then the study's trial number
    (trial_007), stable for a seed: a rerun's study, or a fresh one from the same seed, numbers its draws
    alike. The drawn values are the trial's overrides (its .hydra/overrides.yaml and result.json's config)
    and the report's columns; in a folder name they ran to 130 characters of float digits."""
    parts = sorted(line for key, line in fixed.items() if key.lstrip("+~") in named_by)
    if "cell" in space and "cell" in params:
        parts.append(f"cell={params['cell']}")
    return ",".join([*parts, f"trial_{number:03d}"])


def values_folder(overrides: list[str], exclude_keys: list[str]) -> str:
    """The folder Hydra's override_dirname gave a trial before trials were numbered: its overrides, sorted."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    return get_overrides_dirname(OverridesParser.create().parse_overrides(overrides), list(exclude_keys), ",", "=")


def trial_subdir(sweeper, number: int, params: dict, space: dict, fixed: dict[str, str]) -> tuple[str, bool]:
    """(the trial's folder under the sweep folder, whether it is an older sweep's folder named by its values).
    A sweep begun before trials were numbered resumes each trial where its records are: nothing retrains
    beside an old folder."""
    exclude = list(sweeper.config.hydra.job.config.override_dirname.exclude_keys)
    old = values_folder(trial_overrides(params, space, fixed), exclude)
    if (Path(str(sweeper.config.hydra.sweep.dir)) / old).is_dir():
        return old, True
    named_by = [key.lstrip("+~") for key in fixed if key.lstrip("+~") not in exclude]
    return trial_folder(number, params, space, fixed, named_by), False


def sweep_identity(sweeper, space: dict) -> dict:
    """What a study's database must agree on with this sweep (stored as the study's user attr)."""
    sampler = OmegaConf.to_container(sweeper.config.hydra.sweeper.sampler, resolve=True)
    identity = {"preset": str(sweeper.config.hydra.job.config_name), "direction": sweeper.direction,
                "search_space": {key: distribution_to_json(d) for key, d in space.items()}, "sampler": sampler}
    return json.loads(json.dumps(identity))  # as it comes back from the database


def refuse_other_sweep(storage: str, database: Path, name: str, identity: dict) -> None:
    """One line and exit when the database holds a study of another sweep: another preset, search space
    or direction anywhere in it, or another sampler under this study's name."""
    for study in optuna.get_all_study_summaries(storage, include_best_trial=False):
        theirs = study.user_attrs.get(SWEEP_ATTR)
        keys = ["preset", "search_space", "direction"] + ["sampler"] * (study.study_name == name)
        differs = [k for k in keys if theirs is not None and theirs.get(k) != identity[k]]
        if theirs is None or differs:
            what = ("was not made by this sweeper" if theirs is None else
                    "differs: " + "; ".join(f"{k} {describe(k, theirs[k])} there, {describe(k, identity[k])} here"
                                            for k in differs))
            sys.exit(f"error: {database} holds the Optuna study {study.study_name!r} of another sweep ({what}); "
                     f"give this sweep its own folder (hydra.sweep.dir=... or study=<name>), or delete {database} "
                     "to start over.")


def describe(key: str, value: Any) -> str:
    if key == "search_space":
        return "{" + ", ".join(f"{k}: {json.loads(v)['name']}{json.loads(v)['attributes']}" for k, v in value.items()) + "}"
    if key == "sampler":
        return ", ".join(f"{k}={v}" for k, v in value.items()).replace("_target_=optuna.samplers.", "")
    return str(value)


def study_name(sweeper, fixed: dict[str, str]) -> str:
    """The sweep folder's name and the fixed overrides that decide the trials' values: those trial folders are
    named by (cell=nig), and epochs, which they are not (a rerun with more epochs is a new study of the same
    draws, whose runs go on from their checkpoints), but not data_dir, wandb.*, launch, verbose..."""
    if sweeper.study_name:
        return str(sweeper.study_name)
    folder = Path(str(sweeper.config.hydra.sweep.dir)).name
    left_out = set(sweeper.config.hydra.job.config.override_dirname.exclude_keys) - {"epochs"}
    named = sorted(line for key, line in fixed.items() if key.lstrip("+~") not in left_out)
    return f"{folder}/{','.join(named)}" if named else folder


def skip_draws(sampler, space: dict, direction: str, n: int) -> None:
    """Advance a fresh sampler past the study's first n draws by drawing them again in a throwaway
    in-memory study, so that it goes on with the same sequence (exactly, for the random sampler)."""
    if n:
        ghost = optuna.create_study(sampler=sampler, direction=direction)
        for _ in range(n):
            ghost.ask(space)


def objective(job) -> float | None:
    """The trial's value: train.py's return (its test objective), or None for a failed or unscored trial."""
    try:
        value = job.return_value
        return float(value) if value is not None and math.isfinite(float(value)) else None
    except Exception:  # the job raised, or returned no number: its own record and log say why
        return None


def run_study(sweeper, arguments: list[str]) -> None:
    config = sweeper.config
    configure_logging(config.verbose)  # Optuna is imported now: its INFO lines only if verbose
    space, fixed = search_space(sweeper.params, arguments)
    if not space:  # every trial would be the same run, in the same folder
        sys.exit("error: the Optuna sweeper has nothing to draw: give it a search space (hydra.sweeper.params, or a "
                 "sweep override such as 'lr=tag(log, interval(1e-5, 1e-2))').")
    folder = Path(str(config.hydra.sweep.dir))
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / DATABASE
    storage = f"sqlite:///{database.resolve()}"
    name, identity = study_name(sweeper, fixed), sweep_identity(sweeper, space)
    refuse_other_sweep(storage, database, name, identity)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sweeper.sampler,
                                direction=sweeper.direction, load_if_exists=True)
    if SWEEP_ATTR not in study.user_attrs:
        study.set_user_attr(SWEEP_ATTR, identity)

    trials = study.get_trials(deepcopy=False)
    told = sum(t.state.is_finished() for t in trials)
    drawn = [t for t in trials if RETRY_ATTR not in t.user_attrs]
    cut_off = [t for t in trials if t.state == TrialState.RUNNING]  # asked by a sweep that ended before telling them
    latest = {t.user_attrs.get(RETRY_ATTR, t.number): t for t in sorted(trials, key=lambda t: t.number)}
    failed = [t for t in latest.values() if t.state == TrialState.FAIL]
    for t in failed:
        study.enqueue_trial(t.params, user_attrs={RETRY_ATTR: t.user_attrs.get(RETRY_ATTR, t.number)})
    skip_draws(sweeper.sampler, space, sweeper.direction, len(drawn))
    queued = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    new = max(0, sweeper.n_trials - len(drawn))
    counts = [(told, "told"), (len(cut_off), "cut off, to run again"), (len(failed), "failed, to retry"), (new, "to draw")]
    log.info("Optuna study %r in %s (%s): %s", name, database, describe("sampler", identity["sampler"]),
             "trials " + ", ".join(f"{n} {what}" for n, what in counts if n) if any(n for n, _ in counts) else "nothing to draw")

    pending = [(t.number, t.user_attrs.get(RETRY_ATTR, t.number), t.params) for t in cut_off]
    asks, resumed_old = queued + new, 0
    while pending or asks:
        batch, pending = pending[: sweeper.n_jobs], pending[sweeper.n_jobs:]
        while len(batch) < sweeper.n_jobs and asks:
            trial = study.ask(space)
            trial.set_user_attr(VERSION_ATTR, optuna.__version__)
            batch.append((trial.number, trial.user_attrs.get(RETRY_ATTR, trial.number), trial.params))  # a retry: its draw's folder
            asks -= 1
        jobs = []
        for _, first, params in batch:
            subdir, old = trial_subdir(sweeper, first, params, space, fixed)
            resumed_old += old
            jobs.append([*trial_overrides(params, space, fixed), f"hydra.sweep.subdir={quoted(subdir)}"])
        returns = sweeper.launcher.launch(jobs, initial_job_idx=sweeper.job_idx)
        sweeper.job_idx += len(returns)
        for (number, _, _), job in zip(batch, returns):
            value = objective(job)
            if value is None:
                study.tell(number, state=TrialState.FAIL)
            else:
                study.tell(number, value)
    if resumed_old:
        log.info("%d trial%s went on in %s's folders named by their drawn values (an older sweep's); new draws are "
                 "numbered (trial_NNN)", resumed_old, "s" * (resumed_old != 1), folder)


def quoted(text: str) -> str:
    """A value for a Hydra override line, quoted: a folder name holds '=' and ','."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
