"""One run's life, the same for a lone run and for every trial of a population.

    begin_run   check the config and the run directory (a finished run of this config is returned as is)
    run_epochs  the epoch loop: train, evaluate, then per run the epoch line, the best epoch, early
                stopping, the checkpoint, the records and wandb
    finish      result.json's final fields, wandb's summary and one closing log line

Both callers hand `run_epochs` an engine that trains and evaluates their runs' parameters: a lone
run's batches, split over devices (training/loop.py), or a population's trials, stacked along a
leading axis (training/population.py). Everything a record holds is written here, once.
"""

from __future__ import annotations

import errno
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import jax
from omegaconf import OmegaConf

from tasks import make_task, num_batches
from training import interrupt
from training.checkpoint import Checkpoints
from training.config import check_config
from training.interrupt import Interrupted
from training.introduce import chance_words
from training.logs import plural
from training.lock import RunLock, RunLocked
from training.provenance import provenance
from training.records import FINISHED, RunRecord
from training.tracking import Tracker

log = logging.getLogger("odyssey")

# keys that may change when a run is resumed into the same directory; any other change is refused. One list with
# the overrides trial folders are not named by (conf/config.yaml: hydra.job.config.override_dirname.exclude_keys),
# less `launch`, which picks a launcher and is no key of a run
_FOLDER_BLIND = OmegaConf.load(Path(__file__).resolve().parent.parent / "conf" / "config.yaml").hydra.job.config.override_dirname.exclude_keys
RESUMABLE_CHANGES = tuple(dict.fromkeys(key.split(".")[0] for key in _FOLDER_BLIND if key != "launch"))
# speed paths that give the same numbers (tests/test_speed_settings.py, tests/test_devices.py): a run may
# resume, or count as done, under another of them, and a record written before one of them existed is
# still the same run; speed.dtype changes the numbers and is not here
SAME_NUMBERS = ("speed.unroll", "speed.hoist_projection", "speed.fused_gradient", "speed.kernel", "speed.parallel_scan",
                "speed.cpu_devices", "speed.keep_freed_memory")


def run_identity(config: dict) -> dict:
    """What makes two resolved configs the same run, as {dotted key: value}: every key except the
    resumable ones, the same-numbers speed paths and cell keys the cell does not read (a record from before
    conf/cell/gru.yaml dropped forget_bias is still the same GRU run)."""
    unread = unread_cell_keys(config.get("cell") or {})
    return {k: v for k, v in _flatten(config).items()
            if k.split(".")[0] not in RESUMABLE_CHANGES and k not in SAME_NUMBERS and ".".join(k.split(".")[:2]) not in unread}


def unread_cell_keys(cell: dict) -> set[str]:
    from variants import entry

    try:
        reads = entry(cell.get("name"), cell.get("_target_")).keys
    except ValueError:  # a cell no longer registered: all its keys count
        return set()
    return {f"cell.{k}" for k in cell if k not in ("name", "_target_", *reads)}


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def new_meta() -> dict:
    """What a checkpoint stores beside the state: where the run is and its best epoch so far."""
    return {"epoch": 0, "step": 0, "best": None, "wall_seconds": 0.0}


@dataclass
class Run:
    cfg: object
    record: RunRecord
    result: dict
    tracker: Tracker | None = None
    ckpt: Checkpoints | None = None
    meta: dict = field(default_factory=new_meta)
    finished_before: dict | None = None  # the completed/diverged record a rerun (e.g. with more epochs) started from
    lock: RunLock | None = None  # the run folder's, held from begin_run until the run ends

    def release(self) -> None:
        """Let go of the run folder (its lock); once the run's record is final."""
        if self.lock is not None:
            self.lock.release()

    @property
    def running(self) -> bool:
        return self.result["status"] == "running"

    @property
    def name(self) -> str:
        return self.record.dir.name


