"""The one epoch protocol a lone run and every population trial share (training/run.py): early stopping,
checkpoints that hold what the epoch was, the best epoch kept on disk, and records that survive failure."""

from __future__ import annotations

import json
import logging

import jax
import jax.numpy as jnp
import pytest

from conftest import compose_config
from tasks import DataError, make_task
from training import train
from training.checkpoint import Checkpoints, CorruptCheckpoint
from training.loop import evaluate
from training.model import model_from_config
from training.optim import make_optimizer
from training.population import train_population
from training.run import Run, begin_run, run_epochs, start_tracking
from training.split import Steps


class ScriptedEngine:
    """An engine whose validation losses follow a script: the protocol alone is under test."""

    def __init__(self, valid_losses, size: int = 3):
        self.valid_losses, self.epoch, self.step, self.stopped, self.size = valid_losses, 0, 0, [], size
        self.compile_seconds = None

    def train_epoch(self, epoch):
        self.epoch, self.step = epoch, self.step + 4
        return [{"loss": 1.0}]

    def evaluate(self, split):
        return [{"loss": self.valid_losses[self.epoch - 1]}]

    def state(self, k):
        return {"params": {"w": jnp.sin(jnp.arange(self.size) + float(self.epoch))}}

    def stop(self, k):
        self.stopped.append(k)


def scripted_run(tmp_path, valid_losses, *overrides, size: int = 3) -> tuple[Run, ScriptedEngine]:
    run, done = begin_run(compose_config(f"epochs={len(valid_losses)}", *overrides), tmp_path)
    assert not done
    start_tracking(run)
    engine = ScriptedEngine(valid_losses, size)
    run_epochs([run], engine, ("loss", "min"), 64)
    return run, engine


