"""MNIST from the four IDX files: tiny files written here stand in for the real ones (60 training and 20
test images of random pixels), so the tests check the reader, the layouts and the errors, not the data."""

from __future__ import annotations

import gzip
import socket

import numpy as np
import pytest

from conftest import compose_config, shared_data
from tasks import DataError, make_task, task_from_conf
from tasks.mnist import IDX_FILES, read_idx

N_TRAIN, N_TEST = 60, 20


def write_idx(path, array: np.ndarray, magic: int) -> None:
    """The IDX format: a big-endian magic (0x08 = unsigned bytes, then the rank), the dims, the bytes."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_mnist(directory, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    raw = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(directory / IDX_FILES[split][0], images, 2051)
        write_idx(directory / IDX_FILES[split][1], labels, 2049)
        raw[split] = (images, labels)
    return raw


@pytest.fixture
def mnist_dir(tmp_path):
    raw = write_mnist(tmp_path / "data")
    return tmp_path / "data", raw


def rows(raw_images: np.ndarray) -> set[bytes]:
    return {im.tobytes() for im in raw_images}


def test_rows_layout_scales_pixels_and_keeps_every_image(mnist_dir):
    directory, raw = mnist_dir
    splits = task_from_conf("mnist", valid_size=10).load(str(directory), seed=0)
    assert {k: len(v["y"]) for k, v in splits.items()} == {"train": 50, "valid": 10, "test": N_TEST}
    for split in splits.values():
        assert split["x"].shape[1:] == (28, 28) and split["x"].dtype == np.float32
        assert 0.0 <= split["x"].min() and split["x"].max() <= 1.0
        assert (split["lengths"] == 28).all()
    np.testing.assert_array_equal(splits["test"]["x"], raw["test"][0] / np.float32(255.0))  # test order kept
    np.testing.assert_array_equal(splits["test"]["y"], raw["test"][1])
    # train and valid partition the 60 training images, each with its own label
    back = np.concatenate([splits["train"]["x"], splits["valid"]["x"]]) * 255.0
    labels = np.concatenate([splits["train"]["y"], splits["valid"]["y"]])
    assert rows(np.rint(back).astype(np.uint8)) == rows(raw["train"][0])
    by_image = {im.tobytes(): y for im, y in zip(*raw["train"])}
    assert all(by_image[im.tobytes()] == y for im, y in zip(np.rint(back).astype(np.uint8), labels))


def test_files_in_a_mnist_subfolder_are_found(tmp_path):
    raw = write_mnist(tmp_path / "mnist")
    splits = task_from_conf("mnist", valid_size=10).load(str(tmp_path), seed=0)
    np.testing.assert_array_equal(splits["test"]["y"], raw["test"][1])


def test_pixels_layout_is_784_steps_of_one_pixel(mnist_dir):
    directory, raw = mnist_dir
    test = task_from_conf("mnist", layout="pixels", valid_size=10).load(str(directory), seed=0)["test"]
    assert test["x"].shape == (N_TEST, 784, 1)
    assert (test["lengths"] == 784).all()
    np.testing.assert_array_equal(test["x"][:, :, 0], raw["test"][0].reshape(N_TEST, 784) / np.float32(255.0))


def test_psmnist_permutation_is_fixed_by_its_own_seed(mnist_dir):
    directory, raw = mnist_dir

    def permuted(permutation_seed, run_seed=0):
        task = task_from_conf("mnist", layout="pixels", permute=True, permutation_seed=permutation_seed, valid_size=10)
        return task.load(str(directory), seed=run_seed)["test"]["x"][:, :, 0]

    plain = raw["test"][0].reshape(N_TEST, 784) / np.float32(255.0)
    a = permuted(0)
    # one permutation of the pixel positions, the same for every image
    perm = np.random.default_rng(0).permutation(784)
    np.testing.assert_array_equal(a, plain[:, perm])
    np.testing.assert_array_equal(a, permuted(0, run_seed=7))  # the run's seed does not move it
    assert not np.array_equal(a, permuted(1))
    assert not np.array_equal(a, plain)


def test_the_validation_split_is_the_same_for_every_run_seed(mnist_dir):
    directory, _ = mnist_dir
    a = task_from_conf("mnist", valid_size=10).load(str(directory), seed=0)
    b = task_from_conf("mnist", valid_size=10).load(str(directory), seed=123)
    for split in ("train", "valid"):
        np.testing.assert_array_equal(a[split]["x"], b[split]["x"])
        np.testing.assert_array_equal(a[split]["y"], b[split]["y"])


def test_valid_size_must_leave_training_images(mnist_dir):
    directory, _ = mnist_dir
    with pytest.raises(ValueError, match="valid_size must be between 1 and 59"):
        task_from_conf("mnist", valid_size=60).load(str(directory), seed=0)


def test_a_truncated_file_is_a_data_error_naming_it(mnist_dir):
    directory, _ = mnist_dir
    path = directory / IDX_FILES["train"][0]
    path.write_bytes(path.read_bytes()[:-200])  # cut inside the gzip stream
    with pytest.raises(DataError, match=str(path)):
        task_from_conf("mnist", valid_size=10).load(str(directory), seed=0)


def test_a_file_with_the_wrong_magic_is_a_data_error_naming_it(mnist_dir):
    directory, raw = mnist_dir
    path = directory / IDX_FILES["test"][0]
    write_idx(path, raw["test"][0], 2049)  # the labels' magic on an images file
    with pytest.raises(DataError, match=f"{path}: not an IDX file with magic 2051"):
        task_from_conf("mnist", valid_size=10).load(str(directory), seed=0)


def test_a_file_shorter_than_its_header_says_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    images = np.zeros((3, 28, 28), np.uint8)
    with gzip.open(path, "wb") as f:  # header claims 4 images, body holds 3
        f.write((2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (4, 28, 28)) + images.tobytes())
    with pytest.raises(DataError, match=f"{path}: header says shape \\(4, 28, 28\\)"):
        read_idx(str(path), 2051)


def test_images_and_labels_of_different_counts_are_a_data_error(mnist_dir):
    directory, raw = mnist_dir
    write_idx(directory / IDX_FILES["test"][1], raw["test"][1][:-1], 2049)
    with pytest.raises(DataError, match="20 images but t10k-labels-idx1-ubyte.gz has 19 labels"):
        task_from_conf("mnist", valid_size=10).load(str(directory), seed=0)


def test_a_label_outside_the_ten_digits_is_a_data_error_naming_the_file(mnist_dir):
    directory, raw = mnist_dir
    labels = raw["train"][1].copy()
    labels[3] = 10
    write_idx(directory / IDX_FILES["train"][1], labels, 2049)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: label 10 at position 3 \(1 labels in all\) is not a digit 0-9"):
        task_from_conf("mnist", valid_size=10).load(str(directory), seed=0)


def test_a_missing_file_is_named_as_missing(mnist_dir):
    directory, _ = mnist_dir
    (directory / IDX_FILES["test"][1]).unlink()
    with pytest.raises(DataError) as e:
        task_from_conf("mnist", valid_size=10).load(str(directory), seed=0)
    assert f"{directory}: t10k-labels-idx1-ubyte.gz is missing; MNIST needs the four IDX files" in str(e.value)
    assert "truncated" not in str(e.value) and "gzip" not in str(e.value)


def test_without_a_data_dir_the_error_says_odyssey_data_dir_is_not_set(monkeypatch):
    monkeypatch.delenv("ODYSSEY_DATA_DIR", raising=False)
    cfg = compose_config("task=mnist", tiny=False)
    assert cfg.data_dir is None
    with pytest.raises(DataError) as e:
        make_task(cfg.task, cfg.download).load(cfg.data_dir, seed=0)
    assert "MNIST not found: no data_dir: ODYSSEY_DATA_DIR is not set and no data_dir= was given" in str(e.value)
    assert "None" not in str(e.value)


def test_no_files_fails_at_once_naming_where_it_looked_and_writes_nothing(tmp_path):
    """Without download=true no network is tried: TFDS offline retries for minutes and writes download folders."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as e:
        task_from_conf("mnist").load(str(empty), seed=0)
    message = str(e.value)
    assert str(empty) in message and "train-images-idx3-ubyte.gz" in message
    assert "ODYSSEY_DATA_DIR" in message and "download=true" in message
    assert not list(empty.iterdir())  # nothing written where the user pointed