class Engine(Protocol):
    """What run_epochs needs from a lone run's or a population's steps (lists: one entry per run)."""

    step: int  # optimizer steps taken so far (the random stream's position)
    compile_seconds: float | None  # the first step's seconds (compilation included), once measured
    time_steps: int  # real time steps (frames) trained in the last epoch, all runs together

    def train_epoch(self, epoch: int) -> list[dict]: ...  # train metrics per run
    def evaluate(self, split: str) -> list[dict]: ...
    def state(self, k: int): ...  # run k's {"params", "opt_state"}, for its checkpoint
    def stop(self, k: int) -> None: ...  # run k has ended: leave its parameters as they are


class Refused(ValueError):
    """A rerun this run directory cannot take (another config's checkpoints are there); nothing was touched."""


def begin_run(cfg, run_dir: Path, job_configs: dict[str, str] | None = None, **extra) -> tuple[Run, bool]:
    """Take the run directory (its lock), check the config and what the directory holds: (run, done).

    done: the directory already holds a completed or diverged run of this exact config, and the run's
    result is that record (a rerun, e.g. of a whole sweep, retrains nothing). Otherwise the result is
    a new record, status "running", carrying the previous wandb run id so a resumed run continues it.
    job_configs: the job's `.hydra/` files (training.records.job_configs), written once this run takes the
    folder, so a refused rerun (another config's checkpoints are there) leaves every file as it was.
    The run holds the folder's lock (training/lock.py) until it ends (finish, mark_failed, release).
    """
    try:
        record = RunRecord(run_dir)
        lock = RunLock(run_dir).acquire()
    except RunLocked as e:
        log.error("%s", e)
        raise logged(e)
    except OSError as e:  # a folder that cannot be made or written (permissions, a full disk)
        log.error("cannot write into %s (%s: %s); choose a writable folder (hydra.run.dir=...)", run_dir,
                  type(e).__name__, e.strerror or e)
        raise logged(e)
    try:
        run, done = _begin(cfg, record, job_configs, extra)
    except BaseException:
        lock.release()
        raise
    if done:
        lock.release()
    else:
        run.lock = lock
    return run, done


def _begin(cfg, record: RunRecord, job_configs, extra: dict) -> tuple[Run, bool]:
    run_dir = record.dir
    previous = record.previous() or {}
    try:
        check_config(cfg)
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:  # a trial that never starts still leaves its one record (unless a finished one is here)
        if previous.get("status") not in FINISHED:
            record.write_result({"status": "failed", "error": f"{type(e).__name__}: {e}", "run_dir": str(run_dir),
                                 "config": OmegaConf.to_container(cfg, resolve=False)})
            record.write_job_configs(job_configs)
        log.error("%s; nothing was trained (record: %s)", str(e).rstrip("."), record.result_path)  # one full stop
        raise logged(e)
    if (previous.get("status") in FINISHED and "config" in previous and previous["config"].get("epochs") == resolved["epochs"]
            and run_identity(previous["config"]) == run_identity(resolved)):
        log.info("%s already holds a %s run of this config; nothing to do", run_dir, previous["status"])
        return Run(cfg, record, previous), True
    try:
        refuse_other_run(previous, resolved, run_dir)
    except Refused as e:
        log.error("%s", e)
        raise logged(e)
    result = {"status": "running", "cell": cfg.cell.name, "task": cfg.task.name, "run_dir": str(run_dir),
              **device_info(cfg.platform), "config": resolved, **extra, "wandb_id": previous.get("wandb_id"),
              "provenance": provenance()}
    record.write_job_configs(job_configs)
    return Run(cfg, record, result, finished_before=previous if previous.get("status") in FINISHED else None), False


def objective_of(cfg) -> dict:
    """The metric the run's task selects by and its direction ({"name", "mode"}) for its record and dashboards,
    read from the task make_task builds (no data is loaded), as the training loop reads its task's."""
    return dict(zip(("name", "mode"), make_task(cfg.task, cfg.download).objective))


