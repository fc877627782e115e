"""`train(cfg) -> result`: one run, from config to records. Its epochs are training/run.py's loop;
this module holds what is a lone run's own: its steps, each batch split over the local devices."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import jax
import numpy as np

from tasks import batches, eval_batch_size, make_task
from training import interrupt
from training.devices import Placement
from training.build import first_example, initial_state, model_and_optimizer
from training.introduce import data_line, first_line, parameter_count, preparing_line
from training.model import count_params, model_from_config, paths_of
from training.progress import EpochProgress
from training.run import (begin_run, check_input_size, mark_failed, mark_interrupted, restore_latest, run_epochs,
                          run_prefix, start_tracking, steps_per_epoch)
from training.split import Steps, make_steps
from training.steps import add_sums, is_padded, means

log = logging.getLogger("odyssey")


def train(cfg, run_dir: str | os.PathLike | None = None, job_configs: dict[str, str] | None = None) -> dict:
    """Train one run into `run_dir` (default: the working directory) and return its result record.
    job_configs: the `.hydra/` files of a job Hydra started (training.records.job_configs)."""
    run, done = begin_run(cfg, Path(run_dir or os.getcwd()), job_configs)
    if done:
        return run.result
    try:
        with interrupt.handled():  # SIGTERM, SIGINT: stop between steps (training/interrupt.py)
            device = jax.devices(cfg.platform)[0] if cfg.platform else None
            with jax.default_device(device):
                fit(run)
    except interrupt.Interrupted as e:
        mark_interrupted(run, e)
        raise
    except Exception as e:
        mark_failed(run, e)
        raise
    finally:
        run.release()  # the folder's lock (training/lock.py), whatever happened
    return run.result


def fit(run) -> None:
    cfg, prefix = run.cfg, run_prefix(run)
    task = make_task(cfg.task, cfg.download)
    devices = Placement.for_sizes(cfg.batch_size, cfg.eval_batch_size, platform=cfg.platform).devices
    init_key, step_key = jax.random.split(jax.random.key(cfg.seed))
    count = parameter_count(model_from_config(cfg, task, quiet=True), task, init_key)
    log.info("%s%s", prefix, first_line(cfg, task.name, count, devices, run.record.dir))  # before anything slow
    start_tracking(run)
    if line := preparing_line(task, cfg.data_dir):
        log.info("%s%s", prefix, line)
    t0 = time.time()
    splits = task.load(cfg.data_dir, cfg.seed)
    check_input_size(task, splits)
    log.info("%s%s", prefix, data_line(task.name, splits, time.time() - t0))
    steps = steps_per_epoch(cfg, splits["train"])
    model, tx = model_and_optimizer(cfg, task)
    run_steps = make_steps(model, task, tx, devices)  # each batch split over the devices
    state = restore_latest(run, run_steps.place(initial_state(model, tx, init_key, *first_example(splits["train"]))))
    run.result.update(device_count=run_steps.count, num_params=count_params(state["params"]), speed_paths=paths_of(model),
                      chance=task.chance(splits))
    engine = LoneSteps(cfg, task, splits, run_steps, state, step_key, steps, run.meta["step"], prefix)
    interrupt.check()  # a signal during loading: stop before compiling
    run_epochs([run], engine, task.objective, steps * cfg.batch_size)


class LoneSteps:
    """One run's epochs (training/run.py's Engine, for a list of one run)."""

    def __init__(self, cfg, task, splits, run_steps: Steps, state, step_key, steps: int, step: int, prefix: str = ""):
        self.cfg, self.task, self.splits, self.run_steps = cfg, task, splits, run_steps
        self._state, self.step_key, self.steps, self.step = state, step_key, steps, step
        self.noise = np.float32(cfg.input_noise)
        self.compile_seconds = None  # the first step's seconds, compilation included (run_epochs takes it out of seq/s)
        self.time_steps = 0  # real (unpadded) time steps trained in the last epoch: time steps/s beside seq/s
        self.prefix = prefix  # the trial's name in a sweep, for its progress lines

    def train_epoch(self, epoch: int) -> list[dict]:
        cfg, task, sums = self.cfg, self.task, {}
        data = batches(self.splits["train"], cfg.batch_size, rng=np.random.default_rng([cfg.seed, epoch]),
                       drop_last=True, time_keys=task.time_keys, time_bucket=task.time_bucket)
        bar = EpochProgress(self.steps, f"epoch {epoch}/{cfg.epochs}", cfg.progress_seconds, self.prefix)
        self.time_steps = 0
        for i, batch in enumerate(data):
            if i == self.steps:
                break
            interrupt.check()
            rng = jax.random.fold_in(self.step_key, self.step)
            t0 = time.time()
            self._state, m = self.run_steps.train(self._state, batch, rng, self.noise, padded=is_padded(batch))
            if self.compile_seconds is None:  # this process's first step compiles the program
                jax.block_until_ready(m)
                self.compile_seconds = time.time() - t0
            sums, self.step = add_sums(sums, m), self.step + 1
            self.time_steps += int(batch["lengths"].sum())  # drop_last: every row is a real sequence
            bar.update(loss=lambda: float(sums["loss"][0] / sums["loss"][1]))
            if i % 25 == 24:
                loss = float(sums["loss"][0] / sums["loss"][1])
                bar.set_loss(loss)
                if not math.isfinite(loss):
                    break  # diverged: no use finishing the epoch
        bar.close()
        return [means(sums)]

    def evaluate(self, split: str) -> list[dict]:
        return [evaluate(self.run_steps, self.task, self._state["params"], self.splits[split], self.cfg.eval_batch_size)]

    def state(self, k: int):
        return self._state

    def stop(self, k: int) -> None:
        pass


def evaluate(run_steps: Steps, task, params, split, batch_size: int) -> dict:
    sums = {}
    size = eval_batch_size(split, batch_size, run_steps.count)
    for batch in batches(split, size, time_keys=task.time_keys, time_bucket=task.time_bucket):
        interrupt.check()
        m, outputs = run_steps.eval(params, batch, padded=is_padded(batch))
        sums = add_sums(sums, m)
        if outputs is not None:
            sums = add_sums(sums, task.host_metrics(np.asarray(outputs), batch))
    return means(sums)
