"""Population training: K trials in one vmapped program behave exactly like K lone runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import ROOT, compose_config, registered_cells
from training import train
from training.population import group_by_shape, train_population
from training.records import RunRecord

TRIALS = [("1e-3", "0", "0.0"), ("3e-2", "1", "0.3"), ("1e-2", "2", "0.0")]  # lr, seed, input noise


def trial_configs(optimizer="adam", trials=TRIALS, *extra):
    return [compose_config(f"lr={lr}", f"seed={seed}", f"input_noise={noise}", f"optimizer={optimizer}",
                           "epochs=2", *extra) for lr, seed, noise in trials]


@pytest.mark.slow
def test_a_population_equals_separate_runs_with_the_same_seeds(tmp_path):
    cfgs = trial_configs("sgd", TRIALS, "optimizer.momentum=0.5")
    together = train_population(cfgs, [tmp_path / f"pop{k}" for k in range(len(cfgs))])
    for k, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"alone{k}")
        assert together[k]["status"] == alone["status"] == "completed"
        for split in ("valid", "test"):
            np.testing.assert_allclose(together[k][split]["mse"], alone[split]["mse"], rtol=1e-4)
        lines_pop = [json.loads(l) for l in (tmp_path / f"pop{k}" / "metrics.jsonl").read_text().splitlines()]
        lines_alone = [json.loads(l) for l in (tmp_path / f"alone{k}" / "metrics.jsonl").read_text().splitlines()]
        assert [l["epoch"] for l in lines_pop] == [l["epoch"] for l in lines_alone] == [1, 2]
        np.testing.assert_allclose([l["train"]["loss"] for l in lines_pop], [l["train"]["loss"] for l in lines_alone], rtol=1e-4)


GREFF_REGIME = ["batch_size=1", "max_steps_per_epoch=12", "epochs=3", "optimizer=sgd", "optimizer.nesterov=true",
                "optimizer.lr_times_one_minus_momentum=true"]  # Greff's: an update per sequence, step lr * (1 - momentum)


@pytest.mark.slow  # 64 s on the loaded 2-core VM, mostly compiling: too long for the fast tier
def test_a_population_trial_in_greffs_regime_is_bitwise_its_lone_run_epoch_by_epoch(tmp_path):
    """Trials of one width and seed that differ in lr, momentum and input noise: every epoch number of a trial is
    exactly its lone run's (lax.map runs each trial's own computation). Not exactly so (measured, 1e-7 relative):
    across seeds, the evaluation's sums over a stacked batch (each trial's own data); across widths, the backward
    dz @ R.T, which sums over the gates' zero-padded blocks in another order; across lengths (a shorter batch
    zero-padded in time), sums over time in another order and matmul kernels that XLA:CPU picks by shape."""
    trials = [("3e-2", "0.3", "0.2"), ("1e-2", "0.5", "0.0"), ("5e-2", "0.1", "0.6")]  # lr, 1 - momentum, input noise
    cfgs = [compose_config(*GREFF_REGIME, f"lr={lr}", f"optimizer.one_minus_momentum={m}", f"optimizer.momentum={1 - float(m)}",
                           f"input_noise={n}") for lr, m, n in trials]
    train_population(cfgs, [tmp_path / f"pop{k}" for k in range(len(cfgs))], width_bucket=None)
    train(cfgs[2], tmp_path / "alone")
    pop, lone = RunRecord(tmp_path / "pop2").epochs(), RunRecord(tmp_path / "alone").epochs()
    assert len(pop) == len(lone) == 3
    for split, key in (("train", "loss"), ("train", "grad_norm"), ("valid", "mse"), ("test", "mse")):
        np.testing.assert_array_equal([e[split][key] for e in pop], [e[split][key] for e in lone], err_msg=f"{split} {key}")


@pytest.mark.slow
def test_each_trial_writes_the_record_a_lone_run_writes(tmp_path):
    cfgs = trial_configs()[:2]
    train_population(cfgs, [tmp_path / "p0", tmp_path / "p1"])
    alone = train(cfgs[0], tmp_path / "alone")
    pop = json.loads((tmp_path / "p0" / "result.json").read_text())
    assert set(alone) <= set(pop)  # plus population_size
    assert pop["config"] == alone["config"]
    assert (tmp_path / "p0" / "checkpoints").is_dir() and (tmp_path / "p1" / "metrics.jsonl").exists()


@pytest.mark.slow
def test_a_diverging_trial_is_frozen_and_does_not_disturb_the_others(tmp_path):
    healthy = [("1e-2", "0", "0.0"), ("3e-2", "1", "0.0")]
    with_bad = healthy[:1] + [("1e8", "2", "0.0")] + healthy[1:]
    clean = train_population(trial_configs("sgd", healthy), [tmp_path / "c0", tmp_path / "c1"])
    mixed = train_population(trial_configs("sgd", with_bad), [tmp_path / f"m{k}" for k in range(3)])
    assert mixed[1]["status"] == "diverged"
    assert json.loads((tmp_path / "m1" / "result.json").read_text())["status"] == "diverged"
    for c, m in zip(clean, (mixed[0], mixed[2])):
        assert m["status"] == "completed"
        assert m["test"]["mse"] == pytest.approx(c["test"]["mse"], rel=1e-5)


@pytest.mark.slow
def test_a_trial_with_a_bad_config_is_recorded_as_failed_and_the_others_train(tmp_path):
    cfgs = trial_configs()[:2] + [compose_config("lr=-1", "epochs=2")]
    results = train_population(cfgs, [tmp_path / f"p{k}" for k in range(3)])
    assert [r["status"] for r in results] == ["completed", "completed", "failed"]
    assert "lr must be a finite number >= 1.18e-38" in json.loads((tmp_path / "p2" / "result.json").read_text())["error"]


def test_trials_group_by_structure_and_differ_only_in_lr_seed_momentum_noise_width():
    cfgs = [compose_config("lr=1e-3"), compose_config("lr=1e-2", "seed=3", "input_noise=0.5"),
            compose_config("hidden=16"), compose_config("cell=gru"), compose_config("cell=gru", "lr=0.1"),
            compose_config("optimizer=sgd", "optimizer.momentum=0.1"), compose_config("optimizer=sgd", "optimizer.momentum=0.9"),
            compose_config("hidden=40")]
    assert sorted(group_by_shape(cfgs, width_bucket=None)) == [[0, 1, 2, 7], [3, 4], [5, 6]]
    assert sorted(group_by_shape(cfgs, width_bucket=32)) == [[0, 1, 2], [3, 4], [5, 6], [7]]  # 1–32 and 33–64


def test_dropout_between_layers_keeps_widths_apart():
    """Its mask is drawn over the layer's width: a padded layer would draw a narrower trial other masks."""
    cfgs = [compose_config("layers=2", "dropout=0.3", f"hidden={h}") for h in (8, 16)]
    assert sorted(group_by_shape(cfgs, width_bucket=None)) == [[0], [1]]