def start_tracking(run: Run) -> None:
    """Open the run's wandb run (resuming its previous one) and its checkpoints; write the running record. A task
    config its task refuses fails here, once the run has started (recorded as failed, as a failure in training)."""
    run.result["objective"] = objective_of(run.cfg)
    run.tracker = Tracker(run.cfg, run.record.dir, run.result["config"], run.result["objective"]["name"],
                          run_id=run.result["wandb_id"])
    run.result["wandb_id"] = run.tracker.id
    run.record.write_result(run.result)
    run.ckpt = Checkpoints(run.record.dir / "checkpoints")


def restore_latest(run: Run, state, epoch: int | None | str = "latest"):
    """The state to start from: the checkpoint of `epoch` (default: the newest that restores), or `state`
    when there is none (or epoch is None). Epoch lines logged after it are dropped: they will be redone."""
    if epoch == "latest":
        found = run.ckpt.restore_newest_good(state)
        if found is not None:
            _, state, run.meta = found
    elif epoch is not None:
        state, run.meta = run.ckpt.restore(epoch, state)
    lost = run.ckpt.check_best(state) if run.meta["epoch"] else None
    if lost:  # result.json's test figure no longer has its state on disk; a better epoch's save clears this
        run.result["best_checkpoint_lost"] = lost
    if run.meta["epoch"]:
        log.info("resuming %s from epoch %d", run.record.dir, run.meta["epoch"])
    run.record.keep_epochs_through(run.meta["epoch"])
    return state


def check_input_size(task, splits) -> None:
    """The data has the features per step the task said before it loaded (the first line's parameter count)."""
    found = splits["train"]["x"].shape[-1]
    if found != task.input_size:
        raise ValueError(f"task {task.name}: its data has {found} features per time step, but the task declares "
                         f"input_size {task.input_size}; the two must agree (tasks/{task.name}.py).")


def steps_per_epoch(cfg, train_split) -> int:
    steps = num_batches(train_split, cfg.batch_size, drop_last=True)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    if steps == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set "
                         f"({len(train_split['lengths'])} examples); choose at most that many.")
    return steps


def run_epochs(runs: list[Run], engine: Engine, objective: tuple[str, str], sequences_per_epoch: int,
               population: str | None = None) -> None:
    """Train every run to its last epoch (all start from the same epoch: a population moves in lockstep).
    `population` names a population in its one line per epoch."""
    cfg = runs[0].cfg
    started = time.time() - runs[0].meta["wall_seconds"]
    for epoch in range(runs[0].meta["epoch"] + 1, cfg.epochs + 1):
        live = [k for k, r in enumerate(runs) if r.running]
        if not live:
            break
        interrupt.check()
        t0 = time.time()
        train = engine.train_epoch(epoch)
        seconds = {"train_seconds": time.time() - t0}
        for k in [k for k in live if not math.isfinite(train[k]["loss"])]:
            log.warning("%s, epoch %d: training loss is %s; the run ends as diverged", runs[k].name, epoch, train[k]["loss"])
            runs[k].record.log_epoch({"epoch": epoch, "train": train[k], "diverged": True})
            engine.stop(k)
            finish(runs[k], "diverged", started)
        live = [k for k in live if runs[k].running]
        valid, test = engine.evaluate("valid"), engine.evaluate("test")
        seconds.update(epoch_seconds=time.time() - t0, seq_per_s=sequences_per_epoch / seconds["train_seconds"])
        compile_seconds, engine.compile_seconds = engine.compile_seconds, 0.0  # counted once, in the first epoch
        if compile_seconds:  # throughput of the steps after the first, which compiled the program
            steps = sequences_per_epoch / len(runs) / runs[0].cfg.batch_size
            seconds.update(compile_seconds=compile_seconds, seq_per_s=sequences_per_epoch * max(steps - 1, 1) / steps
                           / max(seconds["train_seconds"] - compile_seconds, 1e-9))
        # time steps per second read across tasks (a JSB chorale is ~60 steps, a row-MNIST image 28)
        seconds["time_steps_per_s"] = seconds["seq_per_s"] * getattr(engine, "time_steps", 0) / sequences_per_epoch
        if population:  # every trial's line says what the whole program did
            seconds = {**seconds, "seq_per_s": seconds["seq_per_s"] / len(runs), "population_seq_per_s": seconds["seq_per_s"],
                       "time_steps_per_s": seconds["time_steps_per_s"] / len(runs),
                       "population_time_steps_per_s": seconds["time_steps_per_s"]}
        for k in live:
            end_epoch(runs[k], epoch, engine.step, train[k], valid[k], test[k], seconds, objective, engine.state(k), started)
            if stopped_early(runs[k], epoch):
                engine.stop(k)
                finish(runs[k], "completed", started, stopped_early=True)
        if population:
            log.info("%s, epoch %d: %s running, %.1fs, %s in all", population, epoch,
                     plural(sum(r.running for r in runs), "trial"), seconds["epoch_seconds"],
                     throughput(seconds["population_seq_per_s"], seconds["population_time_steps_per_s"]))
    for r in runs:
        if r.running:
            finish(r, "completed", started)


