"""Orbax checkpoints of the training state: the latest epochs for resumption after any interruption,
and the best validation epoch's, from which result.json's test figure was computed (checkpoints/best).

Each checkpoint's meta carries the SHA-256 of every array's bytes ("digests"), computed from the state
being saved; a restore recomputes them and refuses a checkpoint whose arrays changed on disk, which
Orbax itself restores without complaint (a flipped byte in an array's data file gives other numbers).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import atexit
import shutil
import threading
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger("odyssey")
logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax logs every file it renames at INFO


# Orbax calls from several threads at once (a CPU population trains one sub-population per thread)
# failed under load: a save's temporary directory was deleted while being written ("Directory not empty:
# ocdbt.process_0"). One thread at a time calls into Orbax, as in a one-thread population.
_ORBAX = threading.RLock()


class CorruptCheckpoint(ValueError):
    """A checkpoint whose arrays do not match the digests saved with them."""


def digests(state) -> dict[str, str]:
    """{path of each array in the tree: its dtype, shape and the SHA-256 of its bytes}."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        array = np.ascontiguousarray(np.asarray(leaf))
        out[jax.tree_util.keystr(path)] = f"{array.dtype.name}{list(array.shape)} {hashlib.sha256(array.tobytes()).hexdigest()}"
    return out


def one_line(error: BaseException) -> str:
    """An exception as `Type: first line of its message` (Orbax's and TensorStore's run long)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


def _save_args(state, meta: dict):
    meta = {**copy.deepcopy(meta), "digests": digests(state)}
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))


def _manager(directory: Path, keep: int) -> ocp.CheckpointManager:
    # cleanup_tmp_directories: what a failed or killed save left half-written is removed when the run (re)starts;
    # no other process writes there meanwhile (the run folder's lock, training/lock.py)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


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
        """Save `state` and `meta`, with the state's digests in the meta (a snapshot: Orbax writes in the
        background, after the caller goes on)."""
        args = _save_args(state, meta)
        with _ORBAX:
            self.manager.save(epoch, args=args)
            if best:
                self.best.save(epoch, args=args)

    def restore(self, epoch: int, like_state, best: bool = False):
        """(state, meta) restored into the structure, shapes and shardings of `like_state` (so device counts may
        change); CorruptCheckpoint when an array's bytes differ from the digest saved with it (a checkpoint
        written before digests existed is restored unchecked)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        with _ORBAX:
            out = (self.best if best else self.manager).restore(epoch, args=args)
        state, meta = out["state"], out["meta"]
        saved = meta.pop("digests", None) if isinstance(meta, dict) else None
        if saved is not None:
            found = digests(state)
            changed = sorted(k for k in saved.keys() | found.keys() if saved.get(k) != found.get(k))
            if changed:
                raise CorruptCheckpoint(f"{len(changed)} of its {len(saved)} arrays differ from the SHA-256 saved with "
                                        f"them ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})")
        return state, meta

    def check_best(self, like_state) -> str | None:
        """On resume: does the best epoch's checkpoint restore, its arrays matching their digests? If not, one
        line names it, and it is rebuilt from the same epoch's own checkpoint when that one is still kept and
        sound; otherwise the best state is lost (until a better epoch replaces it): the reason is returned."""
        epoch = self.best_epoch()
        if epoch is None:
            return None
        try:
            self.restore(epoch, like_state, best=True)
            return None
        except Exception as e:  # Orbax/TensorStore raise many types
            reason = one_line(e)
        where = self.directory / "best" / str(epoch)
        try:
            state, meta = self.restore(epoch, like_state)
        except Exception:
            log.warning("best checkpoint %s does not restore (%s), and epoch %d's own checkpoint is gone or no better; "
                        "the best state is lost until a better epoch replaces it", where, reason, epoch)
            return f"{where} does not restore ({reason})"
        self._set_aside(self.best, self.directory / "best", [epoch])
        with _ORBAX:
            self.best.save(epoch, args=_save_args(state, meta))
        log.warning("best checkpoint %s does not restore (%s); rebuilt from %s", where, reason, self.directory / str(epoch))
        return None

    def restore_newest_good(self, like_state):
        """(epoch, state, meta) of the newest checkpoint that restores, or None when there is none.

        A checkpoint that fails to restore (truncated or overwritten files, arrays that differ from their
        digests, junk meta) is skipped with one log line naming it, and the one before it is tried. Once one
        restores, the skipped ones are moved aside as `<epoch>.corrupt`, kept for inspection (left in place,
        Orbax would count them as the newest and skip saving the epochs redone). When checkpoints exist but
        none restores, the error names the folder, and nothing is moved or deleted.
        """
        with _ORBAX:
            epochs = sorted(self.manager.all_steps(), reverse=True)
        for n, epoch in enumerate(epochs):
            try:
                state, meta = self.restore(epoch, like_state)
                if not isinstance(meta, dict) or {"epoch", "step", "best"} - meta.keys():
                    raise ValueError(f"its meta is not a run's meta: {str(meta)[:80]!r}")
                if n:
                    self._set_aside(self.manager, self.directory, epochs[:n])
                return epoch, state, meta
            except Exception as e:  # Orbax/TensorStore raise many types; the message's first line is the gist
                log.warning("checkpoint %s does not restore (%s); trying the one before", self.directory / str(epoch),
                            one_line(e))
        if epochs:
            raise RuntimeError(f"no checkpoint in {self.directory} restores (tried epochs {epochs}); move the folder "
                               "away to start the run afresh. Nothing was deleted.")
        return None

    @staticmethod
    def _set_aside(manager: ocp.CheckpointManager, directory: Path, epochs: list[int]) -> None:
        """Rename checkpoints <epoch> to <epoch>.corrupt (or .corrupt2, ...), which Orbax no longer counts."""
        with _ORBAX:
            for epoch in epochs:
                target, k = directory / f"{epoch}.corrupt", 1
                while target.exists():
                    k += 1
                    target = directory / f"{epoch}.corrupt{k}"
                (directory / str(epoch)).rename(target)
            manager.reload()

    def close(self) -> None:
        """Wait for the saves in flight (raising a failed one's error) and close."""
        with _ORBAX:
            for m in (self.manager, self.best):
                m.wait_until_finished()
                m.close()

    def abandon(self) -> None:
        """The run failed: let the saves in flight end (a failure of theirs is part of this one), close, and
        remove what a failed save left (Orbax's `<epoch>.orbax-checkpoint-tmp*` folders)."""
        with _ORBAX:
            for m in (self.manager, self.best):
                for finish in (m.wait_until_finished, m.close):
                    try:
                        finish()
                    except Exception:  # already failing; the run's one line names the first error
                        pass
        self._remove_partials()
        # A write Orbax abandoned may still make its folder after this (1 run in 6 of the real-full-disk test
        # left one); Python runs atexit handlers after its non-daemon threads have ended, so look again then.
        atexit.register(self._remove_partials)

    def _remove_partials(self) -> None:
        for folder in (self.directory, self.directory / "best"):
            for partial in folder.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(partial, ignore_errors=True)
