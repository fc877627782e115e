"""Orbax checkpoints of the training state: the latest epochs for resumption after any interruption,
and the best validation epoch's, from which result.json's test figure was computed (checkpoints/best)."""

from __future__ import annotations

import copy
import logging
import threading
from pathlib import Path

import jax
import orbax.checkpoint as ocp

log = logging.getLogger("odyssey")
logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every file it renames at INFO


# Orbax calls from several threads at once (a CPU population trains one sub-population per thread)
# failed under load: a save's temporary directory was deleted while being written ("Directory not empty:
# ocdbt.process_0"). One thread at a time calls into Orbax, as in a one-thread population.
_ORBAX = threading.RLock()


def _manager(directory: Path, keep: int) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(Path(directory).absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


class Checkpoints:
    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory)
        with _ORBAX:
            self.manager = _manager(directory, keep)
            self.best = _manager(self.directory / "best", 1)

    def latest_epoch(self) -> int | None:
        with _ORBAX:
            return self.manager.latest_step()

    def best_epoch(self) -> int | None:
        with _ORBAX:
            return self.best.latest_step()

    def save(self, epoch: int, state, meta: dict, best: bool = False) -> None:
        """Save `state` and `meta` (a snapshot: Orbax writes in the background, after the caller goes on)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(copy.deepcopy(meta)))
        with _ORBAX:
            self.manager.save(epoch, args=args)
            if best:
                self.best.save(epoch, args=args)

    def restore(self, epoch: int, like_state, best: bool = False):
        """Restore into the structure, shapes and shardings of `like_state` (so device counts may change)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        with _ORBAX:
            out = (self.best if best else self.manager).restore(epoch, args=args)
        return out["state"], out["meta"]

    def restore_newest_good(self, like_state):
        """(epoch, state, meta) of the newest checkpoint that restores, or None when there is none.

        A checkpoint that fails to restore (truncated or overwritten files, junk meta) is skipped with one
        log line naming it, and the one before it is tried; it is left on disk for inspection. When
        checkpoints exist but none restores, the error names the folder, and nothing is deleted.
        """
        with _ORBAX:
            epochs = sorted(self.manager.all_steps(), reverse=True)
        for epoch in epochs:
            try:
                state, meta = self.restore(epoch, like_state)
                if not isinstance(meta, dict) or {"epoch", "step", "best"} - meta.keys():
                    raise ValueError(f"its meta is not a run's meta: {str(meta)[:80]!r}")
                return epoch, state, meta
            except Exception as e:  # Orbax/TensorStore raise many types; the message's first line is the gist
                reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                log.warning("checkpoint %s does not restore (%s: %s); trying the one before",
                            self.directory / str(epoch), type(e).__name__, reason)
        if epochs:
            raise RuntimeError(f"no checkpoint in {self.directory} restores (tried epochs {epochs}); move the folder "
                               "away to start the run afresh. Nothing was deleted.")
        return None

    def close(self) -> None:
        with _ORBAX:
            for m in (self.manager, self.best):
                m.wait_until_finished()
                m.close()
