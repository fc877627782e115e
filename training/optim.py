"""Optimizers with their hyperparameters as data (optax.inject_hyperparams), so the learning rate and
momentum of a trial live in its optimizer state: one compiled program serves any value, which is
what population training vmaps over."""

from __future__ import annotations

import optax


def make_optimizer(opt_cfg, lr: float, grad_clip: float | None = None) -> optax.GradientTransformation:
    name = opt_cfg.name
    if name == "adam":
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps)
    elif name == "sgd":
        if opt_cfg.lr_times_one_minus_momentum:  # Greff's code: momentum's 1/(1 - m) gain taken out of the step
            lr = lr * (1.0 - opt_cfg.momentum)
        tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=opt_cfg.momentum, nesterov=bool(opt_cfg.nesterov))
    else:
        raise ValueError(f"Unknown optimizer {name!r}; choose adam or sgd.")
    if grad_clip:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
    return tx