MIXED = [("8", "1e-2", "0.1", "0.0", "0"), ("13", "3e-2", "0.5", "0.3", "1"), ("32", "5e-3", "0.02", "0.6", "2")]


@pytest.mark.slow
@pytest.mark.parametrize("cell", registered_cells(fast=("v", "fgr", "gru")))
def test_a_population_of_mixed_widths_equals_lone_runs(tmp_path, cell):
    """Hidden sizes 8, 13 and 32 in one program, each with its own lr, momentum, noise and seed."""
    cfgs = [compose_config(f"cell={cell}", f"hidden={h}", f"lr={lr}", "optimizer=sgd", f"optimizer.one_minus_momentum={m}",
                           f"optimizer.momentum={1 - float(m)}", f"input_noise={n}", f"seed={s}", "epochs=2")
            for h, lr, m, n, s in MIXED]
    assert group_by_shape(cfgs, width_bucket=None) == [[0, 1, 2]]
    together = train_population(cfgs, [tmp_path / f"pop{k}" for k in range(3)], width_bucket=None)
    assert {r["population_size"] for r in together} == {3}
    for k, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"alone{k}")
        assert together[k]["num_params"] == alone["num_params"]  # its own size's count, not the padded one
        for split in ("valid", "test"):
            np.testing.assert_allclose(together[k][split]["mse"], alone[split]["mse"], rtol=1e-4)
        pop, lone = (RunRecord(tmp_path / f"{d}{k}").epochs() for d in ("pop", "alone"))
        np.testing.assert_allclose([e["train"]["loss"] for e in pop], [e["train"]["loss"] for e in lone], rtol=1e-4)
        np.testing.assert_allclose([e["train"]["grad_norm"] for e in pop], [e["train"]["grad_norm"] for e in lone], rtol=1e-4)


