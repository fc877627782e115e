"""README's "When something goes wrong", row by row: every run that starts ends with exactly one result.json
that tells the truth, a finished record is never overwritten by a failed rerun, and bad input gets one clear
line saying what was wrong and what is accepted, losing nothing already written.

The README's table names the test of each row (this file's, and older ones elsewhere); the last test here
checks that each one it names exists.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, compose_config, without_compile_cache
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
# A refused config


def test_a_refused_config_is_said_in_one_line_with_one_full_stop(tmp_path, caplog):
    with pytest.raises(ValueError):
        train(compose_config("grad_clip=-1", "input_noise=-1"), tmp_path / "run")
    (line,) = [m for m in caplog.messages if "nothing was trained" in m]
    assert line.startswith("Bad config: ")
    assert "got -1.0; nothing was trained (record: " in line and ".;" not in line  # was "got -1.0.; nothing ..."
    assert json.loads((tmp_path / "run" / "result.json").read_text())["status"] == "failed"


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
                             env=without_compile_cache({**os.environ, "WANDB_MODE": "disabled"}), text=True,  # a kill -9
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # mid-write would cut a cached program short
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


# ---------------------------------------------------------------------------------------------------
# SIGTERM and SIGINT


def signal_in_epoch(monkeypatch, engine_class, epoch: int, signum: int) -> None:
    """The signal arrives as `epoch` starts training, as it would from outside: the step loop sees it next."""
    original = engine_class.train_epoch

    def train_epoch(self, e):
        if e == epoch:
            os.kill(os.getpid(), signum)
        return original(self, e)

    monkeypatch.setattr(engine_class, "train_epoch", train_epoch)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_stops_it_as_interrupted_and_the_rerun_ends_as_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                                               signum, caplog):
    from training.interrupt import Interrupted
    from training.loop import LoneSteps

    cfg = compose_config("epochs=3", "input_noise=0.5")
    handlers = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)]
    reference = train(cfg, tmp_path / "uninterrupted")
    with monkeypatch.context() as m:
        signal_in_epoch(m, LoneSteps, 2, signum)
        with pytest.raises(Interrupted) as stop:
            train(cfg, tmp_path / "run")
    assert stop.value.exit_code == 128 + signum
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert (record["status"], record["epochs_completed"], record["signal"]) == ("interrupted", 1, signal.Signals(signum).name)
    assert [json.loads(l)["epoch"] for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [1]
    (line,) = [m for m in caplog.messages if "interrupted by" in m]
    assert f"interrupted by {signal.Signals(signum).name} in epoch 2; rerun the same command to resume from epoch 1's" in line
    assert not (tmp_path / "run" / "run.lock").exists()
    assert [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)] == handlers  # put back

    resumed = train(cfg, tmp_path / "run")
    assert resumed["status"] == "completed" and resumed["epochs_completed"] == 3
    for key in ("valid", "test", "best_epoch"):
        assert resumed[key] == reference[key]
    assert resumed["final"] == reference["final"]


def signal_as_every_part_starts_epoch(monkeypatch, epoch: int, signum: int, parts: int) -> None:
    """The signal arrives once every part of a population has reached `epoch`, and each part trains it only once the
    signal is handled. A population on several CPU devices trains one part per device, each in its own thread
    (training.population._fit_on_devices) and not in lockstep with the others: a signal sent as one part starts an
    epoch finds another wherever it is, compiling or mid-epoch (with 2 devices: epochs_completed [2, 0] in 3 of 3
    runs here under load), and each records, truthfully, the epochs it completed."""
    from training import interrupt
    from training.population import PopulationSteps

    barrier = threading.Barrier(parts, action=lambda: os.kill(os.getpid(), signum))  # the last part to arrive sends it
    original = PopulationSteps.train_epoch

    def train_epoch(self, e):
        if e == epoch:
            barrier.wait(timeout=300)
            deadline = time.time() + 60
            while True:  # the handler runs in the main thread: wait until it has recorded the signal
                try:
                    interrupt.check()
                except interrupt.Interrupted:
                    break
                assert time.time() < deadline, "the signal was not handled"
                time.sleep(0.01)
        return original(self, e)

    monkeypatch.setattr(PopulationSteps, "train_epoch", train_epoch)


@pytest.mark.slow
def test_a_signalled_population_records_every_trial_as_interrupted_and_each_resumes(tmp_path, monkeypatch):
    import jax

    from training.interrupt import Interrupted
    from training.population import train_population

    cfgs = [compose_config("epochs=3", f"lr={lr}", f"hidden={h}") for lr, h in ((0.01, 8), (0.03, 13))]
    dirs = [tmp_path / "p0", tmp_path / "p1"]
    reference = train_population(cfgs, [tmp_path / "r0", tmp_path / "r1"])
    devices = jax.devices()  # one part per CPU device (at most one per trial), as _fit_on_devices splits them
    parts = min(len(devices), len(cfgs)) if devices[0].platform == "cpu" else 1
    with monkeypatch.context() as m:
        signal_as_every_part_starts_epoch(m, 3, signal.SIGTERM, parts)
        with pytest.raises(Interrupted):
            train_population(cfgs, dirs)
    assert [json.loads((d / "result.json").read_text())["status"] for d in dirs] == ["interrupted"] * 2
    assert [json.loads((d / "result.json").read_text())["epochs_completed"] for d in dirs] == [2, 2]
    assert [len((d / "metrics.jsonl").read_text().splitlines()) for d in dirs] == [2, 2]
    resumed = train_population(cfgs, dirs)
    assert [r["status"] for r in resumed] == ["completed"] * 2
    assert [r["test"] for r in resumed] == [r["test"] for r in reference]
    assert [r["final"] for r in resumed] == [r["final"] for r in reference]


@pytest.mark.slow
def test_sigterm_mid_epoch_exits_143_as_interrupted_and_the_rerun_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    from test_train import RESUMABLE
    from training.devices import SINGLE_THREADED_EIGEN

    reference = train(compose_config(*RESUMABLE, tiny=False), tmp_path / "uninterrupted")  # this process: pinned
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # train.py below pins XLA:CPU's kernels itself, as for a user
    run_dir = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), *RESUMABLE, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(command, cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "1").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # epoch 2 has just begun: ~1000 steps to go
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out
    assert "interrupted by SIGTERM in epoch 2; rerun the same command to resume from epoch 1's checkpoint" in out.splitlines()[-1]
    record = json.loads((run_dir / "result.json").read_text())
    assert (record["status"], record["epochs_completed"]) == ("interrupted", 1)

    resumed = train_py(*RESUMABLE, f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["best_epoch"] == reference["best_epoch"]
    assert result["provenance"]["xla_flags"] == SINGLE_THREADED_EIGEN
    for key in ("valid", "test"):
        assert result[key] == reference[key]  # bit for bit: the same kernels in and out of process
    for key in ("train", "valid", "test"):
        assert result["final"][key] == reference["final"][key]


# ---------------------------------------------------------------------------------------------------
# Preemption under submitit: the job is requeued and resumes
#
# Slurm preempts (or nears a time limit) by sending submitit's signal, USR2, to the job's process
# (`scancel --signal=USR2`, submitit's SlurmJob._interrupt). submitit's local executor runs the same job
# code in a process of its own, so the tests send USR2 to that process (the PID in a trial's run.lock):
# LocalJob._interrupt cannot be used, as it signals the local controller, which has no USR2 handler and
# dies (measured: exit -12, the job's process left running unsignalled, nothing requeued).


REQUEUED = "submitit requeues its job (unless it timed out too often: then rerun the command)"  # its line says


def preempt_once_every_trial_saved_epoch_1(proc, sweep_dir: Path, trials: int) -> None:
    """USR2 to the job's process (named by its trials' run.lock) once each of its `trials` saved epoch 1."""
    deadline = time.time() + 400
    while len(list(sweep_dir.glob("*/checkpoints/1"))) < trials:
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.02)
    (pid,) = {json.loads(p.read_text())["pid"] for p in sweep_dir.glob("*/run.lock")}  # all in one job's process
    os.kill(pid, signal.SIGUSR2)  # epoch 2 has just begun: ~1000 steps to go


def job_logs(sweep_dir: Path, stream: str = "*") -> str:
    """The submitit jobs' logs: `stream` out, err, or * for both."""
    return "".join(p.read_text() for p in sorted((sweep_dir / ".submitit").rglob(f"*_log.{stream}")))


