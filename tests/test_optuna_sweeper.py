"""The Optuna sweeper (hydra_plugins/odyssey_optuna): Greff's random search drawn from a seed through Optuna's
ask/tell API, kept as an Optuna study in <sweep dir>/optuna.db that Optuna reads and a rerun resumes; failed
trials never stop it; TPE and QMC on request; another sweep's database, and the retired hydra-optuna-sweeper,
refused in one line.

Most tests run the preset's real multirun in this process (Hydra's basic launcher, one trial after another)
with each trial's training replaced by a made-up objective, so the sweeper and Optuna are what is tested."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from conftest import ROOT, TINY
from sweeps.presets import compose_preset

SWEEPS = ROOT / "sweeps"
PARAMS = {"lr", "hidden", "optimizer.one_minus_momentum", "input_noise"}  # Greff's search space (the presets')


class Killed(BaseException):
    """What a SIGKILL does to the sweep's process: nothing after it runs (no launcher or sweeper catches it)."""


def made_up(cfg) -> float:
    """A trial's test objective without training: best at lr 1e-4."""
    return -(math.log10(cfg.lr) + 4) ** 2 - cfg.input_noise


def sweep(sweep_dir: Path, *overrides: str, preset: str = "random_search", value=made_up,
          config_dir: Path = SWEEPS) -> list[str]:
    """`python train.py -m -cd sweeps -cn <preset> <overrides>` in this process, each trial `value(cfg)` instead of
    training: the folders of the trials it launched, in order."""
    launched = []

    @hydra.main(config_path=str(ROOT / "conf"), config_name=preset, version_base="1.3")
    def trial(cfg):
        launched.append(HydraConfig.get().job.override_dirname)
        return value(cfg)

    argv, root = sys.argv, logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sys.argv = ["train.py", "-m", "-cd", str(config_dir), "-cn", preset, "~launch", "hydra/launcher=basic",
                *overrides, f"hydra.sweep.dir={sweep_dir}"]
    try:
        trial()
    finally:  # leave the process as it was for the tests after this one
        sys.argv = argv
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        root.handlers[:], root.level = handlers, level
    return launched


def storage(sweep_dir: Path) -> str:
    return f"sqlite:///{sweep_dir / 'optuna.db'}"


def the_study(sweep_dir: Path):
    """The one study of the sweep folder's database, as anyone would load it."""
    import optuna

    (summary,) = optuna.get_all_study_summaries(storage(sweep_dir))
    return optuna.load_study(study_name=summary.study_name, storage=storage(sweep_dir))


def folder(params: dict, cell: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted({"cell": cell, **params}.items()))


# ---------------------------------------------------------------- seeded draws