@pytest.mark.slow
def test_a_narrow_trials_checkpoint_holds_its_own_width_and_its_lone_run_resumes_from_it(tmp_path):
    cfgs = [compose_config(f"hidden={h}", "epochs=1", f"seed={s}") for h, s in ((8, 0), (20, 1))]
    train_population(cfgs, [tmp_path / "p0", tmp_path / "p1"], width_bucket=None)
    first = RunRecord(tmp_path / "p0").epochs()
    more = train(compose_config("hidden=8", "epochs=2", "seed=0"), tmp_path / "p0")  # a lone run restores it, 8 wide
    assert more["status"] == "completed" and more["epochs_completed"] == 2
    assert RunRecord(tmp_path / "p0").epochs()[:1] == first  # resumed after epoch 1, not retrained


def test_greffs_momentum_draws_differ_only_in_per_trial_data_and_group_together():
    """The random search draws optimizer.one_minus_momentum (momentum follows from it): still one program."""
    cfgs = [compose_config("optimizer=sgd", f"optimizer.one_minus_momentum={m}", f"optimizer.momentum={1 - m}",
                           f"lr={lr}", f"input_noise={n}", f"seed={k}")
            for k, (m, lr, n) in enumerate([(0.1, 1e-3, 0.0), (0.5, 1e-2, 0.3), (0.02, 3e-3, 0.9)])]
    assert group_by_shape(cfgs) == [[0, 1, 2]]


def test_a_rerun_population_retrains_nothing(tmp_path):
    cfgs = trial_configs()[:2]
    dirs = [tmp_path / "p0", tmp_path / "p1"]
    train_population(cfgs, dirs)
    stamps = [(d / "metrics.jsonl").stat().st_mtime_ns for d in dirs]
    again = train_population(cfgs, dirs)
    assert [r["status"] for r in again] == ["completed", "completed"]
    assert [(d / "metrics.jsonl").stat().st_mtime_ns for d in dirs] == stamps