def requeues_in(sweep_dir: Path) -> None:
    """The jobs' logs hold one preemption and one requeue."""
    logs = job_logs(sweep_dir)
    assert "Caught signal SIGUSR2" in logs and "this job is preempted" in logs, logs
    assert len(re.findall(r"^submitit INFO \(.*\) - Requeued job", logs, re.M)) == 1, logs  # submitit's own format


def same_numbers(result: dict, reference: dict) -> None:
    """Bit for bit: the same kernels in and out of process (training/devices.pin_matmul_kernels)."""
    assert result["status"] == "completed" and result["epochs_completed"] == reference["epochs_completed"]
    assert result["best_epoch"] == reference["best_epoch"]
    for key in ("valid", "test"):
        assert result[key] == reference[key]
    for key in ("train", "valid", "test"):
        assert result["final"][key] == reference["final"][key]


def resumed_once_from_epoch_1(run_dir: Path, log_text: str) -> None:
    """The run's lines (its train.log, or for a population's trials the job's stderr) and records: stopped once by
    USR2 in epoch 2 and requeued, resumed once from epoch 1 by a new process, each epoch's line once."""
    stopped = f"interrupted by SIGUSR2 in epoch 2; {REQUEUED} to resume from epoch 1's checkpoint (record: "
    assert log_text.count(f"{stopped}{run_dir / 'result.json'})") == 1, log_text
    assert log_text.count(f"resuming {run_dir} from epoch 1") == 1, log_text
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3]
    assert ["compile_seconds" in l for l in lines] == [True, True, False]  # a process's first epoch: 2 was a new one's
    assert not (run_dir / "run.lock").exists()


