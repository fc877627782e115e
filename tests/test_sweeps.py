"""Sweeps: every preset in sweeps/ composes and says what it runs; Greff's random search draws from his
ranges with a seed; a sweep runs in parallel, resumes without retraining, and outlives its failed trials."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf
import yaml

from conftest import CACHE_VARIABLES, ROOT, TINY
from sweeps.presets import SWEEPS, compose_preset, preset_names, trial_dir, trial_folders, trials
from training import check_config

LAUNCHERS = {"joblib": "JoblibLauncher", "joblib_gpu": "JoblibLauncher",
             "submitit_local": "LocalLauncher", "slurm": "SlurmLauncher"}
GREFF_CELLS = ["v", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr"]


def header(name: str) -> str:
    lines = (SWEEPS / f"{name}.yaml").read_text().splitlines()
    return "\n".join(line for line in lines[: next(i for i, l in enumerate(lines) if not l.startswith("#"))])


def as_dict(overrides: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides)


# ---------------------------------------------------------------- the presets, composed in-process


def test_the_three_presets_exist():
    assert {"grid", "random_search", "tutorial"} <= set(preset_names())


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_composes_to_a_valid_resumable_parallel_sweep(name):
    cfg = compose_preset(name)
    check_config(cfg)
    assert cfg.hydra.sweep.dir == f"multirun/{name}"  # fixed (no timestamp), so a rerun finds its trials
    assert cfg.hydra.sweep.subdir == cfg.hydra.job.override_dirname  # a trial's folder is its overrides
    assert {"wandb.mode", "data_dir", "launch"} <= set(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    env = cfg.hydra.job.env_set  # one single-threaded process per core, set before JAX starts
    assert env.OMP_NUM_THREADS == "1" and "XLA_FLAGS" not in env  # XLA's: every process's (training/devices.py)
    assert env.XLA_PYTHON_CLIENT_PREALLOCATE == "false"
    assert cfg.speed.cpu_devices == 1  # the launch settings win over conf/config.yaml's: cores go to parallel trials


@pytest.mark.slow
@pytest.mark.parametrize("name", preset_names())
def test_every_preset_header_gives_its_command_job_count_and_cost(name):
    text = header(name)
    assert f"python train.py -m -cd sweeps -cn {name}" in text
    jobs = re.search(r"# Jobs:.*= ([\d,]+) trials", text)
    assert jobs, f"{name}.yaml: no '# Jobs: ... = N trials' line"
    total = int(jobs.group(1).replace(",", ""))
    cfg = compose_preset(name)
    if cfg.hydra.sweeper._target_.endswith("OptunaSweeper"):  # one study per cell, run by a shell loop
        cells = re.search(r"for cell in ([\w ]+); do", text).group(1).split()
        assert total == len(cells) * cfg.hydra.sweeper.n_trials
    else:
        assert total == len(trials(name))
    cost = re.search(r"# Cost:(.*)", text)
    assert cost and re.search(r"\d", cost.group(1)), f"{name}.yaml: no measured '# Cost:' line"


@pytest.mark.parametrize("launch", sorted(LAUNCHERS))
def test_each_launch_option_selects_its_hydra_launcher(launch):
    cfg = compose_preset("tutorial", [f"launch={launch}"])
    assert cfg.hydra.launcher._target_.endswith(LAUNCHERS[launch])
    assert cfg.hydra.job.env_set.XLA_PYTHON_CLIENT_PREALLOCATE == "false"  # GPUs shared, not grabbed


@pytest.mark.slow
def test_every_value_a_grid_preset_sweeps_is_a_valid_config():
    for name in ("grid", "tutorial"):
        params = compose_preset(name).hydra.sweeper.params
        for key, values in params.items():
            for value in str(values).split(","):
                check_config(compose_preset(name, [f"{key}={value}"]))


@pytest.mark.slow
def test_the_tutorial_preset_is_the_tutorials_comparison_for_all_eleven_cells_and_three_seeds():
    jobs = [as_dict(t) for t in trials("tutorial")]
    cells = ["v", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr", "gru", "srn"]  # the tutorial's eleven
    assert sorted({(j["cell"], j["seed"]) for j in jobs}) == sorted((c, s) for c in cells for s in ("0", "1", "2"))
    cfg = compose_preset("tutorial")
    assert (cfg.task.name, cfg.task.layout, cfg.epochs, cfg.hidden, cfg.lr, cfg.optimizer.name) == \
        ("mnist", "rows", 20, 128, 1e-3, "adam")


def test_trial_folders_are_named_by_their_overrides_without_launcher_or_wandb_keys():
    a = trial_dir("grid", ["cell=gru", "lr=0.001", "hidden=32"])
    b = trial_dir("grid", ["cell=gru", "lr=0.001", "hidden=32", "wandb.mode=disabled", "launch=slurm",
                           "data_dir=/somewhere/else"])
    assert a == b == Path("multirun/grid/cell=gru,hidden=32,lr=0.001")


# ---------------------------------------------------------------- Greff's random search


@pytest.mark.slow
def test_random_search_draws_lie_in_greffs_ranges_with_the_right_shapes():
    draws = [as_dict(t) for t in trials("random_search", ["cell=nig"])]
    assert len(draws) == 200 and all(d["cell"] == "nig" for d in draws)
    lr = [float(d["lr"]) for d in draws]
    hidden = [d["hidden"] for d in draws]
    one_minus = [float(d["optimizer.one_minus_momentum"]) for d in draws]
    noise = [float(d["input_noise"]) for d in draws]
    assert all(1e-6 <= x <= 1e-2 for x in lr)
    assert all(h.isdigit() and 20 <= int(h) <= 200 for h in hidden)
    assert all(0.01 <= x <= 1.0 for x in one_minus)
    assert all(0.0 <= x <= 1.0 for x in noise)
    # log-uniform: log10(lr) has mean -4 over [-6, -2] (std of the mean over 200 draws ≈ 0.08); uniform would give ≈ -2.3
    assert abs(sum(math.log10(x) for x in lr) / 200 + 4) < 0.4
    assert abs(sum(math.log10(x) for x in one_minus) / 200 + 1) < 0.2  # log10 over [-2, 0]
    assert abs(sum(math.log(int(h)) for h in hidden) / 200 - (math.log(20) + math.log(200)) / 2) < 0.2
    assert abs(sum(noise) / 200 - 0.5) < 0.1


@pytest.mark.slow
def test_random_search_is_reproducible_from_its_seed_and_the_seed_matters():
    first = trials("random_search", ["cell=v", "hydra.sweeper.n_trials=5"])
    assert trials("random_search", ["cell=v", "hydra.sweeper.n_trials=5"]) == first
    assert trials("random_search", ["cell=v", "hydra.sweeper.n_trials=5", "hydra.sweeper.sampler.seed=1"]) != first
    # every cell of the loop gets the same draws (a paired comparison); only the cell differs
    other = trials("random_search", ["cell=gru", "hydra.sweeper.n_trials=5"])
    assert [t[:-1] for t in other] == [t[:-1] for t in first]


@pytest.mark.slow
def test_a_random_search_trial_is_sgd_with_nesterov_and_momentum_one_minus_the_draw():
    draw = trials("random_search", ["cell=v", "hydra.sweeper.n_trials=1"])[0]
    cfg = compose_preset("random_search", draw)
    check_config(cfg)
    x = float(as_dict(draw)["optimizer.one_minus_momentum"])
    assert (cfg.optimizer.name, cfg.optimizer.nesterov) == ("sgd", True)
    assert cfg.optimizer.momentum == pytest.approx(1 - x)
    assert (cfg.lr, cfg.hidden, cfg.input_noise) == (float(as_dict(draw)["lr"]), int(as_dict(draw)["hidden"]),
                                                     float(as_dict(draw)["input_noise"]))


@pytest.mark.slow
def test_a_cells_random_search_trains_as_one_population_or_one_per_width_bucket():
    """All its draws (lr, hidden, momentum, input noise) are per-trial data of one compiled program."""
    from training.population import group_by_shape

    draws = trials("random_search", ["cell=nig"])[:40]
    cfgs = [compose_preset("random_search", d) for d in draws]
    cfgs = [OmegaConf.masked_copy(c, [k for k in c if k != "hydra"]) for c in cfgs]  # what the launcher trains
    assert group_by_shape(cfgs, width_bucket=None) == [sorted(range(40), key=lambda i: cfgs[i].hidden)]
    buckets = group_by_shape(cfgs, width_bucket=32)  # CPU's default: hidden 20–200 falls in 7 buckets of 32
    assert 2 <= len(buckets) <= 7 and sorted(i for g in buckets for i in g) == list(range(40))
    assert all(len({(cfgs[i].hidden - 1) // 32 for i in g}) == 1 for g in buckets)


# ---------------------------------------------------------------- wandb


def test_the_runs_of_a_preset_share_a_wandb_group_and_carry_cell_and_task_tags(monkeypatch, tmp_path):
    import wandb
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from training.tracking import Tracker

    seen = []
    run = SimpleNamespace(id="fake", dir=str(tmp_path / "wandb" / "run" / "files"))
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.append(kw) or run)
    for draw in (["cell=np", "lr=0.001"], ["cell=gru", "lr=0.01"]):
        cfg = compose_preset("grid", [*draw, "wandb.mode=offline"])
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN
        HydraConfig.instance().set_config(cfg)
        Tracker(cfg, tmp_path, {}, "accuracy")
    HydraConfig.instance().cfg = None
    assert [kw["group"] for kw in seen] == ["grid", "grid"]
    assert [sorted(kw["tags"]) for kw in seen] == [["cell:np", "task:mnist"], ["cell:gru", "task:mnist"]]


def test_the_wandb_sweep_file_runs_train_py_with_valid_overrides_of_the_random_search():
    spec = yaml.safe_load((SWEEPS / "random_search.wandb.yaml").read_text())
    assert (ROOT / spec["program"]).exists() and spec["method"] == "random"
    command = spec["command"]
    assert command[-1] == "${args_no_hyphens}"  # key=value: Hydra overrides
    preset = next(c.split("=", 1)[1] for c in command if c.startswith("--config-name="))
    assert "--config-dir=sweeps" in command and preset in preset_names()

    params = spec["parameters"]
    assert params["lr"] == {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-2}
    assert (params["hidden"]["min"], params["hidden"]["max"], params["hidden"]["q"]) == (20, 200, 1)
    assert params["hidden"]["distribution"] == "q_log_uniform_values"
    assert (params["optimizer.one_minus_momentum"]["min"], params["optimizer.one_minus_momentum"]["max"]) == (0.01, 1.0)
    assert params["input_noise"] == {"distribution": "uniform", "min": 0.0, "max": 1.0}
    assert params["cell"]["values"] == GREFF_CELLS
    for end in ("min", "max"):  # the agent's command line at both ends of every range composes
        overrides = [f"{k}={p.get(end, p.get('value', (p.get('values') or [None])[0]))}" for k, p in params.items()]
        cfg = compose_preset(preset, overrides)
        check_config(cfg)
        assert cfg.lr == params["lr"][end] and cfg.hidden == params["hidden"][end]
        assert cfg.optimizer.momentum == pytest.approx(1 - params["optimizer.one_minus_momentum"][end])
        assert cfg.hydra.run.dir.startswith("multirun/random_search_wandb/cell=v,hidden=")


# ---------------------------------------------------------------- real sweeps, in subprocesses

TINY_NO_HIDDEN = [o for o in TINY if not o.startswith("hidden=")]


def sweep(preset: str, *overrides: str, sweep_dir: Path) -> subprocess.CompletedProcess:
    """`python train.py -m -cd sweeps -cn <preset> ...`, as a user types it, into `sweep_dir`."""
    cmd = [sys.executable, "train.py", "-m", "-cd", "sweeps", "-cn", preset, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def records(sweep_dir: Path) -> dict[str, dict]:
    import json

    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/result.json"))}


def stamps(sweep_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(sweep_dir)): p.stat().st_mtime_ns
            for p in sweep_dir.glob("*/*") if p.name in ("result.json", "metrics.jsonl")}


@pytest.mark.slow
def test_a_tiny_grid_runs_in_parallel_and_a_rerun_retrains_nothing(tmp_path, monkeypatch):
    for key in CACHE_VARIABLES:  # the XLA dump below needs real compiles
        monkeypatch.delenv(key, raising=False)
    xla_dump = tmp_path / "xla"
    command = [*TINY, "cell=v,gru", "lr=1e-3,1e-2", "hydra.launcher.n_jobs=2",
               # a dump folder through env_set: files there prove env_set's flags reached JAX in the workers
               f'+hydra.job.env_set.XLA_FLAGS="--xla_dump_to={xla_dump} --xla_dump_max_hlo_modules=1"']
    sweep("grid", *command, sweep_dir=tmp_path / "grid")
    found = records(tmp_path / "grid")
    assert sorted(found) == sorted(f"batch_size=16,cell={c},eval_batch_size=32,hidden=8,lr={lr},task.length=6,"
                                   "task.test_size=32,task.train_size=64,task.valid_size=32,task=adding"
                                   for c in ("v", "gru") for lr in ("0.001", "0.01"))
    assert [r["status"] for r in found.values()] == ["completed"] * 4
    assert {(r["cell"], r["config"]["lr"]) for r in found.values()} == {(c, lr) for c in ("v", "gru") for lr in (1e-3, 1e-2)}
    assert {r["device_count"] for r in found.values()} == {1}  # the cores go to parallel trials, one device each
    assert any(xla_dump.iterdir())  # env_set reached the joblib (loky) workers before JAX read XLA_FLAGS
    hydra_yaml = yaml.safe_load(next((tmp_path / "grid").glob("*/.hydra/hydra.yaml")).read_text())
    assert hydra_yaml["hydra"]["runtime"]["choices"]["hydra/launcher"] == "joblib"
    # A trial of the sweep is its lone run bit for bit: the same kernels (training/devices.pin_matmul_kernels), the same
    # device count (speed.cpu_devices=1, the launcher's), whether a joblib worker or this process runs it.
    from omegaconf import open_dict
    from training import train

    cfg = compose_preset("grid", [*TINY, "cell=v", "lr=1e-2"])
    with open_dict(cfg):
        del cfg["hydra"]  # the job's own config, as the worker's train.py gets it
    lone = train(cfg, tmp_path / "lone")
    (trial,) = [r for r in found.values() if (r["cell"], r["config"]["lr"]) == ("v", 1e-2)]
    assert (trial["valid"], trial["test"], trial["final"]) == (lone["valid"], lone["test"], lone["final"])

    before = stamps(tmp_path / "grid")
    assert len(before) == 8
    out = sweep("grid", *command, sweep_dir=tmp_path / "grid")
    assert stamps(tmp_path / "grid") == before  # no record was rewritten: nothing retrained
    assert (out.stdout + out.stderr).count("nothing to do") == 4


@pytest.mark.slow
def test_diverged_and_crashed_trials_are_recorded_and_the_sweep_finishes_the_others(tmp_path):
    # lr=1e4 with SGD overflows within 8 steps (diverged); task.length=1 composes but the task refuses it (failed)
    command = [*TINY, "task.train_size=128", "cell=v", "optimizer=sgd", "lr=1e-2,1e4", "task.length=6,1",
               "hydra.launcher.n_jobs=2"]
    sweep("grid", *command, sweep_dir=tmp_path / "s")
    status = {(r["config"]["lr"], r["config"]["task"]["length"]): r["status"] for r in records(tmp_path / "s").values()}
    assert status == {(1e-2, 6): "completed", (1e4, 6): "diverged", (1e-2, 1): "failed", (1e4, 1): "failed"}
    failed = [r for r in records(tmp_path / "s").values() if r["status"] == "failed"]
    assert all("task.length must be at least 2" in r["error"] for r in failed)

    before = stamps(tmp_path / "s")
    sweep("grid", *command, sweep_dir=tmp_path / "s")  # the rerun retries failed trials only
    after = stamps(tmp_path / "s")
    changed = {k.split("/")[0] for k in before if before[k] != after[k]}
    assert changed == {d for d, r in records(tmp_path / "s").items() if r["status"] == "failed"}
    assert len(changed) == 2


@pytest.mark.slow
def test_random_search_runs_on_the_cluster_launcher_into_the_folders_its_seed_names(tmp_path):
    # submitit's local executor: the SLURM launcher's code path (pickled jobs, a submitit folder) on this machine
    command = [*TINY_NO_HIDDEN, "cell=gru", "hydra.sweeper.n_trials=2", "launch=submitit_local"]
    sweep("random_search", *command, sweep_dir=tmp_path / "rs")
    found = records(tmp_path / "rs")
    expected = set(trial_folders("random_search", command))
    assert sorted(f.rsplit(",", 1)[1] for f in expected) == ["trial_000", "trial_001"]  # numbered, not named by the draws
    assert set(found) == expected and len(found) == 2  # the dry run names exactly the folders the sweep wrote
    assert (tmp_path / "rs" / ".submitit").is_dir()
    for r in found.values():
        c = r["config"]
        assert r["status"] == "completed" and r["cell"] == "gru"
        assert 1e-6 <= c["lr"] <= 1e-2 and 20 <= c["hidden"] <= 200 and 0 <= c["input_noise"] <= 1
        assert c["optimizer"]["name"] == "sgd" and c["optimizer"]["nesterov"] is True
        assert c["optimizer"]["momentum"] == pytest.approx(1 - c["optimizer"]["one_minus_momentum"])


def test_the_preset_list_is_read_from_the_files_and_counts_what_their_headers_say(capsys):
    """`python -m sweeps.presets` lists without composing a trial (seconds, not minutes)."""
    from sweeps.presets import main

    main([])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    for name in preset_names():
        jobs = re.search(r"# Jobs:.*?([\d,]+) trials", (SWEEPS / f"{name}.yaml").read_text()).group(1).replace(",", "")
        assert name in lines
        if "per command" not in lines[name]:
            assert lines[name].endswith(f" {jobs} trials"), lines[name]


def test_the_preset_lister_answers_help_and_names_the_presets_when_given_an_unknown_one(capsys):
    from sweeps.presets import main

    main(["--help"])
    assert "python -m sweeps.presets" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["greff_jbs"])
    assert "No sweep preset 'greff_jbs'" in str(stop.value) and "greff_jsb, " in str(stop.value)