def end_epoch(run: Run, epoch, step, train_m, valid_m, test_m, seconds, objective, state, started) -> None:
    line = {"epoch": epoch, "step": step, "train": train_m, "valid": valid_m, "test": test_m, **seconds}
    run.record.log_epoch(line)
    if run.tracker is not None:
        run.tracker.log(flatten(line), step=epoch)
    log.info("%sepoch %d  train %s  valid %s  test %s  %.1fs  %s", run_prefix(run), epoch, fmt(train_m),
             fmt(valid_m), fmt(test_m), seconds["epoch_seconds"], throughput(seconds["seq_per_s"], seconds["time_steps_per_s"]))
    if is_better(valid_m, run.meta["best"], objective):
        run.meta["best"] = {"epoch": epoch, "valid": valid_m, "test": test_m}
        run.result.pop("best_checkpoint_lost", None)
    run.meta.update(epoch=epoch, step=step, wall_seconds=time.time() - started)
    run.ckpt.save(epoch, state, run.meta, best=run.meta["best"]["epoch"] == epoch)


def stopped_early(run: Run, epoch: int) -> bool:
    """Greff et al.'s early stopping: `patience` epochs without a better validation metric end the run."""
    patience = run.cfg.patience
    return bool(patience) and epoch < run.cfg.epochs and epoch - run.meta["best"]["epoch"] >= patience


def finish(run: Run, status: str, started: float, stopped_early: bool = False) -> None:
    """Write the run's final record, close its checkpoints and wandb run, and say how it ended in one line."""
    if run.ckpt is not None:
        run.ckpt.close()
    run.result.update(final_fields(run.record, run.meta, status, started), stopped_early=stopped_early)
    run.record.write_result(run.result)
    if run.tracker is not None:
        run.tracker.summary(summary_values(run.result))
        run.tracker.finish()
    log.info("%s%s", run_prefix(run), summary_line(run.result, run.record.result_path))
    run.release()


def final_fields(record: RunRecord, meta: dict, status: str, started: float) -> dict:
    """What result.json adds when a run ends: metrics at the best validation epoch and at the last."""
    best = meta["best"] or {}
    last = next((e for e in reversed(record.epochs()) if "valid" in e), {})
    return {"status": status, "epochs_completed": meta["epoch"], "best_epoch": best.get("epoch"),
            "valid": best.get("valid"), "test": best.get("test"),
            "final": {k: last.get(k) for k in ("train", "valid", "test")}, "wall_seconds": time.time() - started}


