"""MNIST as a sequence task: row by row (28 steps × 28 pixels), or pixel by pixel (784 × 1), optionally
with one fixed, seeded permutation of the pixels (psMNIST).

Source: the four canonical IDX files (`train-images-idx3-ubyte.gz`, ...) in `data_dir` or
`data_dir/mnist`; otherwise TFDS `mnist` (downloads when online). Pixels are scaled to [0, 1]; the
official 10,000 test images are the test set and a validation set is carved from the 60,000
training images.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib

import numpy as np

from tasks.checksums import verify
from tasks.base import NO_DATA_DIR, DataError, Split, Task, carve_validation, classification_metrics, majority_class

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def read_idx(path: str, magic: int) -> np.ndarray:
    """An IDX array from a gzipped file; a clear error for a wrong, truncated or corrupt file."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot decompress ({e}); the file is truncated or not gzip. Replace it with the original IDX .gz file.") from e
    if len(data) < 8 or int.from_bytes(data[:4], "big") != magic:
        raise DataError(f"{path}: not an IDX file with magic {magic} (found {int.from_bytes(data[:4], 'big') if len(data) >= 4 else 'nothing'}).")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes) but the file holds {len(data)} bytes; it is truncated or corrupt.")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def check_labels(labels: np.ndarray, source: str) -> None:
    """MNIST's labels are the digits 0-9; anything else would index past the head's ten classes."""
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if len(bad):
        raise DataError(f"{source}: label {int(labels[bad[0]])} at position {int(bad[0])} ({len(bad)} labels in all) is "
                        "not a digit 0-9; MNIST has ten classes. Replace the file with the original.")


def find_idx_dir(data_dir: str | None) -> str | None:
    if not data_dir:
        return None
    for d in (os.path.join(data_dir, "mnist"), data_dir):
        if os.path.exists(os.path.join(d, IDX_FILES["train"][0])):
            return d
    return None


def load_idx(directory: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    names = [name for pair in IDX_FILES.values() for name in pair]
    missing = [name for name in names if not os.path.exists(os.path.join(directory, name))]
    if missing:
        raise DataError(f"{directory}: {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; MNIST needs "
                        f"the four IDX files {', '.join(names)} together there.")
    verify(*(os.path.join(directory, name) for pair in IDX_FILES.values() for name in pair))  # against SHA256SUMS, if listed
    out = {}
    for split, (images, labels) in IDX_FILES.items():
        x = read_idx(os.path.join(directory, images), IMAGE_MAGIC)
        y = read_idx(os.path.join(directory, labels), LABEL_MAGIC)
        if len(x) != len(y):
            raise DataError(f"{directory}: {images} has {len(x)} images but {labels} has {len(y)} labels.")
        check_labels(y, os.path.join(directory, labels))
        out[split] = (x, y)
    return out


def load_tfds(data_dir: str | None, download: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The real download path: TFDS `mnist`, read without TensorFlow through `tfds.data_source`.
    Without `download`, fail at once: TFDS offline retries for minutes and writes download folders."""
    if not download and not data_dir:
        raise DataError(
            f"MNIST not found: {NO_DATA_DIR}. Set ODYSSEY_DATA_DIR (or pass data_dir=) to a folder holding the four IDX "
            f".gz files ({IDX_FILES['train'][0]}, ...) or a mnist/ folder of them, or pass download=true to fetch them "
            "through TFDS (needs internet).")
    if not download:
        raise DataError(
            f"MNIST not found: no IDX files ({IDX_FILES['train'][0]}, ...) in data_dir={data_dir!r} or {data_dir!r}/mnist. "
            "Put the four IDX .gz files in a folder and pass data_dir=<folder> (or set ODYSSEY_DATA_DIR once), "
            "or pass download=true to fetch them through TFDS (needs internet).")
    import tensorflow_datasets as tfds

    logging.getLogger("odyssey").warning(
        "No MNIST IDX files in data_dir=%r; trying TFDS 'mnist' (download=true; offline, TFDS gives up "
        "only after its retries, a few minutes).", data_dir)
    try:
        sources = tfds.data_source("mnist", data_dir=data_dir)
    except Exception as e:  # offline with nothing prepared: say where we looked and what to do
        raise DataError(
            f"MNIST not found: no IDX files ({IDX_FILES['train'][0]}, ...) in data_dir={data_dir!r} or "
            f"{data_dir!r}/mnist, and TFDS could not prepare 'mnist' ({type(e).__name__}: {e}). "
            "Put the four IDX .gz files in a folder and pass data_dir=<folder> (or set ODYSSEY_DATA_DIR), "
            "or run once with internet access so TFDS can download it."
        ) from e
    out = {}
    for split in ("train", "test"):
        src = sources[split]
        items = src.__getitems__(range(len(src)))
        out[split] = (np.stack([it["image"][..., 0] for it in items]), np.array([it["label"] for it in items]))
    return out


class MNISTTask(Task):
    output_size = 10
    readout = "last"
    objective = ("accuracy", "max")
    preparing = "reading the images"

    def __init__(self, name: str, layout: str, permute: bool, permutation_seed: int, valid_size: int):
        if layout not in ("rows", "pixels"):
            raise ValueError(f"task.layout must be 'rows' (28 steps × 28) or 'pixels' (784 steps × 1), got {layout!r}.")
        self.name, self.layout, self.permute = name, layout, permute
        self.permutation_seed, self.valid_size = permutation_seed, valid_size

    @property
    def input_size(self) -> int:
        return 28 if self.layout == "rows" else 1

    def chance(self, splits):
        return majority_class(splits)

    def load(self, data_dir: str | None, seed: int) -> dict[str, Split]:
        directory = find_idx_dir(data_dir)
        raw = load_idx(directory) if directory else load_tfds(data_dir, self.download)
        splits = {name: self._sequences(*xy) for name, xy in raw.items()}
        # the validation split is the same for every run, whatever its seed, so runs compare fairly
        splits["train"], splits["valid"] = carve_validation(splits["train"], self.valid_size, seed=0)
        return splits

    def _sequences(self, images: np.ndarray, labels: np.ndarray) -> Split:
        x = images.astype(np.float32) / 255.0  # [N, 28, 28] in [0, 1]
        if self.layout == "pixels":
            x = x.reshape(len(x), -1, 1)  # [N, 784, 1]
            if self.permute:
                perm = np.random.default_rng(self.permutation_seed).permutation(x.shape[1])
                x = x[:, perm]
        return {"x": x, "y": labels.astype(np.int32), "lengths": np.full(len(x), x.shape[1], np.int32)}

    def metrics(self, outputs, batch):
        return classification_metrics(outputs, batch["y"], batch["mask"])
