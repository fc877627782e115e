"""Local data files checked against the SHA-256 list that ships beside them, once per file version.

What pooch does not do: downloads are pooch's (tasks/music.py: fetch, SHA-256 check, cache), and so is the
hashing here (pooch.file_hash); this module adds only the `SHA256SUMS` lists beside local files and a cache
of their digests, so a data folder is hashed once, not on every run.

A data folder may hold a `SHA256SUMS` file (`sha256sum` format, paths relative to that folder), as
../shared/data does. Before a task reads a file listed there, its digest is compared; a mismatch is a
DataError naming the file, so a truncated copy, or one data set saved under another's name, is never
trained on. Digests are cached by (path, size, modification time) in the user cache folder, so each
file is hashed once, not on every run. Files that no list names are read unchecked.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import pooch

from tasks.base import DataError

LIST = "SHA256SUMS"


def cache_dir() -> Path:
    """Where downloads and digests are kept: $ODYSSEY_CACHE_DIR, else the user cache folder's odyssey/."""
    if os.environ.get("ODYSSEY_CACHE_DIR"):
        return Path(os.environ["ODYSSEY_CACHE_DIR"])
    return Path(pooch.os_cache("odyssey"))  # the platform's user cache (~/.cache/odyssey, honouring XDG_CACHE_HOME)


@lru_cache(maxsize=16)
def _listed(folder: Path, mtime_ns: int) -> dict[str, str]:
    digests = {}
    for line in (folder / LIST).read_text().splitlines():
        digest, _, name = line.strip().partition("  ")
        if name:
            digests[str((folder / name.lstrip("*")).resolve())] = digest.lower()
    return digests


def expected_digest(path: Path) -> tuple[str, Path] | None:
    """The digest a SHA256SUMS in one of the file's parent folders (up to 3 up) lists for it, and that list."""
    path = Path(path).resolve()
    for folder in list(path.parents)[:3]:
        listing = folder / LIST
        if listing.is_file():
            digest = _listed(folder, listing.stat().st_mtime_ns).get(str(path))
            if digest:
                return digest, listing
    return None


def verify(*paths: Path) -> None:
    """Refuse any file whose SHA-256 differs from the one its folder's SHA256SUMS lists."""
    checks = [(Path(p), found) for p in paths if (found := expected_digest(p)) is not None]
    if not checks:
        return
    store = cache_dir() / "sha256.json"
    try:
        known = json.loads(store.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    before = len(known)
    for path, (expected, listing) in checks:
        actual = digest(path, known)
        if actual != expected:
            raise DataError(f"{path}: SHA-256 {actual[:16]}… differs from {expected[:16]}…, listed in {listing}; the file "
                            "is truncated, corrupt or another file saved under this name. Replace it with the listed original.")
    if len(known) > before:
        try:  # best effort: a read-only home only costs hashing again next time
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_name(f"{store.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, store)
        except OSError:
            pass


def digest(path: Path, known: dict) -> str:
    """The file's SHA-256, from `known` when the file's size and modification time are unchanged."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in known:
        known[key] = pooch.file_hash(str(path), alg="sha256")
    return known[key]
