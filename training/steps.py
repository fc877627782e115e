"""The pure, jitted steps: one optimizer update, and one evaluation batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def make_grad_step(model, task):
    """grad_step(params, batch, rng, noise_std, padded) -> (gradient of the summed loss, metric sums).

    Sums, not means, so that slices of one batch on several devices add up (training/split.py).
    `padded` (static) is `is_padded(batch)`: False runs the scan without masks.
    """

    def total_loss(params, x, batch, rng, padded):
        lengths = batch["lengths"] if padded else None  # None: the scan skips masking
        outputs = model.apply(params, x, lengths, train=True, rngs={"dropout": rng})
        sums = task.metrics(outputs, batch)
        return sums["loss"][0], sums

    def grad_step(params, batch, rng, noise_std, padded):
        noise_rng, dropout_rng = jax.random.split(rng)
        x = jax.lax.cond(  # Greff's input noise; drawing it costs ~20% of a small CPU step, so only when used
            noise_std > 0, lambda: batch["x"] + noise_std * jax.random.normal(noise_rng, batch["x"].shape), lambda: batch["x"])
        return jax.grad(total_loss, has_aux=True)(params, x, batch, dropout_rng, padded)

    return grad_step


def make_update(tx):
    """update(state, summed gradients, metric sums) -> (state, metrics): one optimizer step on the mean loss."""

    def update(state, grads, sums):
        grads = jax.tree.map(lambda g: g / sums["loss"][1], grads)  # the gradient of the mean loss
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        sums = dict(sums, grad_norm=(optax.tree.norm(grads), jnp.float32(1.0)))
        return {"params": params, "opt_state": opt_state}, sums

    return update


def make_train_step(model, task, tx):
    """train_step(state, batch, rng, noise_std, padded=True) -> (state, metrics), on one device.

    state = {"params", "opt_state"}; the learning rate and momentum live in opt_state (injected
    hyperparameters) and the input-noise std is an argument, so one compiled step serves any
    values of them (population training vmaps over all three). Jit it with static_argnames="padded".
    """
    grad_step, update = make_grad_step(model, task), make_update(tx)

    def train_step(state, batch, rng, noise_std, padded=True):
        return update(state, *grad_step(state["params"], batch, rng, noise_std, padded))

    return train_step


def make_eval_step(model, task):
    """eval_step(params, batch, padded=True) -> (metric sums, outputs or None when the task needs no
    host metrics). `padded` as for the train step."""

    def eval_step(params, batch, padded=True):
        outputs = model.apply(params, batch["x"], batch["lengths"] if padded else None, train=False)
        return task.metrics(outputs, batch), (outputs if task.needs_host_metrics else None)

    return eval_step


def is_padded(batch) -> bool:
    """Whether any sequence of a (host) batch is shorter than the batch's time axis, so the scan must mask."""
    return bool(np.any(np.asarray(batch["lengths"]) < batch["x"].shape[-2]))
