"""Polyphonic music tasks: piano rolls from .mat or the original pickles, next-step NLL with padding masked."""

import hashlib
import os
import pickle
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.io

from conftest import compose_config, shared_data
from tasks import DataError, batches, make_task, task_from_conf
from tasks import music
from tasks.music import Source, load_pickle
from training import train

LENGTHS = {"traindata": [5, 3, 4], "validdata": [4], "testdata": [6, 2]}


def random_roll(rng, T):
    return (rng.random((T, 88)) < 0.1).astype(np.uint8)


def cell(*rolls):
    """A MATLAB 1xN cell array of the given arrays."""
    out = np.empty((1, len(rolls)), dtype=object)
    for i, r in enumerate(rolls):
        out[0, i] = r
    return out


def write_mat(path, lengths=LENGTHS, seed=0, **replace):
    """A tiny .mat shaped like the real ones: 1xN cells of T x 88 uint8 rolls."""
    rng = np.random.default_rng(seed)
    data = {}
    for key, ls in lengths.items():
        data[key] = cell(*(random_roll(rng, T) for T in ls))
    data.update(replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, data)
    return scipy.io.loadmat(path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty cache and no network, so nothing outside tmp_path is read or fetched."""
    monkeypatch.setenv("ODYSSEY_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(url, output_file, pooch):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(music, "http_downloader", lambda: refuse)


def test_splits_are_next_step_pairs_zero_padded(tmp_path, offline):
    mat = write_mat(tmp_path / "polyphonic" / "JSB_Chorales.mat")
    splits = task_from_conf("jsb").load(str(tmp_path), seed=0)
    assert {k: len(v["lengths"]) for k, v in splits.items()} == {"train": 3, "valid": 1, "test": 2}
    train = splits["train"]
    assert train["x"].shape == train["y"].shape == (3, 4, 88)  # longest piece 5 steps -> 4 predictions
    np.testing.assert_array_equal(train["lengths"], [4, 2, 3])
    for i, roll in enumerate(mat["traindata"][0]):
        L = len(roll) - 1
        np.testing.assert_array_equal(train["x"][i, :L], roll[:-1])
        np.testing.assert_array_equal(train["y"][i, :L], roll[1:])
        assert not train["x"][i, L:].any() and not train["y"][i, L:].any()


def test_the_mat_may_sit_directly_in_data_dir(tmp_path, offline):
    write_mat(tmp_path / "Nottingham.mat")
    assert len(task_from_conf("nottingham").load(str(tmp_path), 0)["test"]["lengths"]) == 2


def test_nll_is_the_per_step_sum_over_keys_of_sigmoid_cross_entropies(tmp_path):
    rng = np.random.default_rng(1)
    B, T = 3, 5
    logits = rng.normal(0, 2, (B, T, 88)).astype(np.float32)
    y = (rng.random((B, T, 88)) < 0.2).astype(np.uint8)
    batch = {"y": y, "lengths": np.array([5, 2, 4], np.int32), "mask": np.array([1, 1, 0], np.float32)}
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    per_step = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(-1)  # [B, T]
    expected = (per_step[0, :5].sum() + per_step[1, :2].sum()) / 7  # row 2 is a padding row (mask 0)
    m = jax.jit(task_from_conf("jsb").metrics)(logits, batch)
    total, count = m["nll"]
    assert float(count) == 7
    assert float(total) / float(count) == pytest.approx(expected, rel=1e-5)
    assert m["loss"] == m["nll"]



def test_greffs_per_sequence_loss_sums_a_pieces_steps_and_averages_over_pieces_while_nll_stays_per_step():
    """task.loss=per_sequence (Greff's code): the loss is the NLL summed over each piece's real steps, averaged
    over the real pieces; the reported nll is unchanged (per step)."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, (3, 5, 88)).astype(np.float32)
    y = (rng.random((3, 5, 88)) < 0.2).astype(np.uint8)
    batch = {"y": y, "lengths": np.array([5, 2, 4], np.int32), "mask": np.array([1, 1, 0], np.float32)}
    per_step, per_sequence = (task_from_conf("jsb", loss=loss).metrics(logits, batch) for loss in ("per_step", "per_sequence"))
    assert per_sequence["nll"] == per_step["nll"]
    total, pieces = per_sequence["loss"]
    assert float(pieces) == 2 and float(total) == pytest.approx(float(per_step["nll"][0]), rel=1e-6)


def test_an_unknown_loss_normalisation_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="per_step, per_sequence"):
        task_from_conf("jsb", loss="per_frame")

def test_padded_steps_and_padding_rows_do_not_change_the_nll():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 6, 88)).astype(np.float32)
    y = (rng.random((2, 6, 88)) < 0.2).astype(np.uint8)
    batch = {"y": y, "lengths": np.array([6, 3], np.int32), "mask": np.array([1, 1], np.float32)}
    base = task_from_conf("jsb").metrics(logits, batch)["nll"]
    logits2, y2 = logits.copy(), y.copy()
    logits2[1, 3:] = 50.0
    y2[1, 3:] = 0
    changed = task_from_conf("jsb").metrics(logits2, {**batch, "y": y2})["nll"]
    np.testing.assert_allclose(changed, base, rtol=1e-6)
    dropped = task_from_conf("jsb").metrics(logits, {**batch, "mask": np.array([1, 0], np.float32)})["nll"]
    assert float(dropped[1]) == 6 and float(dropped[0]) < float(base[0])


