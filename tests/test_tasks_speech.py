"""Spoken digits (FSDD): the README's split, standardized MFCC frames, and digit strings trained with CTC."""

import csv

import jax
import numpy as np
import pytest
import scipy.io.wavfile

import tasks.fsdd_strings as fsdd_strings
from conftest import compose_config, shared_data
from tasks import DataError, make_task, task_from_conf
from tasks.fsdd import split_ids
from tasks.fsdd_strings import BLANK, greedy_decode, make_strings
from training import train

HOP = 80  # samples per 10 ms frame at 8 kHz


def samples(index, rate=8000):
    """Recording `index` lasts 100 + 10·index ms, so its frame count (11 + index) tells where it went."""
    return int(rate * (0.10 + 0.01 * index))


def write_fsdd(root, digits=range(3), speakers=("alice", "bob"), indices=range(7), rate=8000, manifest=True):
    """A tiny FSDD: one tone per digit plus seeded noise, as 16-bit PCM wavs named like the real ones."""
    folder = root / "fsdd" / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    rng, rows = np.random.default_rng(0), []
    for d in digits:
        for s in speakers:
            for i in indices:
                t = np.arange(samples(i, rate)) / rate
                audio = 0.3 * np.sin(2 * np.pi * (300 + 250 * d) * t) + 0.01 * rng.normal(size=len(t))
                scipy.io.wavfile.write(folder / f"{d}_{s}_{i}.wav", rate, (audio * 32767).astype(np.int16))
                rows.append({"file": f"recordings/{d}_{s}_{i}.wav", "digit": d, "speaker": s, "index": i,
                             "split": "test" if i < 5 else "train"})
    if manifest:
        with open(root / "fsdd" / "manifest.tsv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
            writer.writeheader()
            writer.writerows(rows)
    return folder


@pytest.fixture
def tiny_fsdd(tmp_path):
    write_fsdd(tmp_path)
    return tmp_path


def real_frames(split):
    return np.concatenate([x[:n] for x, n in zip(split["x"], split["lengths"])])


# ---------------------------------------------------------------- fsdd: utterance classification

@pytest.mark.slow
def test_recordings_0_to_4_are_the_test_set_and_the_rest_train_or_valid(tiny_fsdd):
    splits = task_from_conf("fsdd", valid_size=2).load(str(tiny_fsdd), seed=0)
    assert {s: len(v["y"]) for s, v in splits.items()} == {"train": 10, "valid": 2, "test": 30}
    assert set(splits["test"]["lengths"]) == {11, 12, 13, 14, 15}  # indices 0-4
    assert set(splits["train"]["lengths"]) | set(splits["valid"]["lengths"]) <= {16, 17}  # indices 5-6
    np.testing.assert_array_equal(np.bincount(splits["test"]["y"]), [10, 10, 10])
    assert splits["train"]["x"].shape == (10, 17, 20) and splits["train"]["x"].dtype == np.float32


def test_the_validation_recordings_are_fixed_whatever_the_run_seed(tiny_fsdd):
    a, b = task_from_conf("fsdd", valid_size=2).load(str(tiny_fsdd), 0), task_from_conf("fsdd", valid_size=2).load(str(tiny_fsdd), 7)
    for split in a:
        np.testing.assert_array_equal(a[split]["x"], b[split]["x"])
    ids = split_ids(np.array([0, 5, 6, 7, 4, 9, 12]), valid_size=2)
    assert set(ids["test"]) == {0, 4}
    assert set(ids["train"]) | set(ids["valid"]) == {1, 2, 3, 5, 6} and len(ids["valid"]) == 2
    with pytest.raises(ValueError, match="valid size must be between 1 and 4"):
        split_ids(np.array([0, 5, 6, 7, 4, 9, 12]), valid_size=5)


def test_features_are_standardized_with_training_statistics(tiny_fsdd):
    splits = task_from_conf("fsdd", valid_size=2).load(str(tiny_fsdd), 0)
    frames = real_frames(splits["train"])
    np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(frames.std(0), 1, atol=1e-3)
    assert not np.allclose(real_frames(splits["test"]).mean(0), 0, atol=1e-2)  # not refitted on the test set
    assert not splits["train"]["x"][0, 16:].any()  # padding stays zero


def test_log_mel_features_have_one_value_per_band(tiny_fsdd):
    splits = task_from_conf("fsdd", features="logmel", n_mels=24, valid_size=2).load(str(tiny_fsdd), 0)
    assert splits["test"]["x"].shape[-1] == 24


@pytest.mark.slow
def test_other_sample_rates_are_resampled_to_the_task_rate(tmp_path):
    write_fsdd(tmp_path, digits=[1], indices=range(6), rate=16000, manifest=False)
    splits = task_from_conf("fsdd", valid_size=1).load(str(tmp_path), 0)
    assert set(splits["test"]["lengths"]) == {11, 12, 13, 14, 15}  # 10 ms frames of the 8 kHz signal


def test_wav_names_are_parsed_when_there_is_no_manifest(tmp_path):
    folder = write_fsdd(tmp_path, manifest=False)
    assert len(task_from_conf("fsdd", valid_size=2).load(str(tmp_path / "fsdd" / "recordings"), 0)["test"]["y"]) == 30
    (folder / "hello.wav").write_bytes((folder / "0_alice_0.wav").read_bytes())
    with pytest.raises(DataError, match=r"hello.wav: not an FSDD file name; expected \{digit\}_\{speaker\}_\{index\}"):
        task_from_conf("fsdd", valid_size=2).load(str(tmp_path), 0)


def test_a_file_listed_in_the_manifest_but_missing_is_named(tiny_fsdd):
    (tiny_fsdd / "fsdd" / "recordings" / "2_bob_3.wav").unlink()
    with pytest.raises(DataError, match="2_bob_3.wav: listed in .*manifest.tsv but missing"):
        task_from_conf("fsdd", valid_size=2).load(str(tiny_fsdd), 0)


@pytest.mark.parametrize("content, message", [(b"RIFF\x10\x00\x00\x00WAVEjunk", "cannot read it as audio"),
                                              (None, "holds no audio samples")])
def test_corrupt_or_empty_recordings_are_data_errors_naming_the_file(tiny_fsdd, content, message):
    path = tiny_fsdd / "fsdd" / "recordings" / "1_alice_6.wav"
    if content is None:
        scipy.io.wavfile.write(path, 8000, np.zeros(0, np.int16))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=f"1_alice_6.wav: {message}"):
        task_from_conf("fsdd", valid_size=2).load(str(tiny_fsdd), 0)


