"""The pure, jitted steps: one optimizer update, and one evaluation batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def make_train_step(model, task, tx):
    """train_step(state, batch, rng, noise_std) -> (state, metrics).

    state = {"params", "opt_state"}; the learning rate and momentum live in opt_state (injected
    hyperparameters) and the input-noise std is an argument, so one compiled step serves any
    values of them (population training vmaps over all three).
    """

    def loss_fn(params, batch, rng, noise_std):
        noise_rng, dropout_rng = jax.random.split(rng)
        x = jax.lax.cond(  # Greff's input noise; drawing it costs ~20% of a small CPU step, so only when used
            noise_std > 0, lambda: batch["x"] + noise_std * jax.random.normal(noise_rng, batch["x"].shape), lambda: batch["x"])
        outputs = model.apply(params, x, batch["lengths"], train=True, rngs={"dropout": dropout_rng})
        sums = task.metrics(outputs, batch)
        total, count = sums["loss"]
        return total / count, sums

    def train_step(state, batch, rng, noise_std):
        grads, sums = jax.grad(loss_fn, has_aux=True)(state["params"], batch, rng, noise_std)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        sums = dict(sums, grad_norm=(optax.tree.norm(grads), jnp.float32(1.0)))
        return {"params": params, "opt_state": opt_state}, sums

    return train_step


def make_eval_step(model, task):
    """eval_step(params, batch) -> (metric sums, outputs or None when the task needs no host metrics)."""

    def eval_step(params, batch):
        outputs = model.apply(params, batch["x"], batch["lengths"], train=False)
        return task.metrics(outputs, batch), (outputs if task.needs_host_metrics else None)

    return eval_step