def test_batches_trim_inputs_and_targets_together(tmp_path, offline):
    write_mat(tmp_path / "JSB_Chorales.mat", {"traindata": [9, 3], "validdata": [4], "testdata": [4]})
    task = task_from_conf("jsb", time_bucket=4)
    split = task.load(str(tmp_path), 0)["train"]
    (short,) = [b for b in batches(split, 1, time_keys=task.time_keys, time_bucket=task.time_bucket)
                if b["lengths"][0] == 2]
    assert short["x"].shape == short["y"].shape == (1, 4, 88)  # 2 steps, rounded up to the bucket


def test_original_pickles_map_midi_21_to_108_onto_columns_0_to_87(tmp_path, offline):
    pieces = {"train": [[(60, 64), (), (np.int64(21), 108)], [(40,), (41,)]], "valid": [[(50,), (51,)]],
              "test": [[(70, 72), (70,)]]}
    (tmp_path / "JSB Chorales.pickle").write_bytes(pickle.dumps(pieces, protocol=2))
    rolls = load_pickle(tmp_path / "JSB Chorales.pickle")
    np.testing.assert_array_equal(np.flatnonzero(rolls["train"][0][0]), [39, 43])
    assert not rolls["train"][0][1].any()
    np.testing.assert_array_equal(np.flatnonzero(rolls["train"][0][2]), [0, 87])
    splits = task_from_conf("jsb").load(str(tmp_path), 0)  # found by its original name, with a space
    assert splits["train"]["x"].shape == (2, 2, 88)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    path = tmp_path / "MuseData.pickle"
    path.write_bytes(pickle.dumps({"train": [Evil()], "valid": [], "test": []}, protocol=2))
    with pytest.raises(DataError, match="MuseData.pickle.*refusing to load"):
        load_pickle(path)


@pytest.mark.parametrize("pieces, message", [
    ({"train": [[(20,), (60,)]], "valid": [], "test": []}, "MIDI note 20"),
    ({"train": [[(60,)]], "valid": [], "test": []}, "at least 2 time steps"),
    ({"train": []}, "keys train, valid and test"),
])
def test_bad_pickles_name_the_file_and_problem(tmp_path, pieces, message):
    path = tmp_path / "Nottingham.pickle"
    path.write_bytes(pickle.dumps(pieces, protocol=2))
    with pytest.raises(DataError, match=f"Nottingham.pickle.*{message}"):
        load_pickle(path)


