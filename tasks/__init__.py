"""Odyssey's tasks: one module each, one `conf/task/<name>.yaml` each (a test checks they agree).

`make_task(task_cfg)` builds the task named by `task_cfg["name"]` with the yaml's other keys. The
values live in the yaml only (the constructors have no defaults); outside a Hydra run,
`task_from_conf("fsdd", valid_size=2)` builds a task from its yaml with a few values changed.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from tasks.adding import AddingTask
from tasks.base import DataError, Task, batches, eval_batch_size, num_batches
from tasks.fsdd import FSDDTask
from tasks.fsdd_strings import FSDDStringsTask
from tasks.mnist import MNISTTask
from tasks.music import MusicTask

TASKS: dict[str, type[Task]] = {
    "mnist": MNISTTask,
    "smnist": MNISTTask,
    "psmnist": MNISTTask,
    "adding": AddingTask,
    "jsb": MusicTask,
    "nottingham": MusicTask,
    "piano": MusicTask,
    "muse": MusicTask,
    "fsdd": FSDDTask,
    "fsdd_strings": FSDDStringsTask,
}


def make_task(task_cfg: dict, download: bool) -> Task:
    """The task `task_cfg` names; `download` (the config's) lets it fetch missing data (TFDS, the pinned music files)."""
    cfg = dict(task_cfg)
    name = cfg.get("name")
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}.")
    cfg.pop("bidirectional", None)  # a model default the task yaml suggests, read by the model config
    try:
        task = TASKS[name](**cfg)
    except TypeError as e:
        raise ValueError(f"task={name}: bad option in its config ({e}).") from e
    task.download = bool(download)
    return task


def task_from_conf(name: str, download: bool = False, **changes) -> Task:
    """The task conf/task/<name>.yaml configures, with `changes` to its values (tests, notebooks, benchmarks)."""
    path = Path(__file__).resolve().parent.parent / "conf" / "task" / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"Unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}.")
    values = OmegaConf.to_container(OmegaConf.load(path))
    values.pop("defaults", None)  # the yaml's schema (training/config.py), applied when Hydra composes it
    return make_task({**values, **changes}, download)


__all__ = ["TASKS", "DataError", "Task", "batches", "eval_batch_size", "make_task", "num_batches", "task_from_conf"]
