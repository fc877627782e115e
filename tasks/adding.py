"""The adding problem (Hochreiter & Schmidhuber 1997): generated from the seed, no files needed.

Each step carries two inputs: a value drawn uniformly from [0, 1] and a marker. Exactly two steps
are marked, one in each half of the sequence; the target is the sum of their values. Always
predicting 1 gives a mean squared error of about 0.167 (the variance of the sum), the baseline to beat:
`chance` computes it from the data, as the training targets' mean scored on the test split.
"""

from __future__ import annotations

import numpy as np

from tasks.base import Split, Task


class AddingTask(Task):
    output_size = 1
    readout = "last"
    objective = ("mse", "min")
    input_size = 2  # a value and a marker
    preparing = None  # generated from the seed in a moment

    def __init__(self, name: str, length: int, train_size: int, valid_size: int, test_size: int):
        if length < 2:
            raise ValueError(f"task.length must be at least 2 (one marker per half), got {length}.")
        self.name, self.length = name, length
        self.sizes = {"train": train_size, "valid": valid_size, "test": test_size}

    def load(self, data_dir, seed: int) -> dict[str, Split]:
        rng = np.random.default_rng(seed)
        return {split: self.generate(n, rng) for split, n in self.sizes.items()}

    def chance(self, splits):
        mean = float(splits["train"]["y"].mean())
        return {"metric": "mse", "test": float(np.mean((splits["test"]["y"] - mean) ** 2)),
                "how": f"always the training targets' mean, {mean:.3f}"}

    def generate(self, n: int, rng: np.random.Generator) -> Split:
        T, half = self.length, self.length // 2
        values = rng.uniform(0.0, 1.0, (n, T)).astype(np.float32)
        first = rng.integers(0, half, n)
        second = rng.integers(half, T, n)
        markers = np.zeros((n, T), np.float32)
        markers[np.arange(n), first] = 1.0
        markers[np.arange(n), second] = 1.0
        y = (values * markers).sum(1).astype(np.float32)
        return {"x": np.stack([values, markers], -1), "y": y, "lengths": np.full(n, T, np.int32)}

    def metrics(self, outputs, batch):
        err = (outputs[:, 0] - batch["y"]) ** 2
        n = batch["mask"].sum()
        total = (err * batch["mask"]).sum()
        return {"loss": (total, n), "mse": (total, n)}
