"""A run's jitted training and evaluation steps, on one device or with each batch split over several.

Split over n devices, each device computes the gradient of its slice of the batch (summed loss, so
slices add up), device 0 adds the n gradients, updates the parameters and the optimizer state, and
sends the new parameters back to the others. Only copies move between devices; no program contains
a collective operation.

Why not `jit` with `shard_map` and `psum`: on XLA:CPU, whose devices share one process and its thread
pools, the in-process all-reduce deadlocked. Measured on this 2-core machine with 2 CPU devices:
`python train.py cell=gru` (row MNIST) aborted on XLA's 40 s rendezvous timeout in epoch 17, and in
epoch 4 when rerun; a loop of bare training steps aborted within 90 s. The same loop with these steps
ran 90 s (10,300 gru steps) without a stall, as fast as the all-reduce version had run (np 12,484 against
12,305 seq/s, `python -m benchmarks.throughput --quick`). Parameters and gradients cross as one flat
vector each: copying their trees leaf by leaf cost 10-20 %. `jit`'s automatic partitioning is worse
still: it sums the weight gradients inside the backward scan, at every time step.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from training.steps import make_eval_step, make_grad_step, make_train_step, make_update

COLLECTIVE_ON_CPU = False  # tests set it to run the GPU/TPU path (shard_map + psum) on CPU devices


def make_steps(model, task, tx, devices):
    """A run's steps over `devices`: copies between XLA:CPU devices (Steps), shard_map with an all-reduce
    on GPUs and TPUs (training/sharded.py), plain jitted steps on one device."""
    if len(devices) > 1 and (devices[0].platform != "cpu" or COLLECTIVE_ON_CPU):
        from training.sharded import ShardedSteps

        return ShardedSteps(model, task, tx, devices)
    return Steps(model, task, tx, devices)


class Steps:
    """train(state, batch, rng, noise_std, padded) -> (state, metrics) and
    eval(params, batch, padded) -> (metric sums, outputs or None), for host (numpy) batches.

    The state lives on devices[0]; with one device these are plain jitted steps.
    """

    def __init__(self, model, task, tx, devices):
        self.devices = list(devices)
        self._eval = jax.jit(make_eval_step(model, task), static_argnames="padded")
        if len(self.devices) == 1:
            self._train = jax.jit(make_train_step(model, task, tx), static_argnames="padded")
            return
        grad_step, update = make_grad_step(model, task), make_update(tx)
        self._grad_step = grad_step
        self._unravel_params = self._unravel_parts = None  # flat vector -> params, -> (grads, sums): set by the first step

        def slice_grads(flat_params, batch, rng, first_row, noise_std, padded):  # noise and dropout keyed by row
            grads, sums = grad_step(self._unravel_params(flat_params), batch, rng, noise_std, padded, first_row)
            return ravel_pytree((grads, sums))[0]  # one array to copy between devices

        def add_and_update(state, flat_parts):
            grads, sums = self._unravel_parts(sum(flat_parts))
            state, metrics = update(state, grads, sums)
            return state, metrics, ravel_pytree(state["params"])[0]

        self._grads = jax.jit(slice_grads, static_argnames="padded")
        self._update = jax.jit(add_and_update)
        self._ravel = jax.jit(lambda params: ravel_pytree(params)[0])
        self._flat = (None, None)  # (params, their flat vector on devices[0])
        self._replicas = (None, [])

    @property
    def count(self) -> int:
        return len(self.devices)

    def place(self, tree):
        """Put a state (or anything the steps read whole) on devices[0]."""
        return jax.device_put(tree, self.devices[0])

    def train(self, state, batch, rng, noise_std, padded: bool):
        if self.count == 1:
            return self._train(state, batch, rng, noise_std, padded=padded)
        slices = self.slices(batch)
        if self._unravel_parts is None:
            self._learn_shapes(state["params"], slices[0], rng, noise_std, padded)
        flat = self._flat[1] if self._flat[0] is state["params"] else self._ravel(state["params"])
        copies = [flat] + [jax.device_put(flat, d) for d in self.devices[1:]]
        size = len(batch["lengths"]) // self.count
        parts = [self._grads(p, b, rng, np.int32(i * size), noise_std, padded=padded)
                 for i, (p, b) in enumerate(zip(copies, slices))]
        home = self.devices[0]
        state, metrics, flat = self._update(state, [parts[0]] + [jax.device_put(part, home) for part in parts[1:]])
        self._flat = (state["params"], flat)  # the next step's parameters, already flat
        return state, metrics

    def _learn_shapes(self, params, batch, rng, noise_std, padded):
        """Everything crosses between devices as one flat vector; these functions undo the flattening."""
        zeros = lambda tree: jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), tree)
        self._unravel_params = ravel_pytree(zeros(params))[1]
        parts = jax.eval_shape(lambda: self._grad_step(params, batch, rng, noise_std, padded))
        self._unravel_parts = ravel_pytree(zeros(parts))[1]

    def eval(self, params, batch, padded: bool):
        if self.count == 1:
            return self._eval(params, batch, padded=padded)
        results = [self._eval(p, b, padded=padded) for p, b in zip(self.replicas(params), self.slices(batch))]
        sums = {k: tuple(sum(np.asarray(r[0][k][j]) for r in results) for j in (0, 1)) for k in results[0][0]}
        outputs = None if results[0][1] is None else np.concatenate([np.asarray(r[1]) for r in results])
        return sums, outputs

    def slices(self, batch: dict) -> list[dict]:
        """Device i gets rows [i·B/n, (i+1)·B/n) of every array of the batch."""
        n = self.count
        size = len(batch["lengths"]) // n
        return [jax.device_put({k: v[i * size:(i + 1) * size] for k, v in batch.items()}, d)
                for i, d in enumerate(self.devices)]

    def replicas(self, params) -> list:
        """params on every device; reused while the same params are evaluated batch after batch."""
        source, copies = self._replicas
        if source is not params:
            copies = [params] + [jax.device_put(params, d) for d in self.devices[1:]]
            self._replicas = (params, copies)
        return copies

