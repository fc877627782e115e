"""A run's steps on several GPUs or TPUs: one program over a mesh, the batch sharded by rows, the
gradient summed with `psum`, the standard data parallelism of `jax.shard_map`.

Each device computes the summed loss and gradient of its rows (noise and dropout keyed by each
example's row in the whole batch, so the numbers do not depend on the device count), `psum` adds them
across devices, and every device applies the same update to its replica of the state. XLA:CPU runs
the copy-based split instead (training/split.py: its in-process all-reduce deadlocked); `make_steps`
chooses. (check_vma=False: the cells' scans start from constant zeros, which the varying-axes check
would have to be told are per device; each device's gradient is taken inside its shard and only then
summed, so no autodiff crosses the psum.)
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from training.steps import make_eval_step, make_grad_step, make_update

AXIS = "batch"


class ShardedSteps:
    """training/split.py's Steps interface (train, eval, place, count) as shard_map programs."""

    def __init__(self, model, task, tx, devices):
        self.devices = list(devices)
        mesh = Mesh(np.array(self.devices), (AXIS,))
        self._replicated, self._rows = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
        grad_step, update, eval_step = make_grad_step(model, task), make_update(tx), make_eval_step(model, task)

        def collective_train(state, batch, rng, noise_std, padded):
            def local(params, rows, rng, noise_std):  # this device's rows of the batch
                first_row = jax.lax.axis_index(AXIS) * rows["lengths"].shape[0]
                return jax.lax.psum(grad_step(params, rows, rng, noise_std, padded, first_row), AXIS)

            grads, sums = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(AXIS), P(), P()), out_specs=P(),
                                         check_vma=False)(
                state["params"], batch, rng, noise_std)
            return update(state, grads, sums)

        def collective_eval(params, batch, padded):
            def local(params, rows):
                sums, outputs = eval_step(params, rows, padded)
                return jax.lax.psum(sums, AXIS), outputs

            return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P(AXIS)),
                                 check_vma=False)(params, batch)

        self._train = jax.jit(collective_train, static_argnames="padded")
        self._eval = jax.jit(collective_eval, static_argnames="padded")

    @property
    def count(self) -> int:
        return len(self.devices)

    def place(self, tree):
        """A state (or anything the steps read whole), replicated on every device."""
        return jax.device_put(tree, self._replicated)

    def train(self, state, batch, rng, noise_std, padded: bool):
        return self._train(state, jax.device_put(batch, self._rows), rng, noise_std, padded=padded)

    def eval(self, params, batch, padded: bool):
        return self._eval(params, jax.device_put(batch, self._rows), padded=padded)