def test_patience_epochs_without_a_better_validation_loss_end_the_run_early(tmp_path):
    run, engine = scripted_run(tmp_path, [3.0, 2.0, 2.5, 2.6, 1.0, 0.5], "patience=2")
    r = json.loads((tmp_path / "result.json").read_text())
    assert (r["status"], r["stopped_early"], r["epochs_completed"], r["best_epoch"]) == ("completed", True, 4, 2)
    assert engine.stopped == [0]  # a population freezes the trial
    assert [json.loads(l)["epoch"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_without_patience_a_run_trains_every_epoch(tmp_path):
    run, _ = scripted_run(tmp_path, [3.0, 2.0, 2.5, 2.6, 1.0, 0.5])
    assert (run.result["stopped_early"], run.result["epochs_completed"], run.result["best_epoch"]) == (False, 6, 6)


def test_a_checkpoint_stores_the_step_of_its_epoch_even_when_the_loop_moves_on_at_once(tmp_path):
    """Orbax commits in the background; the loop goes on counting steps while it does."""
    ckpt = Checkpoints(tmp_path / "checkpoints", keep=20)
    state, meta = {"w": jnp.zeros(1000)}, {"epoch": 0, "step": 0, "best": None, "wall_seconds": 0.0}
    for epoch in range(1, 11):
        meta.update(epoch=epoch, step=100 * epoch)
        ckpt.save(epoch, state, meta)
        meta["step"] += 7  # the next epoch's first steps, before the commit
    ckpt.close()
    ckpt = Checkpoints(tmp_path / "checkpoints", keep=20)
    assert [ckpt.restore(e, state)[1]["step"] for e in range(1, 11)] == [100 * e for e in range(1, 11)]


def test_the_best_validation_epochs_checkpoint_is_kept_and_reproduces_the_recorded_test_metric(tmp_path):
    cfg = compose_config("epochs=4", "lr=0.01")
    result = train(cfg, tmp_path)
    ckpt = Checkpoints(tmp_path / "checkpoints")
    assert ckpt.best_epoch() == result["best_epoch"]
    task = make_task(cfg.task, cfg.download)
    splits = task.load(cfg.data_dir, cfg.seed)
    model = model_from_config(cfg, task)
    params = model.init(jax.random.key(0), splits["train"]["x"][:1], splits["train"]["lengths"][:1])
    like = {"params": params, "opt_state": make_optimizer(cfg.optimizer, cfg.lr).init(params)}
    state, meta = ckpt.restore(result["best_epoch"], like, best=True)
    assert meta["epoch"] == result["best_epoch"]
    steps = Steps(model, task, None, jax.devices()[:1])
    test = evaluate(steps, task, state["params"], splits["test"], cfg.eval_batch_size)
    assert test["mse"] == pytest.approx(result["test"]["mse"], rel=1e-6)


@pytest.mark.slow
def test_a_corrupt_latest_checkpoint_is_named_and_the_run_resumes_from_the_one_before(tmp_path, caplog):
    first = train(compose_config("epochs=2"), tmp_path)
    for f in (tmp_path / "checkpoints" / "2").rglob("*"):
        if f.is_file():
            f.write_bytes(b"junk")
    (tmp_path / "metrics.jsonl").write_text((tmp_path / "metrics.jsonl").read_text() + '{"epoch": 3, "tra')  # torn
    with caplog.at_level(logging.WARNING, logger="odyssey"):
        resumed = train(compose_config("epochs=3"), tmp_path)
    assert f"checkpoint {tmp_path / 'checkpoints' / '2'} does not restore" in caplog.text
    assert "is not JSON (a run killed while writing it?); dropped" in caplog.text
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 3
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3]  # epoch 2 redone from epoch 1's checkpoint
    assert lines[1]["train"]["loss"] == pytest.approx(first["final"]["train"]["loss"], rel=1e-6)


def test_when_no_checkpoint_restores_the_run_refuses_naming_the_folder_and_deletes_nothing(tmp_path):
    train(compose_config("epochs=1"), tmp_path)
    for f in (tmp_path / "checkpoints").rglob("*"):
        if f.is_file() and "best" not in f.parts:
            f.write_bytes(b"junk")
    with pytest.raises(RuntimeError, match=f"no checkpoint in {tmp_path / 'checkpoints'} restores"):
        train(compose_config("epochs=2"), tmp_path)
    assert (tmp_path / "checkpoints" / "1").is_dir()
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"  # the finished record stays


def test_a_failed_rerun_of_a_completed_run_keeps_the_completed_record(tmp_path, monkeypatch):
    done = train(compose_config("epochs=1"), tmp_path)

    def broken(*a, **k):
        raise DataError("JSB_Chorales.mat is truncated")

    monkeypatch.setattr("training.loop.make_task", broken)
    with pytest.raises(DataError):
        train(compose_config("epochs=2"), tmp_path)  # e.g. a data_dir with a broken file
    kept = json.loads((tmp_path / "result.json").read_text())
    assert kept["status"] == "completed" and kept["test"] == done["test"]
    assert "truncated" in kept["failed_rerun"]["error"]


def test_a_run_that_fails_its_config_check_still_leaves_a_failed_record(tmp_path):
    with pytest.raises(ValueError, match="hidden must be a positive integer"):
        train(compose_config("hidden=0"), tmp_path)
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["status"] == "failed" and "hidden must be a positive integer" in r["error"]


def test_a_population_refuses_a_batch_larger_than_the_training_set_as_a_lone_run_does(tmp_path):
    message = r"batch_size=128 is larger than the training set \(64 examples\)"
    with pytest.raises(ValueError, match=message):
        train(compose_config("batch_size=128"), tmp_path / "lone")
    with pytest.raises(ValueError, match=message):
        train_population([compose_config("batch_size=128", f"lr={lr}") for lr in (0.01, 0.1)],
                         [tmp_path / "p0", tmp_path / "p1"])
    assert json.loads((tmp_path / "p1" / "result.json").read_text())["status"] == "failed"


def test_every_run_ends_with_one_summary_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="odyssey"):
        r = train(compose_config("epochs=2"), tmp_path)
    (line,) = [m for m in caplog.messages if m.startswith("completed after")]
    assert f"best epoch {r['best_epoch']}: valid mse {r['valid']['mse']:.4f}, test mse {r['test']['mse']:.4f}" in line
    assert line.endswith(f"record: {tmp_path / 'result.json'}")


