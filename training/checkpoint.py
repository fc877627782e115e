"""Orbax checkpoints of the training state, one per epoch, for resumption after any interruption."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import jax
import orbax.checkpoint as ocp

logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every file it renames at INFO


# Orbax calls from several threads at once (a CPU population trains one sub-population per thread)
# failed under load: a save's temporary directory was deleted while being written ("Directory not empty:
# ocdbt.process_0"). One thread at a time calls into Orbax, as in a one-thread population.
_ORBAX = threading.RLock()


class Checkpoints:
    def __init__(self, directory: Path, keep: int = 2):
        with _ORBAX:
            self.manager = ocp.CheckpointManager(
                Path(directory).absolute(),
                options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            )

    def latest_epoch(self) -> int | None:
        with _ORBAX:
            return self.manager.latest_step()

    def save(self, epoch: int, state, meta: dict) -> None:
        with _ORBAX:
            self.manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    def restore(self, epoch: int, like_state):
        """Restore into the structure, shapes and shardings of `like_state` (so device counts may change)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        with _ORBAX:
            out = self.manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["state"], out["meta"]

    def close(self) -> None:
        with _ORBAX:
            self.manager.wait_until_finished()
            self.manager.close()
