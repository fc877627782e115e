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
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from tasks import batches, eval_batch_size, make_task, num_batches
from training.checkpoint import Checkpoints
from training.devices import Placement
from training.loop import add_sums, begin_run, final_fields, flatten, is_better, mark_failed, means
from training.model import count_params, model_from_config
from training.optim import make_optimizer
from training.records import RunRecord
from training.steps import is_padded, make_eval_step, make_train_step
from training.tracking import Tracker

log = logging.getLogger("odyssey")

PER_TRIAL = ("lr", "seed", "input_noise", "optimizer.momentum")  # may differ within a population
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


@dataclass
class Trial:
    cfg: object
    record: RunRecord
    result: dict
    tracker: Tracker | None = None
    meta: dict = field(default_factory=lambda: {"epoch": 0, "step": 0, "best": None, "wall_seconds": 0.0})


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
    out, trials = [], []
    for cfg, run_dir in zip(cfgs, run_dirs):
        record, result, done = begin_run(cfg, run_dir, population_size=len(cfgs))
        out.append(result)
        if done:
            continue
        trial = Trial(cfg, record, result, Tracker(cfg, run_dir, result["config"], run_id=result["wandb_id"]))
        result["wandb_id"] = trial.tracker.id
        record.write_result(result)
        trials.append(trial)
    if trials:
        try:
            _fit_on_devices(trials)
        except Exception as e:
            for t in trials:
                if t.result["status"] == "running":
                    mark_failed(t.record, t.result, e)
                    t.tracker.finish(failed=True)
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


def _fit_on_devices(trials: list[Trial]) -> None:
    """On several CPU devices, one sub-population per device, each trained by its own thread.

    The trials are independent, so the sub-populations never exchange anything: no collective
    operation, which XLA:CPU's in-process implementation can deadlock (training/split.py). Elsewhere
    one population spans all devices, its trial axis sharded.
    """
    devices = jax.devices()
    if devices[0].platform != "cpu" or len(devices) == 1 or len(trials) == 1:
        return _fit(trials)
    n = min(len(devices), len(trials))

    def fit_on(i):
        group = trials[i::n]
        with jax.default_device(devices[i]):  # thread-local: this thread's arrays and programs live there
            _fit(group, [devices[i]], f"population of {len(trials)}, part {i + 1}/{n} ({len(group)} on cpu:{i})")

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(fit_on, i) for i in range(n)]
    for f in futures:
        f.result()  # re-raises a sub-population's error; the others have finished by now


