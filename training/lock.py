"""One process per run folder: `<run_dir>/run.lock`, an exclusive flock(2) held for the whole run.

A second process that would write into the same folder (the same command run twice, a sweep started
twice) is refused at once, in one line naming the holder's PID and host from the lock file. The kernel
drops a flock when its process dies however it dies, so a lock file left by `kill -9` or a power cut
does not block the rerun: the next process takes it over. The holder deletes the file when the run ends,
so a folder at rest holds no lock; the file is re-checked after locking, since a holder may delete it
between another process's open and its lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

NAME = "run.lock"


class RunLocked(ValueError):
    """Another live process holds this run folder."""


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Take the folder, or raise RunLocked naming the live holder."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = _read(fd)
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunLocked(f"refused: {self.path.parent} is in use by {describe(holder)} (lock: {self.path}); "
                                "wait for it to end or stop it, or use another folder (hydra.run.dir=...). "
                                "Nothing there was touched.") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder deleted the file as we opened it: lock the one that is there now
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only its holder goes unnamed
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the lock file, then drop the lock (in this order, so no one locks a file about to go)."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None


def _read(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "another process (it has not written its PID yet)"
    return f"process {holder['pid']} on {holder.get('host', 'an unknown host')}, running since {holder.get('since', '?')}"
