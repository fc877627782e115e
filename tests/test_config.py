"""conf/ is the single home of defaults: it mirrors the registries, every knob is explained, and a
bad command line fails before anything trains, with a message that says what is accepted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from conftest import CONF, ROOT, TINY as TINY_CLI, compose_config
from tasks import TASKS, make_task
from training import check_config
from training.config import check_command_line
from variants import CELLS

CONF_DIR = Path(CONF)


def group_names(group: str) -> set[str]:
    return {p.stem for p in (CONF_DIR / group).glob("*.yaml")}


def test_cell_yamls_mirror_the_cell_registry():
    assert group_names("cell") == set(CELLS)


def test_task_yamls_mirror_the_task_registry():
    assert group_names("task") == set(TASKS)


@pytest.mark.parametrize("cell", sorted(group_names("cell")))
def test_every_cell_yaml_composes_and_passes_the_checks(cell):
    cfg = compose_config(f"cell={cell}")
    assert cfg.cell.name == cell  # the file's name and the name it selects agree
    check_config(cfg)


@pytest.mark.parametrize("task", sorted(group_names("task")))
def test_every_task_yaml_composes_and_builds_its_task(task):
    cfg = compose_config(f"task={task}", tiny=False)  # TINY holds adding's own keys
    assert cfg.task.name == task
    check_config(cfg)
    make_task(cfg.task, cfg.download)  # every key of the yaml is an argument the task accepts (no data is loaded)


def test_task_constructors_take_their_values_from_the_yaml_only():
    """No default in code that could drift from conf/task/ (FSDDTask's time_bucket once said 16, the yaml 32)."""
    import inspect

    from tasks import TASKS

    for name, cls in TASKS.items():
        defaults = [p.name for p in inspect.signature(cls.__init__).parameters.values() if p.default is not p.empty]
        assert defaults == [], f"{cls.__name__} ({name}) has defaults for {defaults}; they belong in conf/task/{name}.yaml"


# `key: value` with something after the colon; headers (`speed:`) and list entries (`- cell: v`) are not
# knobs, nor is a group file's `name:` (the file's header comment says what it selects)
KNOB = re.compile(r"^\s*(?!name\s*:)[A-Za-z_][\w.]*\s*:\s*[^\s#]")


def knobs_without_comment(path: Path, root: Path = CONF_DIR) -> list[str]:
    """`key: value` lines outside the defaults list with no trailing `# why`."""
    missing, in_defaults = [], False
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"^defaults\s*:", line):
            in_defaults = True
            continue
        if in_defaults and (line.startswith((" ", "-")) or not line.strip()):
            continue  # the defaults list selects groups; its entries are documented where useful
        in_defaults = False
        if KNOB.match(line) and " # " not in line and not line.rstrip().endswith("#"):
            missing.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    return missing


def test_every_knob_in_conf_and_in_every_sweep_preset_has_a_trailing_comment():
    files = sorted([*CONF_DIR.rglob("*.yaml"), *(ROOT / "sweeps").glob("*.yaml")])
    assert len(files) > 20
    missing = [m for f in files for m in knobs_without_comment(f, root=ROOT)]
    assert not missing, "knobs without a trailing comment:\n" + "\n".join(missing)


def test_the_comment_check_catches_a_bare_knob(tmp_path):
    (tmp_path / "x.yaml").write_text("defaults:\n  - a: b\n\nspeed:\n  unroll: 1\n  dtype: float32  # why\n")
    assert knobs_without_comment(tmp_path / "x.yaml", root=tmp_path) == ["x.yaml:5: unroll: 1"]


def test_the_default_job_is_the_tutorials_row_mnist_experiment():
    cfg = compose_config(tiny=False)
    assert cfg.cell.name == "v"
    assert (cfg.task.name, cfg.task.layout, cfg.task.permute) == ("mnist", "rows", False)
    assert cfg.optimizer.name == "adam"
    assert (cfg.hidden, cfg.lr, cfg.batch_size, cfg.epochs) == (128, 1e-3, 128, 20)
    assert (cfg.layers, cfg.bidirectional, cfg.dropout) == (1, False, 0.0)
    check_config(cfg)


