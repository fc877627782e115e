"""The types of Odyssey's top-level config; its values live in conf/ only.

Registered with Hydra's ConfigStore as `odyssey_schema` (conf/config.yaml lists it first), so an
unknown key or a wrong type fails at composition with Hydra's message, e.g.
`lr=fast` -> "Value 'fast' of type 'str' could not be converted to Float". `check_config` adds
the checks types cannot express (choices, ranges), each naming what is accepted.

Unknown keys: `+hiden=64` composes (Hydra adds the key), and Hydra's own message for `hiden=64` suggests
just that. So train.py checks its command line against these types and conf/'s groups before Hydra runs
(`check_command_line`), and `check_config` refuses any key a composed config's schema lacks
(`unknown_keys`); both name the closest known key (difflib).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass
class WandbSchema:
    mode: str = MISSING
    project: str = MISSING
    entity: Optional[str] = MISSING
    group: Optional[str] = MISSING
    tags: list = MISSING


@dataclass
class SpeedSchema:
    unroll: Any = MISSING  # auto | int >= 1 (training/speed_rules.py)
    hoist_projection: Any = MISSING  # true | false | auto
    fused_gradient: Any = MISSING  # true | false | auto
    kernel: Any = MISSING  # true | false | auto
    parallel_scan: Any = MISSING  # true | false | auto
    dtype: str = MISSING
    cpu_devices: Any = MISSING  # auto | int >= 1
    keep_freed_memory: Any = MISSING  # auto | true | false


@dataclass
class SwitchesSchema:
    """variants.GateSpec's switches; null keeps the named variant's own value. `cell.switches='{coupled: true}'`."""

    input_gate: Optional[bool] = None
    forget_gate: Optional[bool] = None
    output_gate: Optional[bool] = None
    input_activation: Optional[bool] = None
    output_activation: Optional[bool] = None
    peepholes: Optional[bool] = None
    coupled: Optional[bool] = None
    full_recurrence: Optional[bool] = None


@dataclass
class GatedCellSchema:  # conf/cell/<Greff variant>.yaml; other cells' keys are checked against the cell (check_config)
    name: str = MISSING
    switches: SwitchesSchema = field(default_factory=SwitchesSchema)
    forget_bias: float = MISSING
    kernel_init: str = MISSING
    recurrent_init: str = MISSING


@dataclass
class OptimizerSchema:  # conf/optimizer/*.yaml; each optimizer sets its own keys
    name: str = MISSING
    b1: Optional[float] = None  # adam
    b2: Optional[float] = None
    eps: Optional[float] = None
    momentum: Optional[float] = None  # sgd
    nesterov: Optional[bool] = None
    lr_times_one_minus_momentum: Optional[bool] = None  # sgd: the step is lr * (1 - momentum) * gradient (Greff's code)
    one_minus_momentum: Optional[float] = None  # sgd, Greff's search draws it (sweeps/random_search.yaml)


@dataclass
class TaskSchema:  # the keys every conf/task/*.yaml has
    name: str = MISSING
    bidirectional: bool = MISSING  # the model's natural default for the task


@dataclass
class MNISTSchema(TaskSchema):  # mnist, smnist, psmnist
    layout: str = MISSING
    permute: bool = MISSING
    permutation_seed: int = MISSING
    valid_size: int = MISSING


@dataclass
class AddingSchema(TaskSchema):
    length: int = MISSING
    train_size: int = MISSING
    valid_size: int = MISSING
    test_size: int = MISSING


@dataclass
class MusicSchema(TaskSchema):  # jsb, nottingham, piano, muse
    dataset: str = MISSING
    time_bucket: int = MISSING
    loss: str = MISSING


@dataclass
class AudioSchema(TaskSchema):  # the features of tasks/fsdd.py
    features: str = MISSING
    n_mfcc: int = MISSING
    n_mels: int = MISSING
    window_ms: float = MISSING
    hop_ms: float = MISSING
    sample_rate: int = MISSING
    time_bucket: int = MISSING


@dataclass
class FSDDSchema(AudioSchema):
    valid_size: int = MISSING


@dataclass
class FSDDStringsSchema(AudioSchema):
    valid_recordings: int = MISSING
    min_digits: int = MISSING
    max_digits: int = MISSING
    train_size: int = MISSING
    valid_size: int = MISSING
    test_size: int = MISSING
    data_seed: int = MISSING


# conf/task/<name>.yaml names its schema first in its defaults list (e.g. `- mnist_schema`)
TASK_SCHEMAS = {"mnist_schema": MNISTSchema, "adding_schema": AddingSchema, "music_schema": MusicSchema,
                "fsdd_schema": FSDDSchema, "fsdd_strings_schema": FSDDStringsSchema}


@dataclass
class Schema:
    cell: Any = MISSING  # conf/cell/<name>.yaml: only the keys that cell reads
    task: Any = MISSING
    optimizer: OptimizerSchema = field(default_factory=OptimizerSchema)
    lr: float = MISSING
    hidden: int = MISSING
    layers: int = MISSING
    bidirectional: bool = MISSING
    dropout: float = MISSING
    input_noise: float = MISSING
    grad_clip: Optional[float] = MISSING
    epochs: int = MISSING
    patience: Optional[int] = MISSING
    batch_size: int = MISSING
    eval_batch_size: int = MISSING
    max_steps_per_epoch: Optional[int] = MISSING
    seed: int = MISSING
    study: Optional[str] = MISSING
    progress_seconds: Optional[float] = MISSING
    verbose: bool = MISSING
    data_dir: Optional[str] = MISSING
    download: bool = MISSING
    platform: Optional[str] = MISSING
    speed: SpeedSchema = field(default_factory=SpeedSchema)
    wandb: WandbSchema = field(default_factory=WandbSchema)
    tensorboard: bool = MISSING


ConfigStore.instance().store(name="odyssey_schema", node=Schema)
ConfigStore.instance().store(group="cell", name="gated_schema", node=GatedCellSchema)
for _name, _node in TASK_SCHEMAS.items():
    ConfigStore.instance().store(group="task", name=_name, node=_node)

# Greff et al. sample momentum as 1 - log-uniform([0.01, 1]); OmegaConf has no arithmetic, so the random-search
# preset (sweeps/random_search.yaml) samples `optimizer.one_minus_momentum` and sets
# `optimizer.momentum: ${one_minus:${.one_minus_momentum}}` (each record keeps both values).
OmegaConf.register_new_resolver("one_minus", lambda x: 1.0 - float(x), replace=True)
# A multirun's folder: multirun/<study> when the sweep is named (so rerunning its command resumes it), else
# Hydra's multirun/<date>/<time> (conf/config.yaml: hydra.sweep.dir).
OmegaConf.register_new_resolver("sweep_dir", lambda study, stamp: f"multirun/{study or stamp}", replace=True)


def available_platforms() -> list[str]:
    """The backends JAX can start here (cpu always; gpu or tpu where their plugins and devices are)."""
    import jax

    found = []
    for name in ("cpu", "gpu", "tpu"):
        try:
            jax.devices(name)
            found.append(name)
        except RuntimeError:
            pass
    return found


CONF = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("cell", "task", "optimizer", "launch")  # conf/<group>/*.yaml, chosen by `<group>=<name>`


def compose_conf(*overrides: str) -> DictConfig:
    """The config conf/ composes with these overrides, as `python train.py <overrides>` would run it: for code
    that builds models or optimizers outside a run (benchmarks, tests), so that it starts from conf/'s values
    rather than copies of them."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def group_options(group: str, config_dir: str | None = None, extra_dirs: list[str] = ()) -> list[str]:
    """The names `<group>=` accepts: conf/<group>/*.yaml (and a --config-dir's or hydra.searchpath's <group>/)."""
    folders = [CONF / group] + ([Path(config_dir) / group] if config_dir else []) + [Path(d) / group for d in extra_dirs]
    return sorted({p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.yaml")})


def searchpath_dirs(overrides) -> list[str]:
    """The local folders a command line's hydra.searchpath=[file://...] adds (a cell of your own, docs/cells.md)."""
    for o in overrides:
        if o.key_or_group == "hydra.searchpath":
            value = o.value()
            return [str(v)[len("file://"):] for v in (value if isinstance(value, list) else [value]) if str(v).startswith("file://")]
    return []


def task_schema(task: str | None):
    """The schema conf/task/<task>.yaml names first in its defaults list; None when unknown."""
    path = CONF / "task" / f"{task}.yaml"
    if task is None or not path.exists():
        return None
    defaults = OmegaConf.load(path).get("defaults") or []
    return next((TASK_SCHEMAS[d] for d in defaults if isinstance(d, str) and d in TASK_SCHEMAS), None)


def _fields(schema) -> dict[str, Any]:
    """{field name: its type} of a schema dataclass (annotations resolved)."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _schema_of(kind) -> type | None:
    """The dataclass a field's type names (Optional[X] included), or None for a leaf."""
    for t in (kind, *typing.get_args(kind)):
        if dataclasses.is_dataclass(t):
            return t
    return None


def closest(name: str, known) -> str | None:
    """The known name most like `name` (difflib), if any is close."""
    close = difflib.get_close_matches(name, [str(k) for k in known], n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, known, prefix: str = "") -> str:
    found = closest(name, known)
    return f" (did you mean {prefix}{found}?)" if found else ""


def known_list(path: list[str], level: dict) -> str:
    """What a level of the config holds, short enough for one line; the top level points to --cfg job."""
    if len(level) > 12:
        return "; `python train.py --cfg job` lists every key"
    return f"; {'.'.join(path) or 'the config'} has {', '.join(level)}"


def unknown_key(key: str, task: str | None = None, cell: str | None = None) -> str | None:
    """Why the dotted `key` is not a config key, naming the closest known one; None when it is one.
    task: the task the command line chooses, whose keys `task.*` may name; with none chosen, any task's
    keys pass here, and Hydra refuses those the composed task lacks."""
    level, done = {**_fields(Schema), "launch": None}, []
    for part in key.split("."):
        if level is None:
            return None  # below a leaf, a list or a free dict (wandb.tags, ...): Hydra checks the value
        if part not in level:
            return f"unknown key {key}" + (did_you_mean(part, level, "".join(f"{d}." for d in done)) or known_list(done, level))
        done.append(part)
        if done == ["task"]:
            chosen = task_schema(task)
            level = _fields(chosen) if chosen else {n: t for s in TASK_SCHEMAS.values() for n, t in _fields(s).items()}
        elif done == ["cell"]:  # a Greff variant's keys are known here; any other cell's, when its model is built
            from variants import VARIANTS

            level = _fields(GatedCellSchema) if cell is None or cell in VARIANTS else None
        else:
            schema = _schema_of(level[part])
            level = _fields(schema) if schema else None
    return None


def unknown_keys(cfg: DictConfig, path: str = "") -> list[str]:
    """Keys of a composed config that its schema does not have (added with `+key=...`, which Hydra lets
    through), each with the closest known key."""
    problems = []
    schema = OmegaConf.get_type(cfg)
    known = _fields(schema) if dataclasses.is_dataclass(schema) else None
    for key in cfg.keys():
        if key == "hydra" and not path:
            continue
        node = cfg._get_node(key)
        if known is not None and key not in known:
            problems.append(f"unknown key {path}{key}" + (did_you_mean(str(key), known, path)
                                                          or known_list(path.rstrip(".").split(".") if path else [], known)))
        elif isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
            problems += unknown_keys(node, f"{path}{key}.")
    return problems


def check_command_line(argv: list[str]) -> list[str]:
    """train.py's command line, before Hydra composes it: unknown keys (however added: `hiden=64`,
    `+hiden=64`) and unknown cell, task, optimizer or launch names, each naming the closest known one."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    args, _ = get_args_parser().parse_known_args(argv)
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides or [])
    except Exception:  # a malformed override: Hydra's own message says where
        return []
    problems, chosen_task = [], None
    chosen_cell = None
    for o in overrides:
        if o.get_key_element() == "task" and isinstance(o.value(), str):
            chosen_task = o.value()
        if o.get_key_element() == "cell" and isinstance(o.value(), str):
            chosen_cell = o.value()
    for o in overrides:
        key = o.key_or_group
        if key.split(".")[0].split("/")[0] == "hydra" or o.package is not None or o.is_delete():
            continue
        if key in GROUPS:
            value = o.value()
            names = value.list if isinstance(value, ChoiceSweep) else [value] if isinstance(value, str) else []
            options = group_options(key, args.config_dir, searchpath_dirs(overrides))
            for name in map(str, names):
                if name not in options and not (key == "launch" and name == "null"):
                    problems.append(f"{key}={name} is not in conf/{key}/; choose one of {', '.join(options)}"
                                    + did_you_mean(name, options))
            continue
        why = unknown_key(key, chosen_task, chosen_cell)
        if why:
            problems.append(why)
    return problems


# the smallest learning rate that can train: below float32's smallest normal number, lr * gradient underflows
SMALLEST_LR = float(np.finfo(np.float32).tiny)


def check_cell(cell) -> list[str]:
    """What is wrong with a config's cell: an unknown name (with the known ones and how to add one), a key the
    cell does not read, an unknown initialiser."""
    from variants import CELLS, INITIALIZERS, make_cell
    from variants.registry import HOW_TO_ADD, INIT_KEYS

    problems = [f"cell.{key}={cell[key]!r} is not an initialiser; choose one of {', '.join(INITIALIZERS)}"
                for key in INIT_KEYS if key in cell and cell[key] not in INITIALIZERS]
    if problems:
        return problems
    from training.model import cell_keys

    try:
        make_cell(cell.name, 1, **cell_keys(cell))
    except ValueError as e:
        if f"Unknown cell {cell.name!r}" in str(e):
            return [f"cell={cell.name!r} is not a cell; choose one of {', '.join(CELLS)} ({HOW_TO_ADD})"]
        return [str(e).rstrip(".")]
    return []


def unknown_cell_choice(argv: list[str]) -> str | None:
    """The message for a command line's `cell=<name>` that names no conf/cell/<name>.yaml: the known cells and
    how to add one (Hydra's own error lists the files only). None when every choice exists, or when a
    `hydra.searchpath` override may hold it."""
    from pathlib import Path

    from variants import CELLS
    from variants.registry import HOW_TO_ADD

    if any(arg.startswith("hydra.searchpath") for arg in argv):
        return None
    folder = Path(__file__).resolve().parents[1] / "conf" / "cell"
    for arg in argv:
        if arg.startswith("cell=") and "(" not in arg:
            for name in arg.split("=", 1)[1].split(","):
                if not (folder / f"{name}.yaml").exists():
                    return f"Unknown cell {name!r}; choose one of {', '.join(CELLS)} ({HOW_TO_ADD})."
    return None


def check_config(cfg) -> None:
    """Refuse values the types allow but training cannot use, naming what is accepted."""
    from training import host_memory, speed_rules
    from training.devices import cpu_device_count
    from training.tracking import MODES
    from variants import CELLS, INITIALIZERS  # noqa: F401

    problems = unknown_keys(cfg) + check_cell(cfg.cell)
    for key in ("hidden", "layers", "epochs", "batch_size", "eval_batch_size"):
        if cfg[key] < 1:
            problems.append(f"{key} must be a positive integer, got {cfg[key]}")
    if not SMALLEST_LR <= cfg.lr < float("inf"):  # also refuses nan
        problems.append(f"lr must be a finite number >= {SMALLEST_LR:.3g} (the smallest normal float32: parameters and "
                        f"the optimizer's learning rate are float32 whatever speed.dtype), got {cfg.lr}")
    if not 0 <= cfg.dropout < 1:
        problems.append(f"dropout must be in [0, 1), got {cfg.dropout}")
    if not 0 <= cfg.input_noise < float("inf"):  # also refuses nan
        problems.append(f"input_noise is a standard deviation and must be a finite number >= 0, got {cfg.input_noise}")
    for key in ("max_steps_per_epoch", "patience"):
        if cfg[key] is not None and cfg[key] < 1:
            problems.append(f"{key} must be a whole number >= 1, or null (off), got {cfg[key]}")
    if cfg.progress_seconds is not None and not 0 < cfg.progress_seconds < float("inf"):
        problems.append(f"progress_seconds must be a number of seconds > 0, or null (no progress lines), got {cfg.progress_seconds}")
    if cfg.grad_clip is not None and not 0 < cfg.grad_clip < float("inf"):
        problems.append(f"grad_clip is a global norm and must be > 0, or null (no clipping), got {cfg.grad_clip}")
    problems += speed_rules.check(cfg.speed)
    if cfg.speed.dtype not in ("float32", "bfloat16", "float16"):
        problems.append(f"speed.dtype={cfg.speed.dtype!r}; choose float32, bfloat16 or float16")
    if cfg.wandb.mode not in MODES:
        problems.append(f"wandb.mode={cfg.wandb.mode!r}; choose one of {', '.join(MODES)}")
    for check, setting in ((cpu_device_count, cfg.speed.cpu_devices), (host_memory.check_setting, cfg.speed.keep_freed_memory)):
        try:
            check(setting)
        except ValueError as e:
            problems.append(str(e))
    if cfg.platform is not None and cfg.platform not in available_platforms():
        problems.append(f"platform={cfg.platform!r}; this machine's JAX has {', '.join(available_platforms())} "
                        "(or null: JAX's default)")
    if problems:
        raise ValueError("Bad config: " + "; ".join(problems) + ".")