def _fit(trials: list[Trial], devices=None, name: str | None = None) -> None:
    cfg0, K = trials[0].cfg, len(trials)
    name = name or f"population of {K}"  # for progress bars and log lines
    task = make_task(cfg0.task)
    loaded: dict = {}  # data loaded once per distinct seed (generated tasks depend on it)

    def load(seed):
        if seed not in loaded:
            loaded[seed] = task.load(cfg0.data_dir, seed)
        return loaded[seed]

    splits = [load(t.cfg.seed) for t in trials]
    model = model_from_config(cfg0, task)
    txs = [make_optimizer(t.cfg.optimizer, t.cfg.lr, t.cfg.grad_clip) for t in trials]
    keys = [jax.random.split(jax.random.key(t.cfg.seed)) for t in trials]
    x0, len0 = splits[0]["train"]["x"][:1].astype(np.float32), splits[0]["train"]["lengths"][:1]
    states = []
    for (init_key, _), tx in zip(keys, txs):
        params = model.init(init_key, x0, len0)
        states.append({"params": params, "opt_state": tx.init(params)})

    ckpts = [Checkpoints(t.record.dir / "checkpoints") for t in trials]
    latest = [c.latest_epoch() for c in ckpts]
    if all(e is not None and e == latest[0] for e in latest):  # populations move in lockstep
        for k, (t, c) in enumerate(zip(trials, ckpts)):
            states[k], t.meta = c.restore(latest[0], states[k])
    for t in trials:
        t.record.keep_epochs_through(t.meta["epoch"])

    devices = devices or jax.devices()
    placement = Placement.for_sizes(K, what="trials", devices=devices)
    state = placement.shard(stack(states))
    step_keys = jnp.stack([k for _, k in keys])
    noise = jnp.asarray([t.cfg.input_noise for t in trials], jnp.float32)
    alive = jnp.asarray([True] * K)
    shared_eval = all(s is splits[0] for s in splits)

    train_step = make_train_step(model, task, txs[0])

    @functools.partial(jax.jit, static_argnames="padded")
    def population_step(state, batch, step_number, noise, alive, padded):
        rngs = jax.vmap(jax.random.fold_in, (0, None))(step_keys, step_number)  # each trial's lone-run rng
        new, sums = over_trials(lambda *a: train_step(*a, padded=padded))(state, batch, rngs, noise)
        ok = alive & jnp.isfinite(sums["loss"][0] / sums["loss"][1])
        keep = lambda n, o: jnp.where(ok.reshape((K,) + (1,) * (n.ndim - 1)), n, o)  # freeze the diverged
        return jax.tree.map(keep, new, state), sums, ok

    eval_one = make_eval_step(model, task)
    if shared_eval:  # every trial reads the same batch
        eval_step = jax.jit(lambda params, batch, padded: over_trials(lambda p: eval_one(p, batch, padded))(params),
                            static_argnames="padded")
    else:
        eval_step = jax.jit(lambda params, batch, padded: over_trials(lambda p, b: eval_one(p, b, padded))(params, batch),
                            static_argnames="padded")
    steps = num_batches(splits[0]["train"], cfg0.batch_size, drop_last=True)
    if cfg0.max_steps_per_epoch:
        steps = min(steps, cfg0.max_steps_per_epoch)
    started = time.time() - trials[0].meta["wall_seconds"]
    for t, s in zip(trials, states):
        t.result.update(device_count=placement.count, num_params=count_params(s["params"]), objective=dict(zip(("name", "mode"), task.objective)))

    for epoch in range(trials[0].meta["epoch"] + 1, cfg0.epochs + 1):
        t0, sums, live = time.time(), {}, [t for t in trials if t.result["status"] == "running"]
        if not live:
            break
        streams = [batches(s["train"], cfg0.batch_size, rng=np.random.default_rng([t.cfg.seed, epoch]), drop_last=True,
                           time_keys=task.time_keys, time_bucket=task.time_bucket) for t, s in zip(trials, splits)]
        for i, batch_list in enumerate(tqdm(zip(*streams), total=steps, desc=f"{name}, epoch {epoch}/{cfg0.epochs}",
                                            leave=False, disable=None)):
            if i == steps:
                break
            n = trials[0].meta["step"]
            batch = stack_batches(batch_list, task.time_keys)
            state, m, alive = population_step(state, placement.shard(batch), n, noise, alive, padded=is_padded(batch))
            sums = add_sums(sums, m)
            for t in trials:
                t.meta["step"] += 1
        train_seconds = time.time() - t0
        valid, test = (_evaluate(eval_step, task, state["params"], [s[name] for s in splits], cfg0.eval_batch_size, shared_eval, K)
                       for name in ("valid", "test"))
        alive_host = np.asarray(alive)
        for k, t in enumerate(trials):
            if t.result["status"] != "running":
                continue
            train_m = means(jax.tree.map(lambda x: x[k], sums))
            if not alive_host[k] or not math.isfinite(train_m["loss"]):
                t.record.log_epoch({"epoch": epoch, "train": train_m, "diverged": True})
                _finish(t, "diverged", started)
                continue
            line = {"epoch": epoch, "step": t.meta["step"], "train": train_m, "valid": valid[k], "test": test[k],
                    "train_seconds": train_seconds, "epoch_seconds": time.time() - t0,
                    "seq_per_s": steps * cfg0.batch_size / train_seconds, "population_seq_per_s": K * steps * cfg0.batch_size / train_seconds}
            t.record.log_epoch(line)
            t.tracker.log(flatten(line), step=epoch)
            if is_better(valid[k], t.meta["best"], task.objective):
                t.meta["best"] = {"epoch": epoch, "valid": valid[k], "test": test[k]}
            t.meta["epoch"], t.meta["wall_seconds"] = epoch, time.time() - started
            ckpts[k].save(epoch, unstack(state, k), t.meta)
        log.info("%s, epoch %d: %d trials alive, %.1fs, %.0f seq/s in all", name, epoch,
                 int(alive_host.sum()), time.time() - t0, K * steps * cfg0.batch_size / train_seconds)
    for c in ckpts:
        c.close()
    for t in trials:
        if t.result["status"] == "running":
            _finish(t, "completed", started)


def _evaluate(eval_step, task, params, split_list, batch_size, shared, K) -> list[dict]:
    sums = {}
    size = eval_batch_size(split_list[0], batch_size)
    streams = [batches(s, size, time_keys=task.time_keys, time_bucket=task.time_bucket)
               for s in (split_list[:1] if shared else split_list)]
    for batch_list in zip(*streams):
        batch = batch_list[0] if shared else stack_batches(batch_list, task.time_keys)
        m, outputs = eval_step(params, batch, padded=is_padded(batch))
        sums = add_sums(sums, m)
        if outputs is not None:
            host = [task.host_metrics(np.asarray(outputs[k]), batch_list[0 if shared else k]) for k in range(K)]
            sums = add_sums(sums, {name: (np.array([h[name][0] for h in host]), np.array([h[name][1] for h in host]))
                                   for name in host[0]})
    return [means(jax.tree.map(lambda x: x[k], sums)) for k in range(K)]


def _finish(t: Trial, status: str, started: float) -> None:
    t.result.update(final_fields(t.record, t.meta, status, started))
    t.record.write_result(t.result)
    t.tracker.summary({"status": status, "best_epoch": t.result["best_epoch"]})
    t.tracker.finish()
