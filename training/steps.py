"""The pure, jitted steps: one optimizer update, and one evaluation batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import PartitionSpec as P


def make_train_step(model, task, tx, mesh=None):
    """train_step(state, batch, rng, noise_std, padded=True) -> (state, metrics).

    state = {"params", "opt_state"}; the learning rate and momentum live in opt_state (injected
    hyperparameters) and the input-noise std is an argument, so one compiled step serves any
    values of them (population training vmaps over all three). `padded` (static: jit it with
    static_argnames="padded") is `is_padded(batch)`: False runs the scan without masks.

    With a `mesh` of several devices (axis "data"), each device takes its slice of the batch and the
    gradients are summed once per step (`shard_map` + `psum`). Left to jit's automatic partitioning, XLA
    all-reduces the weight gradients inside the backward scan, at every time step: measured 2x slower
    than one device on a 2-core CPU (benchmarks/throughput.py).
    """

    def total_loss(params, x, batch, rng, padded):
        lengths = batch["lengths"] if padded else None  # None: the scan skips masking
        outputs = model.apply(params, x, lengths, train=True, rngs={"dropout": rng})
        sums = task.metrics(outputs, batch)
        return sums["loss"][0], sums

    grad_sums = local_grad_sums = jax.grad(total_loss, has_aux=True)  # (d total / d params, metric sums)
    if mesh is not None and mesh.size > 1:
        def local(params, x, batch, rng, padded):  # one device's slice; dropout masks differ per slice
            grads, sums = local_grad_sums(params, x, batch, jax.random.fold_in(rng, jax.lax.axis_index("data")), padded)
            flat, unflatten = ravel_pytree((grads, sums))  # one buffer: XLA:CPU meets once per operand
            return unflatten(jax.lax.psum(flat, "data"))

        def grad_sums(params, x, batch, rng, padded):
            split = jax.shard_map(lambda *a: local(*a, padded), mesh=mesh, in_specs=(P(), P("data"), P("data"), P()),
                                  out_specs=(P(), P()), check_vma=False)
            return split(params, x, batch, rng)

    def train_step(state, batch, rng, noise_std, padded=True):
        noise_rng, dropout_rng = jax.random.split(rng)
        x = jax.lax.cond(  # Greff's input noise; drawing it costs ~20% of a small CPU step, so only when used
            noise_std > 0, lambda: batch["x"] + noise_std * jax.random.normal(noise_rng, batch["x"].shape), lambda: batch["x"])
        grads, sums = grad_sums(state["params"], x, batch, dropout_rng, padded)
        grads = jax.tree.map(lambda g: g / sums["loss"][1], grads)  # the gradient of the mean loss
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        sums = dict(sums, grad_norm=(optax.tree.norm(grads), jnp.float32(1.0)))
        return {"params": params, "opt_state": opt_state}, sums

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
