"""What every task provides, and the batching all tasks share.

A task turns files (or a seed) into three splits of NumPy arrays and says what the model's head
predicts and how it is scored. A split is a dict of arrays with a leading example axis:

    x        [N, T, D]  inputs, zero-padded to the longest sequence
    lengths  [N]        real steps per sequence (int32)
    y        ...        targets, task-specific

`metrics(outputs, batch)` is jittable and returns {name: (total, count)}, so sums over batches give
exact dataset means; it must include "loss", the training objective, and weigh every example by
`batch["mask"]` (0 for rows that only pad the last evaluation batch).
"""

from __future__ import annotations

import math
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

Split = dict[str, np.ndarray]


class DataError(ValueError):
    """Missing, truncated or malformed data; the message names the file and what was wrong."""


# what a task's "not found" line says when it was given no folder to look in
NO_DATA_DIR = "no data_dir: ODYSSEY_DATA_DIR is not set and no data_dir= was given"


class Task:
    """Base class: subclasses set the attributes and implement `load` and `metrics`."""

    name: str = ""
    output_size: int = 0  # units of the dense head
    readout: str = "last"  # "last": one prediction per sequence; "all": one per time step
    objective: tuple[str, str] = ("loss", "min")  # (metric, "min"|"max") for model selection and reports
    time_keys: tuple[str, ...] = ("x",)  # arrays whose axis 1 is time, trimmed per batch
    time_bucket: int = 1  # trim batches to a multiple of this many steps (fewer recompilations)

    @property
    def input_size(self) -> int:
        """Features per time step, known before the data loads (a run names its parameter count first)."""
        raise NotImplementedError

    preparing: str | None = "reading the data"  # what load() does, said before it starts; None: instant (generated)

    def load(self, data_dir: str | None, seed: int) -> dict[str, Split]:
        raise NotImplementedError

    def chance(self, splits: dict[str, Split]) -> dict | None:
        """The test objective of the best prediction that ignores the input, fitted on the training split
        ({"metric", "test", "how"}), so a closing line can say whether a run learned anything; None: no
        such baseline is defined for this task."""
        return None

    def metrics(self, outputs: jax.Array, batch: dict) -> dict[str, tuple[jax.Array, jax.Array]]:
        raise NotImplementedError

    def host_metrics(self, outputs: np.ndarray, batch: dict) -> dict[str, tuple[float, float]]:
        """Metrics that need NumPy on the host (e.g. decoding); evaluation only. Default: none."""
        return {}

    needs_host_metrics: bool = False
    download: bool  # fetch missing data over the network (config `download`, set by tasks.make_task); False: fail at once


def classification_metrics(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> dict:
    """Softmax cross-entropy and accuracy, as (total, count) over the real examples."""
    import optax

    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    n = mask.sum()
    return {"loss": ((ce * mask).sum(), n), "accuracy": ((correct * mask).sum(), n)}


def majority_class(splits: dict[str, Split]) -> dict:
    """Chance for a classification task: always the training split's most frequent class (for balanced
    classes, 1 / the number of classes), its test accuracy."""
    common = int(np.bincount(splits["train"]["y"]).argmax())
    return {"metric": "accuracy", "test": float(np.mean(splits["test"]["y"] == common)),
            "how": f"always class {common}, the training set's most frequent"}


def batches(split: Split, batch_size: int, *, rng: np.random.Generator | None = None,
            drop_last: bool = False, time_keys=("x",), time_bucket: int = 1) -> Iterator[dict]:
    """Yield batches of `split`; shuffled when `rng` is given.

    Every batch has exactly `batch_size` rows (the last one is padded with mask-0 rows unless
    `drop_last`), so a jitted step compiles once per distinct trimmed length.
    """
    n = len(split["lengths"])
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        mask = np.ones(batch_size, np.float32)
        if len(idx) < batch_size:
            mask[len(idx):] = 0.0
            idx = np.concatenate([idx, np.repeat(idx[:1], batch_size - len(idx))])
        batch = {k: v[idx] for k, v in split.items()}
        T = batch["x"].shape[1]
        t = min(T, math.ceil(int(batch["lengths"].max()) / time_bucket) * time_bucket)
        if t < T:
            for k in time_keys:
                batch[k] = batch[k][:, :t]
        batch["x"] = batch["x"].astype(np.float32)
        batch["mask"] = mask
        yield batch


def eval_batch_size(split: Split, batch_size: int, multiple: int = 1) -> int:
    """The evaluation batch: at most `batch_size`, but no larger than the split (rounded up to a
    multiple of the device count), so a small validation set is not padded to a large batch."""
    n = len(split["lengths"])
    return min(batch_size, -(-n // multiple) * multiple)


def num_batches(split: Split, batch_size: int, drop_last: bool) -> int:
    n = len(split["lengths"])
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def carve_validation(train: Split, valid_size: int, seed: int) -> tuple[Split, Split]:
    """Split a held-out validation set off the training set, by a seeded permutation."""
    n = len(train["lengths"])
    if not 0 < valid_size < n:
        raise ValueError(f"valid_size must be between 1 and {n - 1} (the training set has {n} examples), got {valid_size}.")
    order = np.random.default_rng(seed).permutation(n)
    v, t = order[:valid_size], order[valid_size:]
    return {k: a[t] for k, a in train.items()}, {k: a[v] for k, a in train.items()}