def test_the_preemption_signal_stops_the_run_first_then_goes_to_the_schedulers_handler(tmp_path, monkeypatch, caplog):
    """In-process, with a stand-in for submitit's USR2 handler (checkpoint and requeue): it is not called mid-step,
    only by hand_over once the record says interrupted; the population launcher's job callable is checkpointable."""
    from hydra_plugins.odyssey_population import PopulationJob
    from training.interrupt import Interrupted, hand_over
    from training.loop import LoneSteps

    called = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: called.append(signum))
    try:
        signal_in_epoch(monkeypatch, LoneSteps, 2, signal.SIGUSR2)
        with pytest.raises(Interrupted) as stop:
            train(compose_config("epochs=3"), tmp_path / "run")
        assert called == []  # the run stopped at a step boundary and recorded itself before anyone requeues it
        record = json.loads((tmp_path / "run" / "result.json").read_text())
        assert (record["status"], record["epochs_completed"], record["signal"]) == ("interrupted", 1, "SIGUSR2")
        (line,) = [m for m in caplog.messages if "interrupted by" in m]
        assert f"interrupted by SIGUSR2 in epoch 2; {REQUEUED} to resume from epoch 1's checkpoint" in line
        hand_over(stop.value)
        assert called == [signal.SIGUSR2]
        hand_over(Interrupted(signal.SIGTERM))  # SIGTERM and SIGINT end the process: nothing is handed over
        assert called == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
    job = PopulationJob()
    again = job.checkpoint(["cfgs"], ["dirs"], ["files"])  # what submitit pickles and runs on requeue
    assert (again.function, again.args, again.kwargs) == (job, (["cfgs"], ["dirs"], ["files"]), {})


@pytest.mark.slow
def test_a_preempted_population_job_is_requeued_by_submitit_and_its_trials_resume_to_the_same_numbers(tmp_path):
    from test_train import RESUMABLE

    trials = [*RESUMABLE, "lr=0.01,0.03", "launch=population"]  # one population of two trials
    reference = train_py("-m", *trials, f"hydra.sweep.dir={tmp_path / 'reference'}", timeout=600)  # backend=here
    assert reference.returncode == 0, reference.stdout
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", *trials, "hydra.launcher.backend=local",
                             f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"},
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    preempt_once_every_trial_saved_epoch_1(proc, sweep_dir, 2)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    requeues_in(sweep_dir)  # PopulationJob.checkpoint() was called, and submitit requeued the job
    names = sorted(p.parent.name for p in (tmp_path / "reference").glob("*/result.json"))
    assert names == sorted(p.parent.name for p in sweep_dir.glob("*/result.json")) and len(names) == 2
    for name in names:
        resumed_once_from_epoch_1(sweep_dir / name, job_logs(sweep_dir, "err"))  # the job's Odyssey lines
        same_numbers(json.loads((sweep_dir / name / "result.json").read_text()),
                     json.loads((tmp_path / "reference" / name / "result.json").read_text()))


