"""`train(cfg) -> result`: one run, from config to records. The epoch loop is `fit`."""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from pathlib import Path

import jax
import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from tasks import batches, eval_batch_size, make_task, num_batches
from training.checkpoint import Checkpoints
from training.config import check_config
from training.devices import Placement
from training.model import count_params, model_from_config
from training.optim import make_optimizer
from training.records import FINISHED, RunRecord
from training.split import Steps
from training.steps import is_padded
from training.tracking import Tracker

log = logging.getLogger("odyssey")

# keys that may change when a run is resumed into the same directory; any other change is refused
RESUMABLE_CHANGES = ("epochs", "wandb", "data_dir", "platform")


def train(cfg, run_dir: str | os.PathLike | None = None) -> dict:
    """Train one run into `run_dir` (default: the working directory) and return its result record."""
    record, result, done = begin_run(cfg, Path(run_dir or os.getcwd()))
    if done:
        return result
    tracker = None
    try:
        tracker = Tracker(cfg, record.dir, result["config"], run_id=result["wandb_id"])
        result["wandb_id"] = tracker.id
        record.write_result(result)
        device = jax.devices(cfg.platform)[0] if cfg.platform else None
        with jax.default_device(device):
            result = fit(cfg, record, tracker, result)
    except Exception as e:
        mark_failed(record, result, e)
        if tracker is not None:
            tracker.finish(failed=True)
        raise
    tracker.summary({k: v for k, v in result.items() if k in ("status", "best_epoch", "num_params")})
    tracker.finish()
    return result