def population_multirun(sweep_dir, *overrides) -> tuple[str, list[dict]]:
    """`python train.py -m` over widths 8 and 13 of v and gru on the tiny task: (its output, the records)."""
    cmd = [sys.executable, "train.py", "-m", *overrides, "task=adding", "task.length=6", "task.train_size=64",
           "task.valid_size=32", "task.test_size=32", "hidden=8,13", "epochs=1", "batch_size=16", "wandb.mode=disabled",
           "cell=v,gru", f"hydra.sweep.dir={sweep_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # not this session's: train.py sets its own
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout + out.stderr, [json.loads(p.read_text()) for p in sweep_dir.rglob("result.json")]


@pytest.mark.slow
def test_the_population_launcher_runs_a_multirun_as_populations(tmp_path):
    output, results = population_multirun(tmp_path, "hydra/launcher=population", "lr=1e-3,1e-2")
    assert len(results) == 8 and all(r["status"] == "completed" for r in results)
    assert [r["population_size"] for r in results] == [4] * 8  # one population per cell, widths 8 and 13 together
    assert "population of 4" in output
    population_lines = [line for line in output.splitlines() if "population of 4" in line]
    assert population_lines and all("[odyssey][INFO] - " in line for line in population_lines)  # not [HYDRA]
    completed = [line.split(" - ", 1)[1] for line in output.splitlines() if "completed after" in line]
    assert sorted(line.split("]")[0].lstrip("[") for line in completed) == sorted(Path(r["run_dir"]).name for r in results)
    for r in results:  # each trial's folder as Hydra leaves a lone job's
        hydra_dir = Path(r["run_dir"]) / ".hydra"
        assert OmegaConf.load(hydra_dir / "config.yaml").hidden == r["config"]["hidden"]
        assert f"hidden={r['config']['hidden']}" in OmegaConf.load(hydra_dir / "overrides.yaml")
        assert (hydra_dir / "hydra.yaml").exists()


def test_a_local_population_job_gets_a_days_time_limit_unless_the_config_sets_one():
    """submitit's local executor would kill it after 2 minutes (it did, in a loaded test run)."""
    from hydra_plugins.odyssey_population import executor_parameters

    assert executor_parameters("local", {})["timeout_min"] == 24 * 60
    assert executor_parameters("local", {"timeout_min": 5})["timeout_min"] == 5
    assert "timeout_min" not in executor_parameters("slurm", {"slurm_partition": "gpu"})


@pytest.mark.slow
def test_populations_run_as_submitit_jobs_one_per_population(tmp_path):
    """The cluster path (one submitit job per population) with submitit's local executor."""
    output, results = population_multirun(tmp_path, "launch=population", "hydra.launcher.backend=local")
    assert len(results) == 4 and all(r["status"] == "completed" for r in results)
    assert [r["population_size"] for r in results] == [2] * 4
    jobs = [d for d in (tmp_path / ".submitit").iterdir() if d.name.isdigit()]  # a folder per job id
    assert len(jobs) == 2  # one job per cell's population
    assert "2 populations submitted (local)" in output
    # every process pins XLA:CPU's matmul kernels before JAX starts (training/devices.py): the flag picks the kernel
    # for some shapes, so without it a population trial differed from the same trial of a joblib sweep
    assert {r["provenance"]["xla_flags"] for r in results} == {"--xla_cpu_multi_thread_eigen=false"}


# ---------------------------------------------------------------- variants as data (variants.SwitchedCell)

GREFF_ONE_SWITCH = ["v", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg"]


def variant_configs(cells, *extra):
    """One trial per cell (a name, or a name and its switch overrides), each with its own width, lr, seed."""
    return [compose_config(*([f"cell={c}"] if isinstance(c, str) else [f"cell={c[0]}", *c[1:]]), f"hidden={8 + 3 * k}",
                           f"lr={0.01 * (k + 1)}", f"seed={k}", "input_noise=0.1", *extra)
            for k, c in enumerate(cells)]


def assert_population_equals_lone_runs(cfgs, tmp_path):
    together = train_population(cfgs, [tmp_path / f"pop{k}" for k in range(len(cfgs))], width_bucket=None, mix_variants=True)
    assert {r["population_size"] for r in together} == {len(cfgs)}
    for k, cfg in enumerate(cfgs):
        alone = train(cfg, tmp_path / f"alone{k}")
        assert together[k]["num_params"] == alone["num_params"]  # its own variant's count, not the superset's
        np.testing.assert_allclose(together[k]["test"]["mse"], alone["test"]["mse"], rtol=1e-4)
        pop, lone = (RunRecord(tmp_path / f"{d}{k}").epochs() for d in ("pop", "alone"))
        for key in ("loss", "grad_norm"):
            np.testing.assert_allclose([e["train"][key] for e in pop], [e["train"][key] for e in lone], rtol=1e-4)
        np.testing.assert_allclose([e["valid"]["mse"] for e in pop], [e["valid"]["mse"] for e in lone], rtol=1e-4)


def test_with_mix_variants_greffs_variants_group_together_and_fgr_apart():
    cfgs = variant_configs(GREFF_ONE_SWITCH + ["fgr", ("fgr", "cell.switches.coupled=true"), "gru"])
    assert sorted(group_by_shape(cfgs, width_bucket=None, mix_variants=True)) == [list(range(8)), [8, 9], [10]]
    assert len(group_by_shape(cfgs, width_bucket=None)) == 11  # without it, each variant (and fgr+coupled) apart


@pytest.mark.slow
def test_variants_of_mixed_widths_in_one_population_equal_their_lone_runs_and_checkpoint_their_own_parameters(tmp_path):
    """V, NIG and NIAF at widths 8, 11 and 14 in one program over V's parameters (every switch, cell by
    cell: tests/test_cells.py). NIG's checkpoint holds NIG's own parameters: its lone run resumes from it."""
    assert_population_equals_lone_runs(variant_configs(["v", "nig", "niaf"], "epochs=2"), tmp_path)
    first = RunRecord(tmp_path / "pop1").epochs()
    more = train(variant_configs(["v", "nig"], "epochs=3")[1], tmp_path / "pop1")  # no W_i, no switches
    assert more["status"] == "completed" and more["epochs_completed"] == 3
    assert RunRecord(tmp_path / "pop1").epochs()[:2] == first


@pytest.mark.slow
def test_fgr_and_fgr_with_a_coupled_forget_gate_in_one_population_equal_their_lone_runs(tmp_path):
    """Only the gates a variant has are fed back, so the gate-to-gate matrices it lacks stay zero."""
    assert_population_equals_lone_runs(variant_configs(["fgr", ("fgr", "cell.switches.coupled=true")], "epochs=2"), tmp_path)
