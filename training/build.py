"""What a run trains, built from its config: the model, the optimizer and the state a run starts from.

One builder for training (training.loop.fit, training.population) and evaluation (training.evaluate), so
that what evaluates a checkpoint is what trained it, and a checkpoint restores into the very tree it was
saved from.
"""

from __future__ import annotations

import numpy as np

from training.model import SequenceModel, model_from_config
from training.optim import make_optimizer


def optimizer(cfg):
    """The config's optimizer (optax), at its learning rate, with its gradient clipping."""
    return make_optimizer(cfg.optimizer, cfg.lr, cfg.grad_clip)


def model_and_optimizer(cfg, task, **model_options) -> tuple[SequenceModel, object]:
    """(the config's model for `task` (training.model.model_from_config, with `model_options`), its optimizer)."""
    return model_from_config(cfg, task, **model_options), optimizer(cfg)


def first_example(split: dict) -> tuple[np.ndarray, np.ndarray]:
    """What a model is initialised on: a split's first sequence (float32) and its length."""
    return split["x"][:1].astype(np.float32), split["lengths"][:1]


def initial_state(model, tx, key, x, lengths) -> dict:
    """{"params", "opt_state"} as a run starts: parameters drawn from `key`, the optimizer's state for them."""
    params = model.init(key, x, lengths)
    return {"params": params, "opt_state": tx.init(params)}