@pytest.mark.parametrize("override, message", [
    ("foo=1", "Key 'foo' not in 'Schema'"),
    ("wandb.sometimes=1", "Key 'sometimes' not in 'WandbSchema'"),
    ("lr=fast", "Value 'fast' of type 'str' could not be converted to Float"),
    ("hidden=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
    ("cell.forget_bias=abc", "Value 'abc' of type 'str' could not be converted to Float"),
    ("cell.switches={bogus: true}", "Key 'bogus' not in 'SwitchesSchema'"),
    ("optimizer.momentum=lots", "could not be converted to Float"),
    ("task.length=long", "Value 'long' of type 'str' could not be converted to Integer"),  # the task group is typed too
    ("task.lenght=6", "Key 'lenght' not in 'AddingSchema'"),
])
def test_unknown_keys_and_wrong_types_fail_at_composition(override, message):
    with pytest.raises(ConfigCompositionException) as e:
        compose_config(override)
    key = override.split("=")[0]
    full = f"{e.value}\n{e.value.__cause__}"  # Hydra: "Could not override 'foo'" + OmegaConf's reason
    assert key in full and message in full, full


@pytest.mark.parametrize("argv, message", [
    (["hiden=64"], "unknown key hiden (did you mean hidden?)"),
    (["+hiden=64"], "unknown key hiden (did you mean hidden?)"),  # `+` composes: Hydra would let it through
    (["++hiden=64"], "unknown key hiden (did you mean hidden?)"),
    (["-m", "+hiden=64", "cell=v,gru"], "unknown key hiden (did you mean hidden?)"),  # a sweep, before any trial
    (["task=adding", "task.lenght=6"], "unknown key task.lenght (did you mean task.length?)"),
    (["task=mnist", "task.length=6"], "unknown key task.length; task has name, bidirectional, layout, permute"),
    (["cell.switches.coupledd=true"], "unknown key cell.switches.coupledd (did you mean cell.switches.coupled?)"),
    (["optimizer.mometum=0.9"], "unknown key optimizer.mometum (did you mean optimizer.momentum?)"),
    (["lauch=joblib"], "unknown key lauch (did you mean launch?)"),
    (["cell=lstm"], "cell=lstm is not in conf/cell/; choose one of cifg, fgr, gru"),
    (["-m", "cell=v,nfgg"], "cell=nfgg is not in conf/cell/; choose one of cifg, fgr, gru, mingru, minlstm, mut1, mut2, mut3, nfg, niaf, nig, noaf, nog, np, srn, v (did you mean nfg?)"),
    (["task=adding_schema"], "task=adding_schema is not in conf/task/; choose one of adding, fsdd, fsdd_strings, jsb"),
    (["optimizer=adamw"], "optimizer=adamw is not in conf/optimizer/; choose one of adam, sgd (did you mean adam?)"),
    (["launch=jobib"], "launch=jobib is not in conf/launch/; choose one of joblib, joblib_gpu, population"),
])
def test_train_py_refuses_unknown_keys_and_names_however_given_naming_the_closest(argv, message):
    """Checked before Hydra composes, so nothing is written; Hydra's own message suggests `+hiden=64`, which
    would compose, and lists the task group's schemas (adding_schema, ...) as tasks."""
    assert message in "; ".join(check_command_line(argv))


def test_the_command_line_check_passes_what_hydra_accepts():
    argv = ["-m", "-cd", "sweeps", "-cn", "grid", "cell=v,gru", "cell=glob(*)", "task=adding", "task.length=6",
            "lr=interval(1e-3,1e-2)", "cell.switches={coupled: true}", "wandb.tags=[a]", "launch=null",
            "hydra.run.dir=x", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "+optimizer.nesterov=true", "~grad_clip"]
    assert check_command_line(argv) == []


def test_a_key_added_to_a_composed_config_is_refused_by_the_config_check():
    """The compose API (tests, notebooks) and `+key=` in any source: the config check finds what the schema lacks."""
    cfg = compose_config("+hiden=64", "+cell.switches.couple=true", "+task.foo=3")
    with pytest.raises(ValueError) as e:
        check_config(cfg)
    assert "unknown key hiden (did you mean hidden?)" in str(e.value)
    assert "unknown key cell.switches.couple (did you mean cell.switches.coupled?)" in str(e.value)
    assert "unknown key task.foo; task has name, bidirectional, length" in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["+hiden=64"], ["-m", "+hiden=64", "cell=v,gru", "study=typo"]])