def test_a_seeded_random_search_draws_the_same_trials_every_time_and_another_seed_draws_others(tmp_path):
    first = sweep(tmp_path / "a", "cell=v", "hydra.sweeper.n_trials=4")
    assert len(set(first)) == 4
    assert sweep(tmp_path / "b", "cell=v", "hydra.sweeper.n_trials=4") == first
    assert not set(sweep(tmp_path / "c", "cell=v", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.seed=1")) & set(first)


# The first draws of seed 0 as hydra-optuna-sweeper 1.3.0 drew them on Optuna 2.10.1 (`python -m sweeps.presets
# random_search cell=nig` before the switch). Measured 2026-12-06: all 200 folders of that command, and the 6 of
# `random_search cell=v,nig hydra.sweeper.n_trials=6` (the cell a categorical draw), are the same with Optuna 5.1.0;
# the sixth is the best draw of docs/studies/greff_jsb.md.
OPTUNA_2_10_SEED_0 = [
    "cell=nig,hidden=103,input_noise=0.5448831829968969,lr=0.00015676677195506063,optimizer.one_minus_momentum=0.16051911333587626",
    "cell=nig,hidden=88,input_noise=0.8917730007820798,lr=4.9501595537331986e-05,optimizer.one_minus_momentum=0.07501954443620121",
    "cell=nig,hidden=48,input_noise=0.5288949197529045,lr=0.0071556821617548725,optimizer.one_minus_momentum=0.3832216850492786",
    "cell=nig,hidden=169,input_noise=0.08712929970154071,lr=0.00018714500686240683,optimizer.one_minus_momentum=0.013869861245357327",
    "cell=nig,hidden=136,input_noise=0.8700121482468192,lr=1.2046852412030323e-06,optimizer.one_minus_momentum=0.36000911929116075",
    "cell=nig,hidden=126,input_noise=0.7805291762864555,lr=0.008212461922256876,optimizer.one_minus_momentum=0.08374496868436809",
]


def test_seed_0_draws_the_trials_hydra_optuna_sweeper_drew_on_optuna_2_10(tmp_path):
    assert sweep(tmp_path / "s", "cell=nig", "hydra.sweeper.n_trials=6") == OPTUNA_2_10_SEED_0


# ---------------------------------------------------------------- trial folders


def folders(sweep_dir: Path, *overrides: str, value=made_up) -> list[tuple[str, str]]:
    """(trial folder under sweep_dir, its drawn values as override_dirname) for each trial a sweep launched."""
    seen = []

    def recording(cfg):
        job = HydraConfig.get()
        seen.append((Path(job.runtime.output_dir).relative_to(sweep_dir).as_posix(), job.job.override_dirname))
        return value(cfg)

    sweep(sweep_dir, *overrides, value=recording)
    return seen


def test_trial_folders_are_named_by_a_stable_trial_number_and_the_draws_stay_in_the_trials_overrides(tmp_path):
    named = folders(tmp_path / "a", "cell=nig", "hydra.sweeper.n_trials=6")
    assert [f for f, _ in named] == [f"cell=nig,trial_{n:03d}" for n in range(6)]  # a shell loop's cells apart
    assert [values for _, values in named] == OPTUNA_2_10_SEED_0  # the same draws, now in the overrides
    assert folders(tmp_path / "b", "cell=nig", "hydra.sweeper.n_trials=6") == named  # the seed numbers them alike


def test_a_drawn_cell_names_the_folder_beside_the_trial_number(tmp_path):
    named = folders(tmp_path / "rs", "cell=v,nig", "hydra.sweeper.n_trials=4")
    assert [f for f, _ in named] == [f"cell={values.split(',')[0].split('=')[1]},trial_{n:03d}"
                                     for n, (_, values) in enumerate(named)]


def test_a_sweep_begun_with_folders_named_by_the_draws_resumes_each_trial_in_its_old_folder(tmp_path):
    for old in OPTUNA_2_10_SEED_0[:3]:  # an older sweep's folders (and no study database: deleted, or from 2.10)
        (tmp_path / "rs" / old).mkdir(parents=True)
    named = folders(tmp_path / "rs", "cell=nig", "hydra.sweeper.n_trials=6")
    assert [f for f, _ in named] == OPTUNA_2_10_SEED_0[:3] + [f"cell=nig,trial_{n:03d}" for n in (3, 4, 5)]
    assert sorted(p.name for p in (tmp_path / "rs").iterdir() if p.is_dir()) == sorted(f for f, _ in named)


def test_a_failed_trials_retry_runs_in_its_draws_folder(tmp_path):
    def fails_when_wide(cfg):
        return None if cfg.hidden > 120 else made_up(cfg)

    first = folders(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=4", value=fails_when_wide)
    failed = [(f, values) for f, values in first if int(values.split("hidden=")[1].split(",")[0]) > 120]
    assert failed and folders(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=4") == failed


# The first folders of `python -m sweeps.presets greff_jsb cell=v` as printed before greff_jsb.yaml composed
# random_search.yaml and before trial folders were numbered (2026-12-06; all 50 of cell=v and of cell=nfg compared
# equal): the draws the study of docs/studies/greff_jsb.md holds, which its continuation must draw again (a sweep
# folder holding these old names resumes each trial in it: test_a_sweep_begun_with_folders_named_by_the_draws...).
GREFF_JSB_V_FOLDERS = [
    "multirun/greff_jsb/cell=v,hidden=103,input_noise=0.5448831829968969,lr=0.00015676677195506063,optimizer.one_minus_momentum=0.16051911333587626",
    "multirun/greff_jsb/cell=v,hidden=88,input_noise=0.8917730007820798,lr=4.9501595537331986e-05,optimizer.one_minus_momentum=0.07501954443620121",
    "multirun/greff_jsb/cell=v,hidden=48,input_noise=0.5288949197529045,lr=0.0071556821617548725,optimizer.one_minus_momentum=0.3832216850492786",
]


def test_greff_jsb_draws_the_trials_its_study_ran_into_numbered_folders(capsys):
    from sweeps import presets

    launched = presets.trials("greff_jsb", ["cell=v", "hydra.sweeper.n_trials=3"])
    assert [",".join(sorted(t)) for t in launched] == [f.split("/")[-1] for f in GREFF_JSB_V_FOLDERS]
    presets.main(["greff_jsb", "cell=v", "hydra.sweeper.n_trials=3"])  # the folders `-m` launches them into
    assert capsys.readouterr().out.split() == [f"multirun/greff_jsb/cell=v,trial_{n:03d}" for n in range(3)]


def test_greff_nottingham_draws_greff_jsbs_trials_so_the_two_data_sets_pair_draw_by_draw():
    from sweeps import presets

    first = ["cell=v", "hydra.sweeper.n_trials=3"]
    drawn = presets.trials("greff_nottingham", first)
    assert len(drawn) == 3 and drawn == presets.trials("greff_jsb", first)
    nottingham, jsb = compose_preset("greff_nottingham"), compose_preset("greff_jsb")
    assert (nottingham.task.name, nottingham.task.loss) == ("nottingham", jsb.task.loss) == ("nottingham", "per_sequence")
    for key in ("batch_size", "epochs", "patience", "optimizer"):  # Greff's regime, as on JSB
        assert nottingham[key] == jsb[key]


# ---------------------------------------------------------------- the study in the sweep folder


def test_the_study_is_an_optuna_sqlite_database_in_the_sweep_folder_with_every_trials_value_and_params(tmp_path):
    import optuna

    launched = sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=3")
    assert (tmp_path / "rs" / "optuna.db").is_file()
    assert [s.study_name for s in optuna.get_all_study_summaries(storage(tmp_path / "rs"))] == ["rs/cell=v"]
    study = the_study(tmp_path / "rs")  # a plain RDB storage: what optuna-dashboard opens
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # random_search.yaml: test accuracy
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert [folder(t.params, "v") for t in study.trials] == launched  # the draws named the folders
    for t in study.trials:
        assert set(t.params) == PARAMS and isinstance(t.params["hidden"], int)
        assert t.value == pytest.approx(-(math.log10(t.params["lr"]) + 4) ** 2 - t.params["input_noise"])
        assert t.user_attrs["optuna"] == optuna.__version__  # the version that drew it
    assert study.user_attrs["odyssey_sweep"]["preset"] == "random_search"
    assert study.best_trial.value == max(t.value for t in study.trials)


def test_a_rerun_resumes_the_study_draws_no_trial_twice_and_more_trials_go_on_with_the_seeds_sequence(tmp_path):
    first = sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=3")
    assert sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=3") == []  # every trial told: nothing to launch
    more = sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=5")
    assert first + more == sweep(tmp_path / "at_once", "cell=v", "hydra.sweeper.n_trials=5")
    trials = the_study(tmp_path / "rs").trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4] and len({folder(t.params, "v") for t in trials}) == 5


def test_a_study_is_named_by_what_decides_its_trials_values_so_more_epochs_retell_the_same_draws(tmp_path):
    import optuna

    first = sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=2", "epochs=3")
    assert sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=2", "epochs=3", "data_dir=/elsewhere",
                 "wandb.mode=disabled") == []  # the same study: nothing to launch
    assert sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=2", "epochs=6") == first  # runs extend there
    assert sorted(s.study_name for s in optuna.get_all_study_summaries(storage(tmp_path / "rs"))) == \
        ["rs/cell=v,epochs=3", "rs/cell=v,epochs=6"]


def test_trials_a_killed_sweep_left_unfinished_run_again_in_their_own_folders(tmp_path):
    import optuna

    calls = []

    def killed_in_the_second_batch(cfg):
        calls.append(cfg)
        if len(calls) == 3:
            raise Killed
        return made_up(cfg)

    command = ["cell=v", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2"]
    with pytest.raises(Killed):
        sweep(tmp_path / "rs", *command, value=killed_in_the_second_batch)
    states = [t.state for t in the_study(tmp_path / "rs").trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.RUNNING] * 2
    rerun = sweep(tmp_path / "rs", *command)
    assert rerun == sweep(tmp_path / "fresh", *command)[2:]  # the second batch again, in its own folders
    trials = the_study(tmp_path / "rs").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 4 and len(trials) == 4


def test_a_failed_trial_is_told_failed_the_study_goes_on_and_a_rerun_retries_its_draw(tmp_path):
    import optuna

    def fails_when_wide(cfg):
        if cfg.hidden > 120:
            raise RuntimeError("out of memory")  # a trial whose job raises
        return None if cfg.hidden < 60 else made_up(cfg)  # train.py's return for a failed or unscored run

    command = ["cell=v", "hydra.sweeper.n_trials=6"]
    launched = sweep(tmp_path / "rs", *command, value=fails_when_wide)
    assert len(launched) == 6  # failures did not stop the study (hydra-optuna-sweeper: max_failure_rate 1.0)
    trials = the_study(tmp_path / "rs").trials
    failed = [folder(t.params, "v") for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed == [folder(t.params, "v") for t in trials if not 60 <= t.params["hidden"] <= 120] and 0 < len(failed) < 6

    assert sweep(tmp_path / "rs", *command) == failed  # the rerun retries only the failed draws, in their folders
    trials = the_study(tmp_path / "rs").trials
    retries = [t for t in trials if "retry_of" in t.user_attrs]
    assert [trials[t.user_attrs["retry_of"]].params for t in retries] == [t.params for t in retries]
    assert {t.state for t in retries} == {optuna.trial.TrialState.COMPLETE} and len(trials) == 6 + len(failed)
    assert sweep(tmp_path / "rs", *command) == []  # nothing left to retry


# ---------------------------------------------------------------- samplers, batches, direction


@pytest.mark.slow
def test_random_is_greffs_sampler_and_tpe_and_qmc_are_selectable_and_seeded(tmp_path):
    for preset in ("random_search", "greff_jsb"):
        assert compose_preset(preset).hydra.sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    for sampler, target in (("tpe", "optuna.samplers.TPESampler"), ("qmc", "optuna.samplers.QMCSampler")):
        command = ["cell=v", f"hydra/sweeper/sampler={sampler}", "hydra.sweeper.sampler.seed=3",
                   "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=1"]
        if sampler == "tpe":
            command.append("hydra.sweeper.sampler.n_startup_trials=2")  # the last two trials from its model
        first = sweep(tmp_path / f"{sampler}1", *command)
        assert len(set(first)) == 4 and sweep(tmp_path / f"{sampler}2", *command) == first
        assert the_study(tmp_path / f"{sampler}1").user_attrs["odyssey_sweep"]["sampler"]["_target_"] == target


def test_n_jobs_is_the_draws_per_batch_and_direction_the_studys(tmp_path, monkeypatch):
    import optuna
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    batches = []
    launch = BasicLauncher.launch
    monkeypatch.setattr(BasicLauncher, "launch", lambda self, jobs, initial_job_idx:
                        batches.append(len(jobs)) or launch(self, jobs, initial_job_idx))
    sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2",
          "hydra.sweeper.direction=minimize")
    assert batches == [2, 2, 1]
    assert the_study(tmp_path / "rs").direction == optuna.study.StudyDirection.MINIMIZE


# ---------------------------------------------------------------- bad input


def one_line_exit(*args, **kwargs) -> str:
    with pytest.raises(SystemExit) as stop:
        sweep(*args, **kwargs)
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


def test_a_database_of_another_sweep_in_the_folder_is_refused_in_one_line_and_left_alone(tmp_path):
    import optuna

    sweep(tmp_path / "rs", "cell=v", "hydra.sweeper.n_trials=2")
    others = {
        "preset": (["cell=v", "hydra.sweeper.n_trials=2"], "greff_jsb"),
        "direction": (["cell=v", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=minimize"], "random_search"),
        "search_space": (["cell=v", "hydra.sweeper.n_trials=2", "hydra.sweeper.params.lr='tag(log, interval(1e-5, 1e-1))'"],
                         "random_search"),
        "sampler": (["cell=v", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=1"], "random_search"),
    }
    for what, (command, preset) in others.items():
        message = one_line_exit(tmp_path / "rs", *command, preset=preset)
        assert f"{what} " in message and "rs/cell=v" in message and str(tmp_path / "rs" / "optuna.db") in message
    assert len(the_study(tmp_path / "rs").trials) == 2  # nothing was mixed in
    sweep(tmp_path / "rs", "cell=nig", "hydra.sweeper.n_trials=2")  # the same sweep for another cell: its own study
    assert len(optuna.get_all_study_summaries(storage(tmp_path / "rs"))) == 2


def test_a_sweep_with_nothing_to_draw_is_refused_in_one_line(tmp_path):
    assert "nothing to draw" in one_line_exit(tmp_path / "rs", "cell=v", "hydra.sweeper.params=null", preset="random_search")
    assert not (tmp_path / "rs" / "optuna.db").exists()


OLD_SWEEP_FILE = """\
defaults:
  - config
  - override /hydra/sweeper: optuna
  - override /hydra/sweeper/sampler: random
  - _self_

hydra:
  sweeper:
    sampler:
      seed: 0
    direction: maximize
    n_trials: 2
    n_jobs: 2
    max_failure_rate: 1.0
    params:
      lr: tag(log, interval(1e-6, 1e-2))
"""


def test_a_sweep_still_naming_hydra_optuna_sweeper_stops_with_one_line_saying_what_to_write(tmp_path):
    (tmp_path / "old.yaml").write_text(OLD_SWEEP_FILE)
    for message in (
        one_line_exit(tmp_path / "a", preset="old", config_dir=tmp_path),  # a sweep file from before the switch
        one_line_exit(tmp_path / "b", "hydra/sweeper=optuna", "lr=1e-3,1e-2", preset="grid"),  # a command line
        one_line_exit(tmp_path / "c", "cell=v", preset="random_search",  # the old class named outright
                      *["hydra.sweeper._target_=hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"]),
    ):
        assert "override /hydra/sweeper: odyssey_optuna" in message and "max_failure_rate" in message
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")  # nothing ran


# ---------------------------------------------------------------- the console


def test_optunas_own_info_lines_come_only_with_verbose(tmp_path):
    from training.logs import configure_logging

    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    chatty = [logging.getLogger(name) for name in ("optuna", "alembic")]  # Hydra's logging set-up leaves these alone
    for logger in chatty:
        logger.addHandler(handler)
    try:
        sweep(tmp_path / "quiet", "cell=v", "hydra.sweeper.n_trials=2")
        assert lines == []
        sweep(tmp_path / "verbose", "cell=v", "hydra.sweeper.n_trials=2", "verbose=true")
        assert "A new study created in RDB with name: verbose/cell=v" in lines
    finally:
        for logger in chatty:
            logger.removeHandler(handler)
        configure_logging(False)


# ---------------------------------------------------------------- real sweeps, in subprocesses


@pytest.mark.slow
def test_an_optuna_sweep_says_one_line_about_its_study_and_nothing_else(tmp_path):
    """No "Study name: no-name-<uuid>", no Optuna or alembic INFO lines: the study's line, then the trials."""
    command = [sys.executable, "train.py", "-m", "-cd", "sweeps", "-cn", "random_search", "cell=v",
               "hydra.sweeper.n_trials=2", "~launch", "hydra/launcher=dry_run", f"hydra.sweep.dir={tmp_path}"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = (out.stdout + out.stderr).splitlines()
    assert len(lines) == 3, lines
    assert f"Optuna study '{tmp_path.name}/cell=v' in {tmp_path}/optuna.db (RandomSampler, seed=0): " \
           "trials 2 to draw" in lines[0]
    assert all(line.startswith("dry-run: ") for line in lines[1:])


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["joblib", "population"])
def test_greffs_search_trains_through_each_launcher_into_the_study_and_a_rerun_retrains_nothing(launch, tmp_path):
    """The values the study holds are the trials' records' test objectives; a rerun launches nothing."""
    command = [sys.executable, "train.py", "-m", "-cd", "sweeps", "-cn", "random_search", "cell=gru",
               *[o for o in TINY if not o.startswith("hidden=")], "hydra.sweeper.n_trials=2", f"launch={launch}",
               "hydra.launcher.n_jobs=2" if launch == "joblib" else "hydra.launcher.width_bucket=null",
               f"hydra.sweep.dir={tmp_path}"]
    run = lambda: subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                                 env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    first = run()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    records = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.glob("*/result.json")}
    study = the_study(tmp_path)
    assert len(records) == 2 and {r["status"] for r in records.values()} == {"completed"}
    by_lr = {r["config"]["lr"]: r for r in records.values()}
    for t in study.trials:
        record = by_lr[t.params["lr"]]
        assert record["config"]["hidden"] == t.params["hidden"]
        assert t.value == pytest.approx(record["test"][record["objective"]["name"]])
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/result.json")}
    again = run()
    assert again.returncode == 0 and "trials 2 told" in again.stdout + again.stderr
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/result.json")} == stamps
