"""README's "When something goes wrong", row by row: every run that starts ends with exactly one result.json
that tells the truth, a finished record is never overwritten by a failed rerun, and bad input gets one clear
line saying what was wrong and what is accepted, losing nothing already written.

(Rows tested elsewhere: a bad config value, tests/test_config.py and test_run_protocol.py; missing and corrupt
data, tests/test_mnist.py, test_tasks_music.py, test_tasks_speech.py; a non-finite loss and SIGKILL,
tests/test_train.py; a corrupt latest checkpoint and a torn metrics line, a failed rerun of a finished run,
tests/test_run_protocol.py; a sweep over a key folders are not named by, tests/test_cli.py.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, compose_config
from training import train
from training.lock import RunLock, RunLocked


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` (hidden ones included) with its bytes and modification time."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def train_py(*overrides: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python train.py <overrides>` as a user runs it; stdout and stderr together in .stdout."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


# ---------------------------------------------------------------------------------------------------
# A rerun into a folder that holds another config's run


@pytest.mark.slow
def test_a_rerun_with_another_config_is_refused_in_one_line_and_leaves_the_folder_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    first = train_py(*TINY, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stdout
    before = snapshot(run_dir)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "result.json"} <= set(before)

    refused = train_py(*TINY, "hidden=16", f"hydra.run.dir={run_dir}")
    assert refused.returncode == 1
    (line,) = refused.stdout.strip().splitlines()
    assert "refused" in line and "different config (changed: hidden 8 -> 16)" in line and "hydra.run.dir" in line

    after = snapshot(run_dir)
    log_before, log_after = before.pop("train.log")[0].decode(), after.pop("train.log")[0].decode()
    assert after == before  # .hydra/ included: Hydra's config and overrides of the first run
    assert log_after.startswith(log_before) and log_after[len(log_before):].strip() == line  # its one line, kept


@pytest.mark.parametrize("junk", ["null", "[1, 2]", '{"status": "compl'])
def test_a_result_json_that_is_not_a_record_is_replaced_by_the_runs_own(tmp_path, junk, caplog):
    (tmp_path / "result.json").write_text(junk)
    result = train(compose_config(), tmp_path)
    assert result["status"] == "completed"
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"
    assert "is not a run record (a JSON object); it will be replaced by this run's" in caplog.text


# ---------------------------------------------------------------------------------------------------
# Two processes, one run folder

# takes the lock of the folder in argv[1] and holds it; imports only training/lock.py (no JAX)
HOLDER = """import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("lock", sys.argv[2])
lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(lock)
lock.RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_process_is_refused_naming_the_holder_and_a_killed_holders_lock_does_not_block(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), str(ROOT / "training" / "lock.py")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunLocked, match=rf"refused: {tmp_path} is in use by process {holder.pid} on "
                                            rf"{socket.gethostname()}, running since"):
            RunLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / "run.lock").exists()  # what kill -9 leaves
    lock = RunLock(tmp_path).acquire()  # the kernel dropped the dead holder's lock
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / "run.lock").exists()  # a folder at rest holds no lock


def test_a_run_into_a_folder_another_run_holds_is_refused_in_one_line_and_touches_nothing(tmp_path, caplog):
    train(compose_config(), tmp_path)
    before = snapshot(tmp_path)
    held = RunLock(tmp_path).acquire()  # another open file: flock(2) refuses it even within this process
    try:
        with pytest.raises(RunLocked, match=f"is in use by process {os.getpid()}"):
            train(compose_config("epochs=2"), tmp_path)
        assert {k: v for k, v in snapshot(tmp_path).items() if k != "run.lock"} == before
    finally:
        held.release()
    assert snapshot(tmp_path) == before
    assert sum("is in use by process" in m for m in caplog.messages) == 1


# many steps per epoch, so the run is still training when the second process starts
LONG = [*[o for o in TINY if not o.startswith(("task.train_size", "epochs"))], "task.train_size=16000", "epochs=3",
        "cell=srn", "speed.cpu_devices=1"]


@pytest.mark.slow
def test_two_train_py_processes_on_one_folder_the_second_is_refused_at_once_and_a_kill_9_does_not_block(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *LONG, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                             env={**os.environ, "WANDB_MODE": "disabled"}, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while not (run_dir / "result.json").exists():  # written once the run holds the folder
            assert first.poll() is None and time.time() < deadline, first.stdout.read()
            time.sleep(0.05)
        t0 = time.time()
        second = train_py(*LONG, f"hydra.run.dir={run_dir}")
        assert second.returncode == 1
        (line,) = second.stdout.strip().splitlines()
        assert f"refused: {run_dir} is in use by process {first.pid} on {socket.gethostname()}" in line
        assert time.time() - t0 < 60  # at once: no compilation, no training
        assert first.poll() is None  # the holder goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert (run_dir / "run.lock").exists()
    rerun = train_py(*LONG, f"hydra.run.dir={run_dir}")
    assert rerun.returncode == 0, rerun.stdout
    assert json.loads((run_dir / "result.json").read_text())["status"] == "completed"
    assert not (run_dir / "run.lock").exists()
