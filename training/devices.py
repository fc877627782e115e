"""Data parallelism over the local devices: one mesh axis, "data".

A single run shards each batch's leading axis across the devices and replicates the parameters; a
population shards its trials' axis instead. jit (GSPMD) inserts the gradient all-reduce. With one
device nothing is moved, so CPU runs pay nothing.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


class Placement:
    def __init__(self, devices=None):
        self.devices = list(devices or jax.devices())
        self.mesh = Mesh(np.array(self.devices), ("data",))
        self.split = NamedSharding(self.mesh, P("data"))  # leading axis across devices
        self.whole = NamedSharding(self.mesh, P())  # a full copy on every device

    @property
    def count(self) -> int:
        return len(self.devices)

    def check_divisible(self, size: int, what: str) -> None:
        if size % self.count:
            raise ValueError(f"{what}={size} does not divide evenly over {self.count} devices; "
                             f"choose a multiple of {self.count} (or run on fewer devices, e.g. platform=cpu).")

    def shard(self, tree):
        """Split the leading axis of every array across the devices."""
        return tree if self.count == 1 else jax.device_put(tree, self.split)

    def replicate(self, tree):
        return tree if self.count == 1 else jax.device_put(tree, self.whole)