def test_a_corrupt_mat_file_is_a_data_error_naming_it(tmp_path, offline):
    (tmp_path / "Piano_midi.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match="Piano_midi.mat.*truncated or corrupt"):
        task_from_conf("piano").load(str(tmp_path), 0)


@pytest.mark.parametrize("replace, message", [
    ({"validdata": None}, "no 'validdata' array"),
    ({"testdata": cell(np.zeros((5, 80), np.uint8))}, r"testdata\[0\].*shape \(5, 80\)"),
    ({"testdata": cell(np.zeros((1, 88), np.uint8))}, r"testdata\[0\].*has 1"),
    ({"testdata": cell(np.full((3, 88), 2, np.uint8))}, "must be 0 or 1"),
])
def test_malformed_mat_contents_are_data_errors(tmp_path, offline, replace, message):
    lengths = {k: v for k, v in LENGTHS.items() if replace.get(k, 0) is not None}
    write_mat(tmp_path / "MuseData.mat", lengths, **{k: v for k, v in replace.items() if v is not None})
    with pytest.raises(DataError, match=f"MuseData.mat.*{message}"):
        task_from_conf("muse").load(str(tmp_path), 0)


def test_missing_files_offline_say_where_they_looked_and_what_to_do(tmp_path, offline):
    task = task_from_conf("jsb")
    task.download = True
    with pytest.raises(DataError, match=r"JSB_Chorales.mat.*JSB Chorales.pickle.*download failed.*unreachable.*data_dir"):
        task.load(str(tmp_path), 0)


def test_missing_files_without_download_fail_at_once_and_try_no_network(tmp_path, monkeypatch):
    monkeypatch.setattr(music, "http_downloader", lambda: pytest.fail("no download without download=true"))
    with pytest.raises(DataError, match=r"neither JSB_Chorales.mat.*found.*download=true"):
        task_from_conf("jsb").load(str(tmp_path), 0)


def serving(payload):
    """A pooch downloader that serves `payload` for any URL, as a server would."""
    def downloader(url, output_file, pooch):
        Path(output_file).write_bytes(payload)
    return lambda: downloader


def test_the_download_is_checked_by_sha256_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ODYSSEY_CACHE_DIR", str(tmp_path / "cache"))
    write_mat(tmp_path / "served" / "JSB_Chorales.mat")
    payload = (tmp_path / "served" / "JSB_Chorales.mat").read_bytes()
    monkeypatch.setattr(music, "http_downloader", serving(b"not the file"))
    task = task_from_conf("jsb")
    task.download = True
    with pytest.raises(DataError, match="ac0e6085.*not kept"):
        task.load(None, 0)
    assert not (tmp_path / "cache" / "polyphonic" / "JSB_Chorales.mat").exists()

    monkeypatch.setitem(music.DATASETS, "jsb", Source("JSB_Chorales.mat", hashlib.sha256(payload).hexdigest(), "x.pickle"))
    monkeypatch.setattr(music, "http_downloader", serving(payload))
    assert len(task.load(None, 0)["train"]["lengths"]) == 3
    assert (tmp_path / "cache" / "polyphonic" / "JSB_Chorales.mat").read_bytes() == payload


def test_every_music_config_builds_its_task():
    for name in ("jsb", "nottingham", "piano", "muse"):
        task = make_task(compose_config(f"task={name}", tiny=False).task, download=False)
        assert (task.dataset, task.output_size, task.readout, task.objective) == (name, 88, "all", ("nll", "min"))


@pytest.mark.slow
def test_training_on_a_tiny_music_set_reports_nll(tmp_path, offline):
    write_mat(tmp_path / "data" / "JSB_Chorales.mat")
    cfg = compose_config("task=jsb", f"data_dir={tmp_path / 'data'}", "hidden=8", "epochs=1", "batch_size=2",
                         "eval_batch_size=4", "wandb.mode=disabled", tiny=False)
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["objective"] == {"name": "nll", "mode": "min"}
    assert 0 < result["test"]["nll"] < 88 * np.log(2) * 2  # finite, near 88·log 2 at initialization


REAL = {"jsb": ("JSB_Chorales.mat", (229, 76, 77)), "nottingham": ("Nottingham.mat", (694, 173, 170)),
        "piano": ("Piano_midi.mat", (87, 12, 25)), "muse": ("MuseData.mat", (524, 135, 124))}


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_real_sets_have_the_standard_splits_and_train(name, tmp_path):
    folder = shared_data("polyphonic")
    file, sizes = REAL[name]
    assert (folder / file).exists()
    cfg = compose_config(f"task={name}", f"data_dir={folder.parent}", "hidden=8", "epochs=1", "batch_size=2",
                         "max_steps_per_epoch=1", "eval_batch_size=200", "wandb.mode=disabled", tiny=False)
    splits = make_task(cfg.task, cfg.download).load(cfg.data_dir, 0)
    assert tuple(len(splits[s]["lengths"]) for s in ("train", "valid", "test")) == sizes
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed" and np.isfinite(result["test"]["nll"])


def test_a_file_that_differs_from_its_sha256sums_entry_is_refused_naming_it(tmp_path, offline):
    good = write_mat(tmp_path / "polyphonic" / "JSB_Chorales.mat")
    digest = hashlib.sha256((tmp_path / "polyphonic" / "JSB_Chorales.mat").read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  polyphonic/JSB_Chorales.mat\n")
    assert len(task_from_conf("jsb").load(str(tmp_path), 0)["train"]["lengths"]) == len(good["traindata"][0])
    write_mat(tmp_path / "polyphonic" / "JSB_Chorales.mat", seed=1)  # other bytes under the listed name
    with pytest.raises(DataError, match=r"JSB_Chorales.mat: SHA-256 .* differs from .*, listed in .*SHA256SUMS"):
        task_from_conf("jsb").load(str(tmp_path), 0)


def test_another_standard_set_saved_under_the_jsb_name_is_refused(tmp_path, offline, monkeypatch):
    """Nottingham saved as JSB_Chorales.mat: its split sizes give it away (shrunk here to the toy sizes)."""
    monkeypatch.setitem(music.SPLIT_SIZES, "nottingham", (3, 1, 2))
    write_mat(tmp_path / "JSB_Chorales.mat")
    with pytest.raises(DataError, match=r"which is nottingham's split, not jsb's .* Nottingham.mat under another name"):
        task_from_conf("jsb").load(str(tmp_path), 0)


@pytest.mark.slow
def test_the_shared_data_files_match_their_sha256sums():
    folder = shared_data("polyphonic")
    from tasks.checksums import expected_digest, verify

    files = sorted(folder.glob("*.mat"))
    assert files and all(expected_digest(f) for f in files)  # the shared list names every music file
    verify(*files)