def test_with_download_and_no_network_says_where_it_looked_and_how_to_supply_data(tmp_path, monkeypatch):
    """The real TFDS path (download=true), offline: name resolution fails at once, and TFDS's retries are turned off
    (it retries 10 times with backoff, about 3.5 minutes, before giving up)."""
    from tensorflow_datasets.core.download import downloader

    def offline(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(downloader, "MAX_RETRIES", 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    task = task_from_conf("mnist")
    task.download = True
    with pytest.raises(DataError) as e:
        task.load(str(empty), seed=0)
    message = str(e.value)
    assert str(empty) in message and f"{empty}'/mnist" in message  # where it looked
    assert "train-images-idx3-ubyte.gz" in message and "TFDS could not prepare 'mnist'" in message  # what it tried
    assert "data_dir=" in message and "ODYSSEY_DATA_DIR" in message  # how to supply the data


def test_data_dir_defaults_to_the_odyssey_data_dir_variable(mnist_dir, monkeypatch):
    directory, raw = mnist_dir
    monkeypatch.setenv("ODYSSEY_DATA_DIR", str(directory))
    cfg = compose_config("task=mnist", "task.valid_size=10", tiny=False)
    assert cfg.data_dir == str(directory)
    splits = make_task(cfg.task, cfg.download).load(cfg.data_dir, cfg.seed)
    np.testing.assert_array_equal(splits["test"]["y"], raw["test"][1])


@pytest.mark.slow
def test_the_real_files_hold_the_official_splits():
    directory = shared_data("mnist")
    splits = task_from_conf("mnist").load(str(directory), seed=0)
    assert {k: v["x"].shape for k, v in splits.items()} == {
        "train": (55000, 28, 28), "valid": (5000, 28, 28), "test": (10000, 28, 28)}
    assert set(np.unique(splits["test"]["y"])) == set(range(10))
    assert 0.1 < splits["test"]["x"].mean() < 0.15  # MNIST's mean pixel is about 0.13
