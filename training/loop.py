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
from tqdm import tqdm

from tasks import batches, eval_batch_size, make_task
from training import interrupt
from training.devices import Placement
from training.build import first_example, initial_state, model_and_optimizer
from training.model import count_params, paths_of
from training.run import begin_run, mark_failed, mark_interrupted, restore_latest, run_epochs, start_tracking, steps_per_epoch
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
            start_tracking(run)
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
    cfg = run.cfg
    task = make_task(cfg.task, cfg.download)
    splits = task.load(cfg.data_dir, cfg.seed)
    steps = steps_per_epoch(cfg, splits["train"])
    model, tx = model_and_optimizer(cfg, task)
    init_key, step_key = jax.random.split(jax.random.key(cfg.seed))
    devices = Placement.for_sizes(cfg.batch_size, cfg.eval_batch_size, platform=cfg.platform).devices
    run_steps = make_steps(model, task, tx, devices)  # each batch split over the devices
    state = restore_latest(run, run_steps.place(initial_state(model, tx, init_key, *first_example(splits["train"]))))
    run.result.update(device_count=run_steps.count, num_params=count_params(state["params"]), speed_paths=paths_of(model))
    engine = LoneSteps(cfg, task, splits, run_steps, state, step_key, steps, run.meta["step"])
    interrupt.check()  # a signal during loading: stop before compiling
    run_epochs([run], engine, task.objective, steps * cfg.batch_size)


class LoneSteps:
    """One run's epochs (training/run.py's Engine, for a list of one run)."""

    def __init__(self, cfg, task, splits, run_steps: Steps, state, step_key, steps: int, step: int):
        self.cfg, self.task, self.splits, self.run_steps = cfg, task, splits, run_steps
        self._state, self.step_key, self.steps, self.step = state, step_key, steps, step
        self.noise = np.float32(cfg.input_noise)
        self.compile_seconds = None  # the first step's seconds, compilation included (run_epochs takes it out of seq/s)

    def train_epoch(self, epoch: int) -> list[dict]:
        cfg, task, sums = self.cfg, self.task, {}
        data = batches(self.splits["train"], cfg.batch_size, rng=np.random.default_rng([cfg.seed, epoch]),
                       drop_last=True, time_keys=task.time_keys, time_bucket=task.time_bucket)
        bar = tqdm(data, total=self.steps, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=None)
        for i, batch in enumerate(bar):
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
            if i % 25 == 24:
                loss = float(sums["loss"][0] / sums["loss"][1])
                bar.set_postfix(loss=f"{loss:.4f}")
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
