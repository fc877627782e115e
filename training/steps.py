"""The pure, jitted steps: one optimizer update, and one evaluation batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def make_grad_step(model, task):
    """grad_step(params, batch, rng, noise_std, padded, first_row=0) -> (gradient of the summed loss, metric sums).

    Sums, not means, so that slices of one batch on several devices add up (training/split.py).
    `padded` (static) is `is_padded(batch)`: False runs the scan without masks. Input noise and
    dropout are drawn per example from (rng, the example's row in the whole batch): a slice starting
    at row `first_row` draws exactly what those rows draw in the whole batch, so a run's numbers do
    not depend on how many devices split its batches.
    """

    def total_loss(params, x, batch, rng, rows, padded):
        lengths = batch["lengths"] if padded else None  # None: the scan skips masking
        outputs = model.apply(params, x, lengths, train=True, rows=rows, rngs={"dropout": rng})
        sums = task.metrics(outputs, batch)
        return sums["loss"][0], sums

    def grad_step(params, batch, rng, noise_std, padded, first_row=0):
        noise_rng, dropout_rng = jax.random.split(rng)
        rows = first_row + jnp.arange(batch["x"].shape[0])
        x = jax.lax.cond(  # Greff's input noise; drawing it costs ~20% of a small CPU step, so only when used
            noise_std > 0, lambda: batch["x"] + noise_std * example_normal(noise_rng, rows, batch["x"].shape[1:]),
            lambda: batch["x"])
        return jax.grad(total_loss, has_aux=True)(params, x, batch, dropout_rng, rows, padded)

    return grad_step


def example_normal(key, rows, shape):
    """Standard normal noise [len(rows), *shape], each example's drawn from (key, its row number)."""
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, rows)
    return jax.vmap(lambda k: jax.random.normal(k, shape))(keys)


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
    """train_step(state, batch, rng, noise_std, padded=True, grad_mask=None) -> (state, metrics), on one device.

    state = {"params", "opt_state"}; the learning rate and momentum live in opt_state (injected
    hyperparameters) and the input-noise std is an argument, so one compiled step serves any
    values of them (population training vmaps over all three). Jit it with static_argnames="padded".
    grad_mask (a 0/1 tree like the params) zeroes the gradient of parameters that must not move: the
    padding of a narrower trial in a wider population (training/widths.py).
    """
    grad_step, update = make_grad_step(model, task), make_update(tx)

    def train_step(state, batch, rng, noise_std, padded=True, grad_mask=None):
        grads, sums = grad_step(state["params"], batch, rng, noise_std, padded)
        if grad_mask is not None:
            grads = jax.tree.map(jnp.multiply, grads, grad_mask)
        return update(state, grads, sums)

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


def add_sums(sums: dict, new: dict) -> dict:
    """Running (total, count) per metric; keys missing from `new` (e.g. host metrics) are kept."""
    return {**sums, **{k: (sums[k][0] + v[0], sums[k][1] + v[1]) if k in sums else v for k, v in new.items()}}


def means(sums: dict) -> dict:
    return {k: float(total) / max(float(count), 1e-12) for k, (total, count) in sums.items()}