def summary_values(result: dict) -> dict:
    """wandb's run summary: result.json's figures (the best validation epoch's) under the names the epoch
    lines use, so a dashboard shows the same test metric as the record; the last epoch's under final/."""
    values = {k: result.get(k) for k in ("status", "best_epoch", "num_params", "epochs_completed", "stopped_early")}
    for part in ("valid", "test"):
        values.update({f"{part}/{k}": v for k, v in (result.get(part) or {}).items()})
    for part, metrics in (result.get("final") or {}).items():
        values.update({f"final/{part}/{k}": v for k, v in (metrics or {}).items()})
    return values


def summary_line(result: dict, path: Path) -> str:
    """How a run ended, in one line: status, best epoch, its valid and test objective, wall time, record."""
    name = (result.get("objective") or {}).get("name", "loss")
    valid, test = (result.get(p) or {} for p in ("valid", "test"))
    early = ", stopped early" if result.get("stopped_early") else ""
    figures = (f"best epoch {result['best_epoch']}: valid {name} {valid.get(name, float('nan')):.4f}, "
               f"test {name} {test.get(name, float('nan')):.4f}" if result.get("best_epoch") else "no epoch evaluated")
    return (f"{result['status']}{early} after {plural(result.get('epochs_completed', 0), 'epoch')}; {figures}"
            f"{chance_words(result) if result.get('best_epoch') else ''}; {result.get('wall_seconds', 0.0):.0f}s; record: {path}")


def throughput(seq_per_s: float, time_steps_per_s: float) -> str:
    """'1399 seq/s, 39172 time steps/s': sequences per second alone do not compare across tasks whose
    sequences differ in length (28 rows of an image, a chorale of 60 steps, a spoken digit of 40 frames)."""
    return f"{seq_per_s:.0f} seq/s, {time_steps_per_s:.0f} time steps/s"


