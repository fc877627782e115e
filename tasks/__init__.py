"""Odyssey's tasks: one module each, one `conf/task/<name>.yaml` each (a test checks they agree).

`make_task(task_cfg)` builds the task named by `task_cfg["name"]` with the yaml's other keys.
"""

from __future__ import annotations

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


def make_task(task_cfg: dict, download: bool = False) -> Task:
    """The task `task_cfg` names; `download` lets it fetch missing data (TFDS, the pinned music files)."""
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


__all__ = ["TASKS", "DataError", "Task", "batches", "eval_batch_size", "make_task", "num_batches"]