def test_a_recording_shorter_than_one_analysis_window_is_a_data_error_naming_it(tiny_fsdd):
    path = tiny_fsdd / "fsdd" / "recordings" / "1_alice_6.wav"
    scipy.io.wavfile.write(path, 8000, np.zeros(150, np.int16))  # the window is 25 ms: 200 samples
    with pytest.raises(DataError, match=r"1_alice_6.wav: 150 samples \(18.8 ms at 8000 Hz\) is shorter than one analysis "
                                        r"window \(task.window_ms=25: 200 samples\)"):
        task_from_conf("fsdd", valid_size=2).load(str(tiny_fsdd), 0)


@pytest.mark.parametrize("digit, message", [("10", "is labelled digit 10; FSDD's classes are the digits 0-9"),
                                            ("-1", "is labelled digit -1"), ("x", "has digit 'x'")])
def test_a_manifest_label_outside_the_ten_digits_is_a_data_error_naming_the_file(tiny_fsdd, digit, message):
    manifest = tiny_fsdd / "fsdd" / "manifest.tsv"
    lines = manifest.read_text().splitlines()
    row = lines[1].split("\t")
    row[1] = digit
    manifest.write_text("\n".join([lines[0], "\t".join(row), *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=f"manifest.tsv: (the row of )?{row[0]} {message}"):
        task_from_conf("fsdd", valid_size=2).load(str(tiny_fsdd), 0)


def test_without_a_data_dir_the_error_says_odyssey_data_dir_is_not_set():
    with pytest.raises(DataError, match="FSDD not found: no data_dir: ODYSSEY_DATA_DIR is not set and no data_dir= was given"):
        task_from_conf("fsdd", valid_size=2).load(None, 0)


def test_without_files_or_network_the_error_says_what_to_do(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def offline(*args, **kwargs):
        raise ConnectionError("no internet")

    monkeypatch.setattr(tfds, "data_source", offline)
    task = task_from_conf("fsdd")
    task.download = True
    with pytest.raises(DataError, match=r"FSDD not found.*data_dir=.*spoken_digit.*no internet.*fsdd/recordings"):
        task.load(str(tmp_path), 0)
    task.download = False  # the default: no TFDS at all, the same advice
    monkeypatch.setattr(tfds, "data_source", lambda *a, **k: pytest.fail("no download without download=true"))
    with pytest.raises(DataError, match=r"FSDD not found.*fsdd/recordings.*download=true"):
        task.load(str(tmp_path), 0)


class FakeSource:
    """What `tfds.data_source('spoken_digit')['train']` yields: int16 PCM, label and file name."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitems__(self, idx):
        return [self.items[i] for i in idx]


def test_tfds_spoken_digit_gets_the_same_index_split(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(0)
    items = [{"audio": (rng.normal(0, 3000, samples(i))).astype(np.int64), "label": d,
              "audio/filename": f"{d}_theo_{i}.wav".encode()} for d in range(2) for i in range(8)]
    monkeypatch.setattr(tfds, "data_source", lambda name, data_dir=None: {"train": FakeSource(items)})
    task = task_from_conf("fsdd", valid_size=2)
    task.download = True
    splits = task.load(None, 0)
    assert {s: len(v["y"]) for s, v in splits.items()} == {"train": 4, "valid": 2, "test": 10}
    assert set(splits["test"]["lengths"]) == {11, 12, 13, 14, 15}


def test_the_fsdd_config_defaults_to_a_bidirectional_model():
    cfg = compose_config("task=fsdd", tiny=False)
    task = make_task(cfg.task, cfg.download)
    assert cfg.bidirectional is True and task.readout == "last" and task.objective == ("accuracy", "max")


@pytest.mark.slow
def test_training_on_a_tiny_fsdd_reports_accuracy(tiny_fsdd, tmp_path):
    cfg = compose_config("task=fsdd", f"data_dir={tiny_fsdd}", "task.valid_size=2", "hidden=8", "epochs=1",
                         "batch_size=4", "eval_batch_size=32", "wandb.mode=disabled", tiny=False)
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed" and 0 <= result["test"]["accuracy"] <= 1


# ---------------------------------------------------------------- fsdd_strings: CTC on digit strings

def tagged(n, first_tag=0, speakers=("alice", "bob")):
    """n recordings whose frames all hold their own tag, so a string reveals which recordings made it."""
    feats = [np.full((3 + i % 4, 1), first_tag + i, np.float32) for i in range(n)]
    return feats, np.arange(n, dtype=np.int32) % 10, np.array([speakers[i % len(speakers)] for i in range(n)])


def recordings_in(x, length):
    frames = x[:length, 0].astype(int)
    return frames[np.r_[True, frames[1:] != frames[:-1]]]


def test_a_string_joins_recordings_of_one_speaker_and_is_labelled_with_their_digits():
    feats, digits, speakers = tagged(40)
    s = make_strings(feats, digits, speakers, 50, 2, 5, np.random.default_rng(0))
    assert s["x"].shape[0] == 50 and s["y"].shape == (50, 5)
    for x, n, y, k in zip(s["x"], s["lengths"], s["y"], s["label_lengths"]):
        used = recordings_in(x, n)
        assert 2 <= k <= 5 and len(used) == k
        assert n == sum(len(feats[j]) for j in used)
        np.testing.assert_array_equal(y[:k], digits[used])
        assert not y[k:].any() and len(set(speakers[used])) == 1


def test_strings_are_the_same_for_the_same_seed_and_differ_for_another():
    feats, digits, speakers = tagged(40)
    a, b, c = (make_strings(feats, digits, speakers, 20, 2, 5, np.random.default_rng(seed)) for seed in (3, 3, 4))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["y"], c["y"])


def test_each_split_draws_only_its_own_recordings_and_is_deterministic(monkeypatch):
    tags = {"train": 0, "valid": 100, "test": 200}
    monkeypatch.setattr(fsdd_strings, "utterances", lambda *args: {s: tagged(30, t) for s, t in tags.items()})
    task = task_from_conf("fsdd_strings", train_size=40, valid_size=10, test_size=10)
    splits = task.load(None, 0)
    for split, first in tags.items():
        values = real_frames(splits[split])
        assert values.min() >= first and values.max() < first + 30
    again = task_from_conf("fsdd_strings", train_size=80, valid_size=10, test_size=10).load(None, 1)
    np.testing.assert_array_equal(again["test"]["x"], splits["test"]["x"])  # train_size and run seed leave test alone
    assert len(again["train"]["y"]) == 80


def one_hot_frames(path, T):
    """Logits [T, 11] that put all mass on `path` (class per frame), padded with blanks to T frames."""
    logits = np.full((T, 11), -20.0, np.float32)
    for t, c in enumerate(list(path) + [BLANK] * (T - len(path))):
        logits[t, c] = 20.0
    return logits


def strings_batch(labels, lengths, mask, L=3):
    y = np.zeros((len(labels), L), np.int32)
    for i, lab in enumerate(labels):
        y[i, :len(lab)] = lab
    return {"y": y, "label_lengths": np.array([len(l) for l in labels], np.int32),
            "lengths": np.array(lengths, np.int32), "mask": np.array(mask, np.float32)}


def test_a_perfect_prediction_has_near_zero_ctc_loss_and_no_errors():
    task = task_from_conf("fsdd_strings")
    outputs = np.stack([one_hot_frames([1, BLANK, 4, BLANK, 4], 8), one_hot_frames([7, 7, 0], 8)])
    batch = strings_batch([[1, 4, 4], [7, 0]], [6, 8], [1, 1])
    total, n = jax.jit(task.metrics)(outputs, batch)["loss"]
    assert np.isfinite(float(total)) and float(total) / float(n) < 1e-3
    assert task.host_metrics(outputs, batch) == {"error_rate": (0.0, 5.0)}


def test_a_known_wrong_prediction_has_the_known_error_rate_and_padding_rows_do_not_count():
    task = task_from_conf("fsdd_strings")
    outputs = np.stack([one_hot_frames([1, 4], 6), one_hot_frames([3, 3, 3], 6)])  # "1 4" and a padding row
    batch = strings_batch([[1, 4, 4], [7, 0]], [6, 6], [1, 0])
    assert task.host_metrics(outputs, batch) == {"error_rate": (1.0, 3.0)}  # one deletion in three digits
    total, n = task.metrics(outputs, batch)["loss"]
    assert float(n) == 1 and np.isfinite(float(total)) and float(total) > 10


def test_ctc_loss_of_uniform_outputs_counts_the_alignments():
    # label "3" in two frames: the paths 3 3, 3 b and b 3 each have probability 1/11², so loss = -log(3/121)
    batch = strings_batch([[3]], [2], [1], L=1)
    total, n = task_from_conf("fsdd_strings").metrics(np.zeros((1, 2, 11), np.float32), batch)["ctc"]
    assert float(total) == pytest.approx(-np.log(3 / 121), rel=1e-5)


def test_greedy_decoding_collapses_repeats_drops_blanks_and_stops_at_the_length():
    logits = one_hot_frames([2, 2, BLANK, 2, 5, 5, BLANK, 9], 8)
    assert greedy_decode(logits, 8) == [2, 2, 5, 9]
    assert greedy_decode(logits, 6) == [2, 2, 5]


@pytest.mark.slow
def test_training_on_tiny_digit_strings_reports_the_error_rate(tiny_fsdd, tmp_path):
    cfg = compose_config("task=fsdd_strings", f"data_dir={tiny_fsdd}", "task.valid_recordings=2", "task.train_size=16",
                         "task.valid_size=4", "task.test_size=4", "hidden=8", "epochs=1", "batch_size=4",
                         "eval_batch_size=8", "wandb.mode=disabled", tiny=False)
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["objective"] == {"name": "error_rate", "mode": "min"}
    assert result["test"]["error_rate"] >= 0 and np.isfinite(result["test"]["ctc"])


# ---------------------------------------------------------------- the real data set

@pytest.mark.slow
def test_real_fsdd_has_2700_training_and_300_test_recordings_and_trains(tmp_path):
    root = shared_data("fsdd").parent
    cfg = compose_config("task=fsdd", f"data_dir={root}", "hidden=8", "epochs=1", "batch_size=16",
                         "max_steps_per_epoch=1", "eval_batch_size=300", "wandb.mode=disabled", tiny=False)
    splits = make_task(cfg.task, cfg.download).load(cfg.data_dir, 0)
    assert {s: len(v["y"]) for s, v in splits.items()} == {"train": 2430, "valid": 270, "test": 300}
    np.testing.assert_array_equal(np.bincount(splits["test"]["y"]), [30] * 10)
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed" and 0 <= result["test"]["accuracy"] <= 1


@pytest.mark.slow
def test_real_digit_strings_train_and_report_an_error_rate(tmp_path):
    root = shared_data("fsdd").parent
    cfg = compose_config("task=fsdd_strings", f"data_dir={root}", "task.train_size=64", "task.valid_size=32",
                         "task.test_size=32", "hidden=8", "epochs=1", "batch_size=16", "max_steps_per_epoch=1",
                         "eval_batch_size=32", "wandb.mode=disabled", tiny=False)
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["test"]["error_rate"] > 0