def failure_reason(error: BaseException) -> str:
    """The failure in one line: its type and first line (XLA's out-of-memory and Orbax's errors run to pages;
    the traceback in result.json keeps all of it), with what to do for a full disk or memory."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "").rstrip(".")
    reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if isinstance(error, MemoryError) or "out of memory" in text.lower():
        return f"out of memory ({reason}); lower batch_size, eval_batch_size or hidden"
    if disk_full(error):
        return f"the disk is full ({reason}); free space and rerun the same command to resume"
    return reason


def disk_full(error: BaseException) -> bool:
    return getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in str(error)


class DiskFullFutures(logging.Filter):
    """Drops asyncio's reports of futures that failed on a full disk. Orbax's abandoned background writes fail
    again on the same disk, and asyncio logs each uncollected one as an ERROR with a traceback ("Future
    exception was never retrieved", seen in a CI run) after the run's one line has said what failed and what
    to do. Any other asyncio record still shows (a population or sweep goes on in the same process)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return error is None or not disk_full(error)


logging.getLogger("asyncio").addFilter(DiskFullFutures())  # once, on import: it drops nothing else


def mark_failed(run: Run, error: Exception) -> None:
    """Record the failure with its one-line reason. A rerun of a finished run (say with a new data_dir)
    that fails puts the finished record back, noting the failed rerun in it: nothing finished is lost.
    Checkpoints a failed save left half-written are removed; when result.json itself cannot be written
    (a full disk), the line says so and the record stays as it last was."""
    reason = failure_reason(error)
    if run.ckpt is not None:
        run.ckpt.abandon()
    try:
        if run.finished_before is not None:
            kept = dict(run.finished_before, failed_rerun={"error": reason, "config": run.result["config"]})
            run.record.write_result(kept)
            line = f"{reason}; the rerun failed, and {run.record.result_path} keeps the {kept['status']} record"
        else:
            run.result.update(status="failed", error=reason, traceback=traceback.format_exc())
            run.record.write_result(run.result)
            line = f"{reason}; recorded as failed in {run.record.result_path}"
    except OSError as e:
        line = (f"{reason}; {run.record.result_path} could not be written either ({e.strerror or e}), "
                f"so it still says {(run.record.previous() or {}).get('status', 'nothing')}")
    log.error("%s%s", run_prefix(run), line)
    logged(error)
    if run.tracker is not None:
        try:
            run.tracker.finish(failed=True)
        except Exception:  # wandb on a full disk: the run's line above says what failed
            pass
    run.release()


def logged(error: BaseException) -> BaseException:
    """Mark an error as told in its one line (train.py then exits without a traceback)."""
    try:
        error.odyssey_logged = True
    except AttributeError:  # a type without a __dict__
        pass
    return error


def mark_interrupted(run: Run, stop: Interrupted) -> None:
    """SIGTERM, SIGINT or a preemption signal stopped the run between two steps (training/interrupt.py): its
    last completed epoch's checkpoint, which its records describe, is waited for, and result.json says
    `interrupted`, so rerunning (or submitit's requeue) resumes from there. A rerun of a finished run
    interrupted before it added an epoch puts the finished record back, noting the interruption."""
    if run.ckpt is not None:
        run.ckpt.close()  # Orbax writes in the background: the last epoch's checkpoint is on disk after this
    epoch = run.meta["epoch"]
    if run.finished_before is not None and epoch <= (run.finished_before.get("epochs_completed") or 0):
        kept = dict(run.finished_before, interrupted_rerun={"signal": stop.name, "config": run.result["config"]})
        run.record.write_result(kept)
        log.warning("%s%s before the rerun completed an epoch; %s keeps the %s record", run_prefix(run), stop,
                    run.record.result_path, kept["status"])
    else:
        run.result.update(final_fields(run.record, run.meta, "interrupted", time.time() - run.meta["wall_seconds"]),
                          stopped_early=False, signal=stop.name)
        run.record.write_result(run.result)
        again = ("submitit requeues its job (unless it timed out too often: then rerun the command)"
                 if interrupt.scheduler_handler(stop) else "rerun the same command")
        where = f"{again} to resume from epoch {epoch}'s checkpoint" if epoch else \
            f"no epoch was completed: {again} to start it afresh"
        log.warning("%s%s in epoch %d; %s (record: %s)", run_prefix(run), stop, epoch + 1, where, run.record.result_path)
    if run.tracker is not None:
        run.tracker.finish(failed=True)
    run.release()


def is_better(metrics: dict, best: dict | None, objective) -> bool:
    name, mode = objective
    if best is None:
        return True
    new, old = metrics[name], best["valid"][name]
    return new > old if mode == "max" else new < old


def refuse_other_run(previous: dict, resolved: dict, run_dir: Path) -> None:
    """Resuming into a directory that holds checkpoints of a different config would mix two runs."""
    if not (run_dir / "checkpoints").exists() or "config" not in previous:
        return
    old, new = run_identity(previous["config"]), run_identity(resolved)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        shown = ", ".join(f"{k} {_short(old.get(k, '(none)'))} -> {_short(new.get(k, '(none)'))}" for k in changed)
        raise Refused(
            f"refused: {run_dir} holds checkpoints of a run with a different config (changed: {shown}). "
            f"Only {', '.join(RESUMABLE_CHANGES + SAME_NUMBERS)} may change on resume; use a new output directory "
            "(hydra.run.dir=...) for a new run. Its files are left as they were."
        )


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def device_info(platform: str | None = None) -> dict:
    devices = jax.devices(platform) if platform else jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind, "device_count": len(devices)}


def run_prefix(run: Run) -> str:
    """Log lines of a trial that shares its output with others (a sweep, a population) name it."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return f"[{run.name}] "
    except Exception:  # not under Hydra (tests, notebooks)
        pass
    return f"[{run.name}] " if run.result.get("population_size", 1) > 1 else ""


def flatten(line: dict) -> dict:
    out = {}
    for k, v in line.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def fmt(m: dict) -> str:
    """Metrics for a log line; the loss is left out when a named metric already shows it (mse, nll)."""
    same = any(k != "loss" and v == m.get("loss") for k, v in m.items())
    return " ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "grad_norm" and not (k == "loss" and same))
