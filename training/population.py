"""Population training: trials that share every shape train together as one vmapped program.

Trials that differ only in PER_TRIAL keys (learning rate, momentum, input-noise std, seed) stack
their parameters and optimizer states along a leading axis K; the learning rate and momentum are
injected optimizer hyperparameters and the noise std an argument, so one compilation serves the
whole group. Each trial keeps its own data order (seeded as a lone run), its own record
(metrics.jsonl, result.json, checkpoints, wandb run), and its own fate: a trial whose loss turns
non-finite is frozen and recorded as `diverged` while the others go on untouched.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from tasks import batches, eval_batch_size, make_task
from training.devices import Placement
from training.model import count_params, model_from_config
from training.optim import make_optimizer
from training.run import Run, begin_run, mark_failed, restore_latest, run_epochs, start_tracking, steps_per_epoch
from training.steps import add_sums, is_padded, make_eval_step, make_train_step, means

log = logging.getLogger("odyssey")

PER_TRIAL = ("lr", "seed", "input_noise", "optimizer.momentum", "optimizer.one_minus_momentum")  # may differ within a population
NOT_TRAINING = ("wandb",)  # bookkeeping, may differ too


def shape_key(cfg) -> str:
    """Trials with equal keys can share one compiled program."""
    d = OmegaConf.to_container(cfg, resolve=True)
    for key in PER_TRIAL + NOT_TRAINING:
        *path, last = key.split(".")
        node = d
        for p in path:
            node = node.get(p, {})
        node.pop(last, None)
    return json.dumps(d, sort_keys=True, default=str)


def group_by_shape(cfgs) -> list[list[int]]:
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(shape_key(cfg), []).append(i)
    return list(groups.values())


def train_population(cfgs, run_dirs, max_size: int | None = None) -> list[dict]:
    """Train every config, grouped by shape into populations of at most `max_size`; one result each."""
    results: list[dict | None] = [None] * len(cfgs)
    for group in group_by_shape(cfgs):
        size = max_size or len(group)
        for start in range(0, len(group), size):
            idx = group[start:start + size]
            for i, r in zip(idx, _train_group([cfgs[i] for i in idx], [Path(run_dirs[i]) for i in idx])):
                results[i] = r
    return results


def _train_group(cfgs, run_dirs) -> list[dict]:
    out, runs = [], []
    for cfg, run_dir in zip(cfgs, run_dirs):
        run, done = begin_run(cfg, run_dir, population_size=len(cfgs))
        out.append(run.result)
        if not done:
            runs.append(run)
    try:
        for run in runs:
            start_tracking(run)
        if runs:
            _fit_on_devices(runs)
    except Exception as e:
        for run in runs:
            if run.running:
                mark_failed(run, e)
        raise
    return out  # the trials' result dicts, updated in place as they finished


def over_trials(fn, strategy: str = "auto"):
    """fn(*args) for every trial along the leading axis of all args, in one compiled program.

    `vmap` batches the trials' matmuls together, which fills a GPU or TPU; on CPU one trial already
    saturates the cores and batched matmuls run slower there, so `map` (lax.map: the trials one after
    another inside the program, each exactly a lone run's computation) is the CPU default.
    """
    if strategy == "auto":
        strategy = "map" if jax.default_backend() == "cpu" else "vmap"
    if strategy == "vmap":
        return jax.vmap(fn)
    if strategy == "map":
        return lambda *args: jax.lax.map(lambda a: fn(*a), args)
    raise ValueError(f"population strategy must be auto, vmap or map, got {strategy!r}.")


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def unstack(tree, k: int):
    return jax.tree.map(lambda x: x[k], tree)


def stack_batches(batch_list, time_keys) -> dict:
    """Stack K trials' batches; trials whose batch was trimmed shorter are zero-padded in time
    (padded steps are masked by lengths, so no result changes)."""
    T = max(b["x"].shape[1] for b in batch_list)
    padded = []
    for b in batch_list:
        b = dict(b)
        for k in time_keys:
            if b[k].shape[1] < T:
                pad = [(0, 0)] * b[k].ndim
                pad[1] = (0, T - b[k].shape[1])
                b[k] = np.pad(b[k], pad)
        padded.append(b)
    return {k: np.stack([b[k] for b in padded]) for k in padded[0]}


def _fit_on_devices(runs: list[Run]) -> None:
    """On several CPU devices, one sub-population per device, each trained by its own thread.

    The trials are independent, so the sub-populations never exchange anything: no collective
    operation, which XLA:CPU's in-process implementation can deadlock (training/split.py). Elsewhere
    one population spans all devices, its trial axis sharded.
    """
    devices = jax.devices()
    if devices[0].platform != "cpu" or len(devices) == 1 or len(runs) == 1:
        return _fit(runs)
    n = min(len(devices), len(runs))

    def fit_on(i):
        with jax.default_device(devices[i]):  # thread-local: this thread's arrays and programs live there
            _fit(runs[i::n], [devices[i]], f"population of {len(runs)}, part {i + 1}/{n} ({len(runs[i::n])} on cpu:{i})")

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(fit_on, i) for i in range(n)]
    for f in futures:
        f.result()  # re-raises a sub-population's error; the others have finished by now


def _fit(runs: list[Run], devices=None, name: str | None = None) -> None:
    engine = PopulationSteps(runs, devices or jax.devices(), name or f"population of {len(runs)}")
    run_epochs(runs, engine, engine.task.objective, len(runs) * engine.steps * runs[0].cfg.batch_size, engine.name)


class PopulationSteps:
    """K trials' epochs as one compiled program (training/run.py's Engine, for the K runs)."""

    def __init__(self, runs: list[Run], devices, name: str):
        cfg0, K = runs[0].cfg, len(runs)
        self.runs, self.cfg, self.K, self.name = runs, cfg0, K, name
        self.task = task = make_task(cfg0.task, cfg0.download)
        loaded: dict = {}  # data loaded once per distinct seed (generated tasks depend on it)
        for r in runs:
            if r.cfg.seed not in loaded:
                loaded[r.cfg.seed] = task.load(cfg0.data_dir, r.cfg.seed)
        self.splits = [loaded[r.cfg.seed] for r in runs]
        self.shared_eval = len(loaded) == 1  # every trial evaluates the same batches
        self.steps = steps_per_epoch(cfg0, self.splits[0]["train"])
        model = model_from_config(cfg0, task)
        txs = [make_optimizer(r.cfg.optimizer, r.cfg.lr, r.cfg.grad_clip) for r in runs]
        keys = [jax.random.split(jax.random.key(r.cfg.seed)) for r in runs]
        x0, len0 = self.splits[0]["train"]["x"][:1].astype(np.float32), self.splits[0]["train"]["lengths"][:1]
        latest = [r.ckpt.latest_epoch() for r in runs]
        common = latest[0] if all(e == latest[0] for e in latest) else None  # populations move in lockstep
        states = []
        for r, (init_key, _), tx in zip(runs, keys, txs):
            params = model.init(init_key, x0, len0)
            states.append(restore_latest(r, {"params": params, "opt_state": tx.init(params)}, common))
            r.result.update(num_params=count_params(params), objective=dict(zip(("name", "mode"), task.objective)))
        self.placement = Placement.for_sizes(K, what="trials", devices=devices)
        for r in runs:
            r.result["device_count"] = self.placement.count
        self._state = self.placement.shard(stack(states))
        self.step = runs[0].meta["step"]
        self.noise = jnp.asarray([r.cfg.input_noise for r in runs], jnp.float32)
        self.alive = jnp.asarray([r.running for r in runs])
        self.compile_seconds = None  # the first step's seconds, compilation included (run_epochs takes it out of seq/s)
        self._train_step = self._make_train_step(model, txs[0], jnp.stack([k for _, k in keys]))
        self._eval_step = self._make_eval_step(model)

    def _make_train_step(self, model, tx, step_keys):
        train_step, K = make_train_step(model, self.task, tx), self.K

        @functools.partial(jax.jit, static_argnames="padded")
        def population_step(state, batch, step_number, noise, alive, padded):
            rngs = jax.vmap(jax.random.fold_in, (0, None))(step_keys, step_number)  # each trial's lone-run rng
            new, sums = over_trials(lambda *a: train_step(*a, padded=padded))(state, batch, rngs, noise)
            ok = alive & jnp.isfinite(sums["loss"][0] / sums["loss"][1])
            keep = lambda n, o: jnp.where(ok.reshape((K,) + (1,) * (n.ndim - 1)), n, o)  # freeze the ended
            return jax.tree.map(keep, new, state), sums, ok

        return population_step

    def _make_eval_step(self, model):
        eval_one = make_eval_step(model, self.task)
        if self.shared_eval:  # every trial reads the same batch
            return jax.jit(lambda params, batch, padded: over_trials(lambda p: eval_one(p, batch, padded))(params),
                           static_argnames="padded")
        return jax.jit(lambda params, batch, padded: over_trials(lambda p, b: eval_one(p, b, padded))(params, batch),
                       static_argnames="padded")

    def train_epoch(self, epoch: int) -> list[dict]:
        cfg, task, sums = self.cfg, self.task, {}
        streams = [batches(s["train"], cfg.batch_size, rng=np.random.default_rng([r.cfg.seed, epoch]), drop_last=True,
                           time_keys=task.time_keys, time_bucket=task.time_bucket) for r, s in zip(self.runs, self.splits)]
        bar = tqdm(zip(*streams), total=self.steps, desc=f"{self.name}, epoch {epoch}/{cfg.epochs}", leave=False, disable=None)
        for i, batch_list in enumerate(bar):
            if i == self.steps:
                break
            batch, t0 = stack_batches(batch_list, task.time_keys), time.time()
            self._state, m, self.alive = self._train_step(self._state, self.placement.shard(batch), self.step, self.noise,
                                                          self.alive, padded=is_padded(batch))
            if self.compile_seconds is None:  # this process's first step compiles the program
                jax.block_until_ready(m)
                self.compile_seconds = time.time() - t0
            sums, self.step = add_sums(sums, m), self.step + 1
        bar.close()
        return [means(jax.tree.map(lambda x: x[k], sums)) for k in range(self.K)]

    def evaluate(self, split: str) -> list[dict]:
        task, sums, K = self.task, {}, self.K
        split_list = [s[split] for s in self.splits]
        size = eval_batch_size(split_list[0], self.cfg.eval_batch_size)
        streams = [batches(s, size, time_keys=task.time_keys, time_bucket=task.time_bucket)
                   for s in (split_list[:1] if self.shared_eval else split_list)]
        for batch_list in zip(*streams):
            batch = batch_list[0] if self.shared_eval else stack_batches(batch_list, task.time_keys)
            m, outputs = self._eval_step(self._state["params"], batch, padded=is_padded(batch))
            sums = add_sums(sums, m)
            if outputs is not None:
                host = [task.host_metrics(np.asarray(outputs[k]), batch_list[0 if self.shared_eval else k]) for k in range(K)]
                sums = add_sums(sums, {name: (np.array([h[name][0] for h in host]), np.array([h[name][1] for h in host]))
                                       for name in host[0]})
        return [means(jax.tree.map(lambda x: x[k], sums)) for k in range(K)]

    def state(self, k: int):
        return unstack(self._state, k)

    def stop(self, k: int) -> None:
        self.alive = self.alive.at[k].set(False)