def test_an_unknown_key_stops_train_py_in_one_line_before_anything_is_written(argv, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *argv, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert (proc.stdout + proc.stderr).strip() == "error: unknown key hiden (did you mean hidden?)."
    assert list(tmp_path.iterdir()) == []  # no run folder, no multirun/


@pytest.mark.parametrize("override, accepted", [
    ("wandb.mode=sometimes", "choose one of online, offline, disabled"),
    ("hidden=0", "hidden must be a positive integer, got 0"),
    ("batch_size=-1", "batch_size must be a positive integer"),
    ("cell.name=lstm", "choose one of " + ", ".join(CELLS)),
    ("speed.hoist_projection=maybe", "choose true, false or auto"),
    ("lr=0", "lr must be a finite number >= 1.18e-38 (the smallest normal float32"),
    ("lr=-0.1", "lr must be a finite number >= 1.18e-38"),
    ("lr=nan", "lr must be a finite number >= 1.18e-38"),
    ("lr=inf", "lr must be a finite number >= 1.18e-38"),
    ("lr=1e-40", "lr must be a finite number >= 1.18e-38"),  # subnormal: lr * gradient underflows
    ("dropout=1.0", "dropout must be in [0, 1)"),
    ("platform=quantum", "this machine's JAX has cpu"),
    ("platform=tpu", "this machine's JAX has cpu"),
    ("max_steps_per_epoch=0", "max_steps_per_epoch must be a whole number >= 1, or null (off)"),
    ("max_steps_per_epoch=-1", "max_steps_per_epoch must be a whole number >= 1, or null (off)"),
    ("patience=0", "patience must be a whole number >= 1, or null (off)"),
    ("input_noise=nan", "input_noise is a standard deviation and must be a finite number >= 0"),
    ("input_noise=-0.1", "input_noise is a standard deviation and must be a finite number >= 0"),
    ("grad_clip=-1", "grad_clip is a global norm and must be > 0, or null (no clipping)"),
    ("speed.unroll=0", "speed.unroll must be a whole number >= 1 (time steps per scan iteration) or auto, got 0"),
    ("speed.unroll=two", "speed.unroll must be a whole number >= 1 (time steps per scan iteration) or auto, got 'two'"),
    ("speed.fused_gradient=maybe", "speed.fused_gradient='maybe'; choose true, false or auto"),
    ("speed.kernel=2", "speed.kernel=2; choose true, false or auto"),
    ("speed.dtype=float7", "speed.dtype='float7'; choose float32, bfloat16 or float16"),
    ("speed.cpu_devices=0", "choose auto (one per core) or a whole number >= 1"),
    ("speed.cpu_devices=many", "choose auto (one per core) or a whole number >= 1"),
    ("speed.keep_freed_memory=sometimes", "choose auto, true or false"),
])
def test_check_config_refuses_bad_values_naming_what_is_accepted(override, accepted):
    cfg = compose_config(override)  # the types allow these values; check_config knows better
    with pytest.raises(ValueError, match=re.escape(accepted)) as e:
        check_config(cfg)
    assert override.split("=")[1] in str(e.value)  # the bad value is quoted back


def test_a_learning_rate_below_float16s_smallest_normal_trains_with_float16_matmuls():
    """speed.dtype is the matmuls' dtype; parameters, gradients' updates and the learning rate stay float32."""
    check_config(compose_config("speed.dtype=float16", "lr=1e-6"))  # float16's tiny is 6.1e-05


def test_check_config_accepts_the_tiny_test_config():
    check_config(compose_config())


def test_an_unknown_initialiser_in_the_cell_config_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="cell.recurrent_init='identity' is not an initialiser; choose one of"):
        check_config(compose_config("cell.recurrent_init=identity"))


@pytest.mark.slow
def test_the_readme_switch_example_works_as_written_on_the_command_line(tmp_path):
    """README: python train.py cell=np cell.switches='{coupled: true}'  (NP + CIFG: no forget-gate weights)."""
    proc = subprocess.run([sys.executable, "train.py", "cell=np", "cell.switches={coupled: true}", *TINY_CLI,
                           f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["status"] == "completed" and record["config"]["cell"]["switches"]["coupled"] is True
    H, D = 8, 2  # NP has 4 blocks of W, R, b; coupling removes the forget gate's: 3 blocks, plus the head
    assert record["num_params"] == 3 * (D * H + H * H + H) + (H + 1)


def test_the_overrides_trial_folders_are_not_named_by_are_exactly_what_a_resumed_run_may_change():
    """One list (conf/config.yaml's exclude_keys): a key that does not name a trial's folder must not make a rerun
    into that folder a different run, and a key that names it must."""
    from omegaconf import OmegaConf

    from training.run import run_identity

    cfg = compose_config()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    folder_blind = [k for k in OmegaConf.load(CONF_DIR / "config.yaml").hydra.job.config.override_dirname.exclude_keys
                    if k != "launch"]
    assert "epochs" in folder_blind and "lr" not in folder_blind
    for key in [*folder_blind, "lr", "hidden", "cell.name"]:
        changed = OmegaConf.create(resolved)
        OmegaConf.update(changed, key, "something else", force_add=True)
        same = run_identity(OmegaConf.to_container(changed)) == run_identity(resolved)
        assert same == (key in folder_blind), key