def begin_run(cfg, run_dir: Path, **extra) -> tuple[RunRecord, dict, bool]:
    """Check the config and the run directory: (record, result, done).

    done: the directory already holds a completed or diverged run of this exact config, and `result`
    is its record (a rerun, e.g. of a whole sweep, retrains nothing). Otherwise `result` is the new
    run's record, status "running", carrying the previous wandb run id so a resumed run continues it.
    """
    check_config(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    record = RunRecord(run_dir)
    previous = record.previous() or {}
    if previous.get("status") in FINISHED and previous.get("config") == resolved:
        log.info("%s already holds a %s run of this config; nothing to do", run_dir, previous["status"])
        return record, previous, True
    refuse_other_run(previous, resolved, run_dir)
    result = {"status": "running", "cell": cfg.cell.name, "task": cfg.task.name, "run_dir": str(run_dir),
              **device_info(cfg.platform), "config": resolved, **extra, "wandb_id": previous.get("wandb_id")}
    return record, result, False


def mark_failed(record: RunRecord, result: dict, error: Exception) -> None:
    result.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
    record.write_result(result)


def fit(cfg, record: RunRecord, tracker: Tracker, result: dict) -> dict:
    task = make_task(cfg.task)
    splits = task.load(cfg.data_dir, cfg.seed)
    model = model_from_config(cfg, task)
    tx = make_optimizer(cfg.optimizer, cfg.lr, cfg.grad_clip)
    init_key, step_key = jax.random.split(jax.random.key(cfg.seed))
    x0, len0 = splits["train"]["x"][:1].astype(np.float32), splits["train"]["lengths"][:1]
    params = model.init(init_key, x0, len0)
    devices = Placement.for_sizes(cfg.batch_size, cfg.eval_batch_size, platform=cfg.platform).devices
    run_steps = Steps(model, task, tx, devices)  # each batch split over the devices
    state = run_steps.place({"params": params, "opt_state": tx.init(params)})
    meta = {"epoch": 0, "step": 0, "best": None, "wall_seconds": 0.0}

    ckpt = Checkpoints(record.dir / "checkpoints")
    if ckpt.latest_epoch() is not None:
        state, meta = ckpt.restore(ckpt.latest_epoch(), state)
        log.info("resuming %s from epoch %d", record.dir, meta["epoch"])
    record.keep_epochs_through(meta["epoch"])

    noise = np.float32(cfg.input_noise)
    steps = num_batches(splits["train"], cfg.batch_size, drop_last=True)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    if steps == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set ({len(splits['train']['lengths'])} examples).")
    result.update(device_count=run_steps.count, num_params=count_params(state["params"]), objective=dict(zip(("name", "mode"), task.objective)))
    status, started = "completed", time.time() - meta["wall_seconds"]

    for epoch in range(meta["epoch"] + 1, cfg.epochs + 1):
        t0, sums = time.time(), {}
        data = batches(splits["train"], cfg.batch_size, rng=np.random.default_rng([cfg.seed, epoch]),
                       drop_last=True, time_keys=task.time_keys, time_bucket=task.time_bucket)
        bar = tqdm(data, total=steps, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=None)
        for i, batch in enumerate(bar):
            if i == steps:
                break
            state, m = run_steps.train(state, batch, jax.random.fold_in(step_key, meta["step"]), noise,
                                       padded=is_padded(batch))
            sums = add_sums(sums, m)
            meta["step"] += 1
            if i % 25 == 24:
                loss = float(sums["loss"][0] / sums["loss"][1])
                bar.set_postfix(loss=f"{loss:.4f}")
                if not math.isfinite(loss):
                    break
        bar.close()
        train_m = means(sums)
        train_seconds = time.time() - t0
        if not math.isfinite(train_m["loss"]):
            status = "diverged"
            log.warning("epoch %d: training loss is %s; the run ends as diverged", epoch, train_m["loss"])
            record.log_epoch({"epoch": epoch, "train": train_m, "diverged": True})
            break
        valid_m, test_m = (evaluate(run_steps, task, state["params"], splits[s], cfg.eval_batch_size)
                           for s in ("valid", "test"))
        line = {"epoch": epoch, "step": meta["step"], "train": train_m, "valid": valid_m, "test": test_m,
                "train_seconds": train_seconds, "epoch_seconds": time.time() - t0,
                "seq_per_s": steps * cfg.batch_size / train_seconds}
        record.log_epoch(line)
        tracker.log(flatten(line), step=epoch)
        log.info("epoch %d  train %s  valid %s  test %s  %.1fs  %.0f seq/s", epoch, fmt(train_m), fmt(valid_m),
                 fmt(test_m), line["epoch_seconds"], line["seq_per_s"])
        if is_better(valid_m, meta["best"], task.objective):
            meta["best"] = {"epoch": epoch, "valid": valid_m, "test": test_m}
        meta["epoch"], meta["wall_seconds"] = epoch, time.time() - started
        ckpt.save(epoch, state, meta)
    ckpt.close()

    result.update(final_fields(record, meta, status, started))
    record.write_result(result)
    return result


def final_fields(record: RunRecord, meta: dict, status: str, started: float) -> dict:
    """What result.json adds when a run ends: metrics at the best validation epoch and at the last."""
    best = meta["best"] or {}
    last = next((e for e in reversed(record.epochs()) if "valid" in e), {})
    return {"status": status, "epochs_completed": meta["epoch"], "best_epoch": best.get("epoch"),
            "valid": best.get("valid"), "test": best.get("test"),
            "final": {k: last.get(k) for k in ("train", "valid", "test")}, "wall_seconds": time.time() - started}


def evaluate(run_steps: Steps, task, params, split, batch_size: int) -> dict:
    sums = {}
    size = eval_batch_size(split, batch_size, run_steps.count)
    for batch in batches(split, size, time_keys=task.time_keys, time_bucket=task.time_bucket):
        m, outputs = run_steps.eval(params, batch, padded=is_padded(batch))
        sums = add_sums(sums, m)
        if outputs is not None:
            sums = add_sums(sums, task.host_metrics(np.asarray(outputs), batch))
    return means(sums)


def add_sums(sums: dict, new: dict) -> dict:
    """Running (total, count) per metric; keys missing from `new` (e.g. host metrics) are kept."""
    return {**sums, **{k: (sums[k][0] + v[0], sums[k][1] + v[1]) if k in sums else v for k, v in new.items()}}


def means(sums: dict) -> dict:
    return {k: float(total) / max(float(count), 1e-12) for k, (total, count) in sums.items()}


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
    old = {k: v for k, v in previous["config"].items() if k not in RESUMABLE_CHANGES}
    new = {k: v for k, v in resolved.items() if k not in RESUMABLE_CHANGES}
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if changed:
        raise ValueError(
            f"{run_dir} holds checkpoints of a run with a different config (changed: {', '.join(changed)}). "
            f"Only {', '.join(RESUMABLE_CHANGES)} may change on resume; use a new output directory "
            "(hydra.run.dir=...) for a new run. Nothing there was modified."
        )


def device_info(platform: str | None = None) -> dict:
    devices = jax.devices(platform) if platform else jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind, "device_count": len(devices)}


def flatten(line: dict) -> dict:
    out = {}
    for k, v in line.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


def fmt(m: dict) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "grad_norm")