@pytest.mark.slow
def test_a_preempted_trial_of_the_submitit_launcher_is_requeued_and_resumes_to_the_same_numbers(tmp_path):
    from test_train import RESUMABLE

    reference = train(compose_config(*RESUMABLE, tiny=False), tmp_path / "uninterrupted")
    sweep_dir = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-m", *RESUMABLE, "launch=submitit_local",
                             f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"},
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    preempt_once_every_trial_saved_epoch_1(proc, sweep_dir, 1)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    requeues_in(sweep_dir)  # hydra-submitit-launcher's checkpoint() was called, and submitit requeued the job
    (run_dir,) = [p.parent for p in sweep_dir.glob("*/result.json")]
    resumed_once_from_epoch_1(run_dir, (run_dir / "train.log").read_text())
    same_numbers(json.loads((run_dir / "result.json").read_text()), reference)  # bit for bit


# ---------------------------------------------------------------------------------------------------
# A full disk, an unwritable folder


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_after_a_full_disk_asyncio_is_quiet_about_the_failed_writes_only():
    """Orbax's abandoned writes fail again on the full disk; asyncio's "Future exception was never retrieved"
    for them is dropped, every other asyncio record (an error of another kind) still shows."""
    import logging

    from training.run import DiskFullFutures

    def record(error):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Future exception was never retrieved",
                                 None, (type(error), error, None))

    quiet = DiskFullFutures()
    assert not quiet.filter(record(enospc("/ckpt/state")))
    assert not quiet.filter(record(RuntimeError("tensorstore: No space left on device")))
    assert quiet.filter(record(ValueError("something else")))
    assert quiet.filter(logging.LogRecord("asyncio", logging.WARNING, __file__, 1, "slow callback", None, None))