def flip_array_bytes(checkpoint) -> None:
    """Garble the middle of every array data file of a checkpoint (`state/ocdbt.process_0/d/`; arrays too small to
    get a file of their own sit in the b-tree, which TensorStore checks itself): Orbax restores them silently."""
    files = [f for f in (checkpoint / "state" / "ocdbt.process_0" / "d").iterdir() if f.stat().st_size > 1000]
    assert files
    for f in files:
        data = bytearray(f.read_bytes())
        for i in range(len(data) // 3, len(data) // 3 + 8):
            data[i] ^= 0x55
        f.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_checkpoint_whose_array_bytes_changed_on_disk_is_refused_and_the_run_resumes_from_the_one_before(tmp_path, caplog):
    big = ("hidden=32", "input_noise=0.5")  # arrays of 4 KB: each in the data files, not inline in the b-tree
    reference = train(compose_config("epochs=3", *big), tmp_path / "uninterrupted")
    train(compose_config("epochs=2", *big), tmp_path)
    flip_array_bytes(tmp_path / "checkpoints" / "2")
    with caplog.at_level(logging.WARNING, logger="odyssey"):
        resumed = train(compose_config("epochs=3", *big), tmp_path)
    (line,) = [m for m in caplog.messages if "does not restore" in m]
    assert f"checkpoint {tmp_path / 'checkpoints' / '2'} does not restore (CorruptCheckpoint: " in line
    assert "differ from the SHA-256 saved with them" in line and line.endswith("trying the one before")
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 3
    assert (resumed["valid"], resumed["test"], resumed["final"]) == (reference["valid"], reference["test"], reference["final"])
    assert (tmp_path / "checkpoints" / "2.corrupt").is_dir()  # kept for inspection, out of Orbax's way:
    ckpt = Checkpoints(tmp_path / "checkpoints")
    assert ckpt.manager.all_steps() == [2, 3]  # epoch 2 was saved again when it was redone
    ckpt.restore(2, like_state(compose_config(*big)))
    ckpt.close()


def like_state(cfg):
    """A state of `cfg`'s structure and shapes (what a checkpoint restores into)."""
    task = make_task(cfg.task, cfg.download)
    splits = task.load(cfg.data_dir, cfg.seed)
    params = model_from_config(cfg, task).init(jax.random.key(0), splits["train"]["x"][:1], splits["train"]["lengths"][:1])
    return {"params": params, "opt_state": make_optimizer(cfg.optimizer, cfg.lr).init(params)}


@pytest.mark.slow
def test_a_corrupt_best_checkpoint_is_named_on_resume_and_rebuilt_from_its_epochs_own(tmp_path, caplog):
    cfg = compose_config("epochs=2", "lr=0.01", "hidden=32")
    first = train(cfg, tmp_path)
    best = tmp_path / "checkpoints" / "best" / str(first["best_epoch"])
    flip_array_bytes(best)
    ckpt = Checkpoints(tmp_path / "checkpoints")
    # caught by the digests, or first by TensorStore where the garbled bytes sit in a zstd-compressed chunk
    # (its "data corruption" error; seen once in a loaded run): either way the restore fails and names it
    with pytest.raises(Exception, match="differ from the SHA-256 saved with them|[Cc]orrupt"):
        ckpt.restore(first["best_epoch"], like_state(cfg), best=True)
    ckpt.close()
    with caplog.at_level(logging.WARNING, logger="odyssey"):
        train(compose_config("epochs=3", "lr=0.01", "hidden=32"), tmp_path)
    (line,) = [m for m in caplog.messages if "best checkpoint" in m]
    assert line.startswith(f"best checkpoint {best} does not restore (")
    assert line.endswith(f"rebuilt from {tmp_path / 'checkpoints' / str(first['best_epoch'])}")
    ckpt = Checkpoints(tmp_path / "checkpoints")
    ckpt.restore(ckpt.best_epoch(), like_state(cfg), best=True)  # sound again
    ckpt.close()


def test_a_corrupt_best_checkpoint_whose_epoch_is_no_longer_kept_is_named_as_lost(tmp_path, caplog):
    """Only the last two epochs are kept: an early best epoch's state has no other copy."""
    scripted_run(tmp_path, [1.0, 2.0, 3.0], size=3000)  # best epoch 1; checkpoints 2 and 3 kept
    flip_array_bytes(tmp_path / "checkpoints" / "best" / "1")
    ckpt = Checkpoints(tmp_path / "checkpoints")
    note = ckpt.check_best({"params": {"w": jnp.zeros(3000)}})
    ckpt.close()
    assert note.startswith(f"{tmp_path / 'checkpoints' / 'best' / '1'} does not restore (CorruptCheckpoint: ")
    assert "the best state is lost until a better epoch replaces it" in caplog.text
