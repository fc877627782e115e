"""What a run says on its console (issue 27, item 3): a first line naming what trains, progress within an
epoch when no terminal shows a bar, a line before the data loads, throughput in time steps beside sequences,
and the task's chance level in the closing line."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, TINY, compose_config
from tasks import task_from_conf
from tasks.base import majority_class
from tasks.music import MusicTask
from training import train
from training.progress import EpochProgress
from training.run import summary_line


PIPED = ["task.train_size=128", "cell=np", "cell.switches={coupled: true}", "progress_seconds=0.001"]


class Said(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """A tiny NP+CIFG run whose epoch has 8 steps, with a progress line due after every step
    (progress_seconds=0.001), trained in this process, whose stderr is pytest's capture and no terminal, as
    under Slurm or `| tee`; what the odyssey logger said. The whole `python train.py` into a real pipe says
    the same (test_python_train_py_into_a_pipe_says_the_same_lines, slow tier)."""
    run_dir = tmp_path_factory.mktemp("piped")
    said, logger = Said(), logging.getLogger("odyssey")
    level = logger.level
    logger.addHandler(said)
    logger.setLevel(logging.INFO)
    try:
        result = train(compose_config(*PIPED), run_dir)
    finally:
        logger.removeHandler(said)
        logger.setLevel(level)
    return said.lines, run_dir, result


@pytest.mark.slow
def test_python_train_py_into_a_pipe_says_the_same_lines(tmp_path):
    overrides = [*TINY, *PIPED, f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "train.py", *overrides], cwd=ROOT, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split(" - ", 1)[1] for line in (proc.stdout + proc.stderr).splitlines() if "[odyssey]" in line]
    result = json.loads((tmp_path / "result.json").read_text())
    assert lines[0].startswith("training np+coupled=True, 8 units, on adding: ") and lines[0].endswith(f"run folder {tmp_path}")
    assert any(re.fullmatch(r"epoch 1/1: step \d/8 \(\d+%\), .*loss \d+\.\d{4}", line) for line in lines), lines
    assert lines[-2].startswith("epoch 1  ") and "time steps/s" in lines[-2]
    assert f"test mse {result['test']['mse']:.4f} (chance {result['chance']['test']:.4f}" in lines[-1]


def test_the_first_line_of_a_run_names_cell_with_switches_task_parameters_devices_and_folder(piped_run):
    lines, run_dir, result = piped_run
    assert lines[0] == (f"training np+coupled=True, 8 units, on adding: {result['num_params']:,} parameters, "
                        f"{result['device_count']} cpu device{'s' * (result['device_count'] != 1)}; run folder {run_dir}")


def test_a_run_whose_stdout_is_a_pipe_still_prints_progress_within_an_epoch(piped_run):
    lines, _, _ = piped_run
    progress = [line for line in lines if line.startswith("epoch 1/1: step ")]
    assert progress, lines
    assert re.fullmatch(r"epoch 1/1: step \d/8 \(\d+%\), .*loss \d+\.\d{4}", progress[-1])
    epoch_line = next(i for i, line in enumerate(lines) if line.startswith("epoch 1  "))
    assert all(lines.index(p) < epoch_line for p in progress)  # within the epoch, before its line


def test_throughput_is_given_in_time_steps_beside_sequences(piped_run):
    lines, run_dir, _ = piped_run
    epoch = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert epoch["time_steps_per_s"] == pytest.approx(6 * epoch["seq_per_s"])  # every adding sequence is 6 steps
    assert f"{epoch['seq_per_s']:.0f} seq/s, {epoch['time_steps_per_s']:.0f} time steps/s" in lines[-2]


def test_the_closing_line_says_the_tasks_chance_level(piped_run):
    lines, _, result = piped_run
    assert result["chance"]["metric"] == "mse" and "training targets' mean" in result["chance"]["how"]
    assert f"test mse {result['test']['mse']:.4f} (chance {result['chance']['test']:.4f}: always the training" in lines[-1]
    assert "after 1 epoch;" in lines[-1]  # not "1 epochs"


def test_a_line_before_the_data_loads_says_what_takes_the_time_and_one_after_says_what_came(tmp_path, caplog):
    from test_mnist import write_mnist

    write_mnist(tmp_path / "data")
    cfg = compose_config("task=mnist", f"data_dir={tmp_path / 'data'}", "task.valid_size=10", "hidden=4",
                         "epochs=1", "batch_size=10", "eval_batch_size=20", "max_steps_per_epoch=1", "wandb.mode=disabled",
                         "tensorboard=false", tiny=False)
    caplog.set_level(logging.INFO, logger="odyssey")
    result = train(cfg, tmp_path / "run")
    said = [r.getMessage() for r in caplog.records if r.name == "odyssey"]
    assert said[0].startswith("training v, 4 units, on mnist: ")
    assert said[1] == f"mnist: reading the images (data_dir={tmp_path / 'data'}) ..."
    assert re.fullmatch(r"mnist: \d+ train, 10 valid, \d+ test sequences of 28 steps; ready in \d+s", said[2])  # how long a sequence is
    assert result["chance"] == majority_class(task_from_conf("mnist", valid_size=10).load(str(tmp_path / "data"), 0))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_shows_progress_and_no_lines_repeat_it(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="odyssey")
    monkeypatch.setattr(sys, "stderr", Terminal())
    progress = EpochProgress(3, "epoch 1/1", 1e-9)
    for _ in range(3):
        progress.update(loss=lambda: 0.5)
    progress.close()
    assert "epoch 1/1" in sys.stderr.getvalue() and not caplog.records


def test_progress_seconds_null_means_no_progress_lines(caplog):
    caplog.set_level(logging.INFO, logger="odyssey")
    progress = EpochProgress(3, "epoch 1/1", None)  # stderr is pytest's capture: no terminal
    for _ in range(3):
        progress.update()
    progress.close()
    assert not caplog.records


def test_the_adding_tasks_chance_is_the_variance_of_the_sum_one_sixth():
    splits = task_from_conf("adding", train_size=20000, valid_size=2, test_size=20000, length=10).load(None, 0)
    assert task_from_conf("adding").chance(splits)["test"] == pytest.approx(1 / 6, abs=0.005)


def test_the_chance_of_balanced_classes_is_one_in_the_number_of_classes():
    y = np.repeat(np.arange(10), 30).astype(np.int32)
    assert majority_class({"train": {"y": y}, "test": {"y": y}})["test"] == pytest.approx(0.1)


def test_the_music_tasks_chance_is_the_nll_of_each_key_at_its_training_frequency():
    rng = np.random.default_rng(0)
    y = (rng.random((3, 5, 88)) < 0.1).astype(np.uint8)
    lengths = np.array([5, 3, 1], np.int32)
    split = {"x": y, "y": y, "lengths": lengths}
    steps = np.concatenate([y[i, :n] for i, n in enumerate(lengths)]).astype(float)  # the 9 real steps
    p = np.clip(steps.mean(0), 1e-6, 1 - 1e-6)
    expected = -(steps * np.log(p) + (1 - steps) * np.log(1 - p)).sum(1).mean()
    task = MusicTask("jsb", "jsb", 1, "per_step")
    assert task.chance({"train": split, "test": split})["test"] == pytest.approx(expected)


def test_a_record_of_one_epoch_says_epoch_and_one_without_chance_says_nothing_of_it(tmp_path):
    result = {"status": "completed", "epochs_completed": 1, "best_epoch": 1, "objective": {"name": "ctc"},
              "valid": {"ctc": 1.0}, "test": {"ctc": 2.0}, "wall_seconds": 3.0}
    line = summary_line(result, tmp_path / "result.json")
    assert line.startswith("completed after 1 epoch; best epoch 1: valid ctc 1.0000, test ctc 2.0000; 3s")