def full_disk_at(monkeypatch, where: str, after: int, stays_full: bool) -> None:
    """The disk fills up at the `after`+1-th write of `where` (metrics: an epoch line, half written; result: a
    result.json, its temporary file left empty; checkpoint: an Orbax save, a half-written folder left);
    with `stays_full`, every later write of result.json fails too."""
    import training.records as records
    from training.checkpoint import Checkpoints

    count = {"n": 0, "full": False}

    def full_now() -> bool:  # for this write: true once (and from then on, if it stays full)
        count["n"] += 1
        now = count["n"] == after + 1 or (stays_full and count["full"])
        count["full"] = count["full"] or now
        return now

    if where == "metrics":
        def opener(path, mode="r", *args, **kwargs):
            f = open(path, mode, *args, **kwargs)
            if "a" in mode and full_now():
                write = f.write
                f.write = lambda text: (write(text[: len(text) // 2]), f.flush(), (_ for _ in ()).throw(enospc(path)))
            return f
        monkeypatch.setattr(records, "open", opener, raising=False)
    original_write_text = Path.write_text

    def write_text(self, text, *args, **kwargs):
        is_result = self.name == "result.json.tmp"
        if is_result and ((where == "result" and full_now()) or (stays_full and count["full"])):
            original_write_text(self, "")
            raise enospc(self)
        return original_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    if where == "checkpoint":
        save = Checkpoints.save

        def failing_save(self, epoch, *args, **kwargs):
            if full_now():
                (self.directory / f"{epoch}.orbax-checkpoint-tmp-1234").mkdir()  # what Orbax leaves
                raise enospc(self.directory / str(epoch))
            return save(self, epoch, *args, **kwargs)
        monkeypatch.setattr(Checkpoints, "save", failing_save)


def partial_files(run_dir: Path) -> list[str]:
    return [str(p) for p in run_dir.rglob("*") if p.name.endswith(".tmp") or ".orbax-checkpoint-tmp" in p.name]


@pytest.mark.parametrize("where, after", [("metrics", 1), ("result", 1), ("checkpoint", 1)])
def test_a_full_disk_stops_the_run_in_one_line_leaves_no_partial_file_and_the_rerun_resumes_exactly(
        tmp_path, monkeypatch, caplog, where, after):
    cfg = compose_config("epochs=3", "input_noise=0.5")
    reference = train(cfg, tmp_path / "reference")
    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        full_disk_at(m, where, after, stays_full=False)
        with pytest.raises(OSError, match="No space left on device"):
            train(cfg, run_dir)
    (line,) = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith("the disk is full (OSError: [Errno 28] No space left on device")
    assert line.endswith(f"free space and rerun the same command to resume; recorded as failed in {run_dir / 'result.json'}")
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "failed" and "the disk is full" in record["error"]
    assert partial_files(run_dir) == []
    for text in (run_dir / "metrics.jsonl").read_text().splitlines():
        json.loads(text)  # no torn line

    resumed = train(cfg, run_dir)  # space freed
    assert resumed["status"] == "completed"
    assert (resumed["valid"], resumed["test"], resumed["final"]) == (reference["valid"], reference["test"], reference["final"])
    assert [json.loads(t)["epoch"] for t in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_when_the_disk_stays_full_the_line_says_result_json_could_not_be_written_and_it_stays_valid(
        tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as m:
        full_disk_at(m, "metrics", 1, stays_full=True)
        with pytest.raises(OSError):
            train(compose_config("epochs=3"), tmp_path)
    (line,) = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert f"{tmp_path / 'result.json'} could not be written either (No space left on device), so it still says running" in line
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "running"  # the truth as far as it got
    assert partial_files(tmp_path) == []
    assert train(compose_config("epochs=3"), tmp_path)["status"] == "completed"


def test_a_folder_that_cannot_be_made_is_refused_in_one_line(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError):
        train(compose_config(), tmp_path / "file" / "run")
    (line,) = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith(f"cannot write into {tmp_path / 'file' / 'run'} (NotADirectoryError: Not a directory); "
                           "choose a writable folder")


@pytest.fixture
def small_disk(tmp_path):
    """A 450 KB tmpfs (needs root: mount(8)); grown to 8 MB by calling what it yields."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=450k", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield folder, lambda: subprocess.run(["mount", "-o", "remount,size=8m", str(folder)], check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.slow
def test_a_real_full_disk_ends_train_py_in_one_line_and_the_rerun_after_freeing_space_resumes_exactly(tmp_path, small_disk):
    disk, grow = small_disk
    big = [*[o for o in TINY if not o.startswith(("hidden", "epochs"))], "hidden=32", "epochs=12",
           "speed.cpu_devices=1"]  # as the in-process reference: the same device count, the same float sums
    reference = train(compose_config(*big, tiny=False), tmp_path / "reference")
    run_dir = disk / "run"
    full = train_py(*big, f"hydra.run.dir={run_dir}")
    assert full.returncode == 1, "the run fitted on the small disk; make it smaller:\n" + full.stdout
    errors = [line for line in full.stdout.splitlines() if "ERROR" in line or "Traceback" in line]
    assert len(errors) == 1 and "the disk is full" in errors[0] and "rerun the same command to resume" in errors[0], full.stdout
    assert json.loads((run_dir / "result.json").read_text())["status"] in ("failed", "running")  # running: no room for even that
    assert partial_files(run_dir) == []

    grow()
    resumed = train_py(*big, f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stdout
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed"
    for key in ("valid", "test"):
        assert result[key] == reference[key]  # bit for bit


# ---------------------------------------------------------------------------------------------------
# Out of memory


OOM = ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes.\nBufferAssignment OOM Debugging.\n"
       + "\n".join(f"  allocation {i}: size 67108864, parameter 0" for i in range(200)))


def test_out_of_memory_is_one_line_saying_what_to_lower_and_the_record_keeps_the_details(tmp_path, monkeypatch, caplog):
    import jax
    from training.loop import LoneSteps

    def out_of_memory(self, epoch):
        raise jax.errors.JaxRuntimeError(OOM)

    monkeypatch.setattr(LoneSteps, "train_epoch", out_of_memory)
    with pytest.raises(jax.errors.JaxRuntimeError) as e:
        train(compose_config(), tmp_path)
    (line,) = [r.message for r in caplog.records if r.levelname == "ERROR"]
    assert "\n" not in line
    assert line.startswith("out of memory (JaxRuntimeError: RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                           "17179869184 bytes); lower batch_size, eval_batch_size or hidden; recorded as failed in")
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["error"] == line.split("; recorded as failed")[0] and "allocation 199" in record["traceback"]
    assert e.value.odyssey_logged  # train.py exits 1 on it without a traceback (verbose=true prints one)


@pytest.mark.slow
def test_train_py_prints_a_failure_in_one_line_without_a_traceback(tmp_path):
    """task.length=1 composes but the task refuses it when it builds: a failure after the run has started."""
    proc = train_py(*TINY, "task.length=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    (line,) = proc.stdout.strip().splitlines()
    assert "task.length must be at least 2" in line and "recorded as failed in" in line and "Traceback" not in proc.stdout


# ---------------------------------------------------------------------------------------------------
# The README's table is this file's table of contents


def test_every_row_of_the_readmes_table_names_tests_that_exist():
    text = (ROOT / "README.md").read_text()
    table = text.split("**When something goes wrong**")[1].split("\n\n")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| what ")]
    assert len(rows) >= 21
    for row in rows:
        named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", row.rsplit(" | ", 1)[1])
        assert named, f"no test named for: {row[:80]}"
        for file, name in named:
            assert re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M), f"{file}::{name} does not exist"
