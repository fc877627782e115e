"""Population training: trials that share a network's structure train together as one program.

Trials that differ only in PER_TRIAL keys (learning rate, momentum, input-noise std, seed, hidden
size) stack their parameters and optimizer states along a leading axis K; the learning rate and
momentum are injected optimizer hyperparameters, the noise std an argument, and a narrower trial's
parameters are zero-padded, exactly inert, to the population's widest size (training/widths.py), so
one compilation serves the whole group. Each trial keeps its own data order (seeded as a lone run),
its own record (metrics.jsonl, result.json, own-size checkpoints, wandb run), and its own fate: a
trial whose loss turns non-finite is frozen and recorded as `diverged` while the others go on untouched.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import OmegaConf

from tasks import batches, eval_batch_size, make_task
from variants import VARIANTS, GateSpec
from training import interrupt, switches, widths
from training.build import first_example, initial_state, optimizer
from training.devices import Placement
from training.logs import plural
from training.introduce import cell_words, data_line, device_words, parameter_count, preparing_line
from training.model import count_params, model_from_config, paths_of
from training.progress import EpochProgress
from training.records import RunRecord
from training.run import (Run, begin_run, check_input_size, mark_failed, mark_interrupted, restore_latest, run_epochs,
                          start_tracking, steps_per_epoch)
from training.steps import add_sums, is_padded, make_eval_step, make_train_step, means

# conf/launch/population.yaml's launcher settings (width_bucket, mix_variants, max_size): the defaults of code that
# trains populations without Hydra's launcher (tests, benchmarks), read from conf/ so that they are the launcher's
LAUNCHER = OmegaConf.load(Path(__file__).resolve().parent.parent / "conf" / "launch" / "population.yaml").hydra.launcher

log = logging.getLogger("odyssey")

PER_TRIAL = ("lr", "seed", "input_noise", "optimizer.momentum", "optimizer.one_minus_momentum")  # may differ within a population
NOT_TRAINING = ("wandb",)  # bookkeeping, may differ too


def mixes_widths(cfg) -> bool:
    """Whether a trial may be padded to a wider one. Not with dropout between stacked layers: its mask is
    drawn over the layer's width, so a wider layer would draw a narrower trial other masks."""
    return cfg.layers == 1 or not cfg.dropout


def cell_spec(cfg) -> GateSpec | None:
    """A Greff variant's switches, resolved (None for gru and srn)."""
    if cfg.cell.name not in VARIANTS:
        return None
    return VARIANTS[cfg.cell.name].replace(**{k: v for k, v in (cfg.cell.get("switches") or {}).items() if v is not None})


def shape_key(cfg, mix_variants: bool = LAUNCHER.mix_variants) -> str:
    """Trials with equal keys can share one compiled program. mix_variants: Greff variants differ only in
    data (variants.SwitchedCell), except full recurrence, which adds matrices to every step."""
    d = OmegaConf.to_container(cfg, resolve=True)
    spec = cell_spec(cfg)
    if mix_variants and spec is not None:
        d["cell"].pop("name"), d["cell"].pop("switches", None)
        d["cell"]["full_recurrence"] = spec.full_recurrence
    for key in PER_TRIAL + NOT_TRAINING + (("hidden",) if mixes_widths(cfg) else ()):
        *path, last = key.split(".")
        node = d
        for p in path:
            node = node.get(p, {})
        node.pop(last, None)
    return json.dumps(d, sort_keys=True, default=str)


def resolve_width_bucket(width_bucket: int | str | None) -> int | None:
    """`auto`: 32 on CPU, where a trial costs what its padded width costs (trials run one after another,
    `over_trials`): measured on Greff's search, 16 trials of full 400-step epochs, buckets of 32 ran 1.30×
    faster than one population padded to the widest (README: Measured); elsewhere None: one population
    padded to its widest trial, as the trials run side by side (not yet measured on a GPU)."""
    if width_bucket == "auto":
        return 32 if jax.default_backend() == "cpu" else None
    if width_bucket is not None and (not isinstance(width_bucket, int) or width_bucket < 1):
        raise ValueError(f"width_bucket must be a positive number of units, null (pad to the widest trial) or auto, "
                         f"got {width_bucket!r}.")
    return width_bucket


def group_by_shape(cfgs, width_bucket: int | str | None = None, mix_variants: bool = LAUNCHER.mix_variants) -> list[list[int]]:
    """Indices of the configs that can train as one population, each group ordered by hidden size.
    width_bucket: with a number, trials of widths in different buckets of that many units (1–32, 33–64,
    ...) form separate groups; None: every width of a structure in one group. mix_variants: Greff's
    variants of one task share a group (FGR and its combinations apart from the rest)."""
    bucket, groups = resolve_width_bucket(width_bucket), {}
    for i, cfg in enumerate(cfgs):
        width = math.ceil(cfg.hidden / bucket) if bucket and mixes_widths(cfg) else None  # else in shape_key, or free
        groups.setdefault((shape_key(cfg, mix_variants), width), []).append(i)
    return [sorted(g, key=lambda i: cfgs[i].hidden) for g in groups.values()]


def plan_populations(cfgs, max_size: int | None = LAUNCHER.max_size, width_bucket: int | str | None = LAUNCHER.width_bucket,
                     mix_variants: bool = LAUNCHER.mix_variants) -> list[list[int]]:
    """The populations to train: groups of `group_by_shape`, cut into pieces of at most `max_size` trials."""
    plan = []
    for group in group_by_shape(cfgs, width_bucket, mix_variants):
        size = max_size or len(group)
        plan += [group[start:start + size] for start in range(0, len(group), size)]
    return plan


def train_population(cfgs, run_dirs, max_size: int | None = LAUNCHER.max_size,
                     width_bucket: int | str | None = LAUNCHER.width_bucket, mix_variants: bool = LAUNCHER.mix_variants,
                     job_configs: list | None = None) -> list[dict]:
    """Train every config, grouped into populations (`plan_populations`), here, one after another; one result each.
    job_configs: per trial, the `.hydra/` files of its Hydra job (training.records.job_configs), or None."""
    results: list[dict | None] = [None] * len(cfgs)
    job_configs = job_configs or [None] * len(cfgs)
    for idx in plan_populations(cfgs, max_size, width_bucket, mix_variants):
        for i, r in zip(idx, train_one_population([cfgs[i] for i in idx], [run_dirs[i] for i in idx],
                                                  job_configs=[job_configs[i] for i in idx])):
            results[i] = r
    return results


def train_one_population(cfgs, run_dirs, in_new_process: bool = False, job_configs: list | None = None) -> list[dict]:
    """One population: its trials' results (each also in its run_dir's result.json). in_new_process: this
    process has not started JAX yet (a cluster job), so set its CPU devices and logging first."""
    if in_new_process:
        from training.devices import configure_host
        from training.logs import configure_logging

        configure_host(cfgs[0].speed)
        configure_logging(cfgs[0].verbose)
        # force: in a submitit job the root logger already has a handler in logging's default format at WARNING
        # (its log read "WARNING:odyssey:..." and held no INFO line: epochs, "resuming ..."), so this did nothing
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s",
                            force=True)
    out, runs = [], []
    for cfg, run_dir, files in zip(cfgs, run_dirs, job_configs or [None] * len(cfgs)):
        try:
            run, done = begin_run(cfg, Path(run_dir), files, population_size=len(cfgs))
        except Exception:  # a bad config (recorded as failed) or a refused folder: the others train without it
            out.append(RunRecord(Path(run_dir)).previous())
            continue
        out.append(run.result)
        if not done:
            runs.append(run)
    try:
        with interrupt.handled():  # SIGTERM, SIGINT: every sub-population stops between steps
            for run in runs:
                start_tracking(run)
            if runs:
                _fit_on_devices(runs)
    except interrupt.Interrupted as e:
        for run in runs:
            if run.running:
                mark_interrupted(run, e)
        raise
    except Exception as e:
        for run in runs:
            if run.running:
                mark_failed(run, e)
        raise
    finally:
        for run in runs:
            run.release()  # each trial's folder lock (training/lock.py), whatever happened
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
        self.placement = Placement.for_sizes(K, what="trials", devices=devices)
        log.info("%s", first_line(runs, task, self.placement.devices, name))
        if line := preparing_line(task, cfg0.data_dir):
            log.info("%s: %s", name, line)
        loaded: dict = {}  # data loaded once per distinct seed (generated tasks depend on it)
        t0 = time.time()
        for r in runs:
            if r.cfg.seed not in loaded:
                loaded[r.cfg.seed] = task.load(cfg0.data_dir, r.cfg.seed)
                check_input_size(task, loaded[r.cfg.seed])
        log.info("%s: %s", name, data_line(task.name, loaded[runs[0].cfg.seed], time.time() - t0))
        self.splits = [loaded[r.cfg.seed] for r in runs]
        for r, splits in zip(runs, self.splits):
            r.result["chance"] = task.chance(splits)
        self.shared_eval = len(loaded) == 1  # every trial evaluates the same batches
        self.steps = steps_per_epoch(cfg0, self.splits[0]["train"])
        self.width = max(r.cfg.hidden for r in runs)
        specs = [cell_spec(r.cfg) for r in runs]
        self.switched = len(set(specs)) > 1  # mixed Greff variants: switches as data (training/switches.py)
        model = model_from_config(cfg0, task, hidden=self.width, switches_as_data=self.switched)
        txs = [optimizer(r.cfg) for r in runs]
        keys = [jax.random.split(jax.random.key(r.cfg.seed)) for r in runs]
        x0, len0 = first_example(self.splits[0]["train"])
        wide = jax.eval_shape(lambda k: initial_state(model, txs[0], k, x0, len0), keys[0][0])
        latest = [r.ckpt.latest_epoch() for r in runs]
        common = latest[0] if all(e == latest[0] for e in latest) else None  # populations move in lockstep
        states, masks, self.own_shapes, self.own_width_shapes = [], [], [], []
        for r, (init_key, _), tx, spec in zip(runs, keys, txs, specs):  # each trial starts as its lone run, at its own width
            own = initial_state(model_from_config(r.cfg, task, quiet=True), tx, init_key, x0, len0)
            own = restore_latest(r, own, common)
            self.own_shapes.append(jax.eval_shape(lambda: own))
            r.result.update(num_params=count_params(own["params"]))
            if self.switched:  # laid into the superset of the variants' parameters, still at its own width
                superset = model_from_config(r.cfg, task, switches_as_data=True, quiet=True)
                own = switches.embed(own, jax.eval_shape(lambda k: initial_state(superset, tx, k, x0, len0), init_key), spec)
            self.own_width_shapes.append(jax.eval_shape(lambda: own))
            states.append(widths.embed(own, wide, r.cfg.hidden, self.width))
            masks.append(widths.mask(own["params"], wide["params"], r.cfg.hidden, self.width))
        for r in runs:
            r.result.update(device_count=self.placement.count, speed_paths=paths_of(model))
        self._state = self.placement.shard(stack(states))
        mixed = any(r.cfg.hidden < self.width for r in runs)
        self.masks = self.placement.shard(stack(masks)) if mixed else None  # only a mixed population has padding
        self.step = runs[0].meta["step"]
        self.noise = jnp.asarray([r.cfg.input_noise for r in runs], jnp.float32)
        self.alive = jnp.asarray([r.running for r in runs])
        self.compile_seconds = None  # the first step's seconds, compilation included (run_epochs takes it out of seq/s)
        self.time_steps = 0  # real time steps the trials trained in the last epoch, all together
        self._train_step = self._make_train_step(model, txs[0], jnp.stack([k for _, k in keys]))
        self._eval_step = self._make_eval_step(model)

    def _make_train_step(self, model, tx, step_keys):
        train_step, K = make_train_step(model, self.task, tx), self.K

        @functools.partial(jax.jit, static_argnames="padded")
        def population_step(state, batch, step_number, noise, masks, alive, padded):
            rngs = jax.vmap(jax.random.fold_in, (0, None))(step_keys, step_number)  # each trial's lone-run rng
            new, sums = over_trials(lambda s, b, r, n, m: train_step(s, b, r, n, padded, m))(state, batch, rngs, noise, masks)
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
        bar = EpochProgress(self.steps, f"{self.name}, epoch {epoch}/{cfg.epochs}", cfg.progress_seconds)
        self.time_steps = 0
        for i, batch_list in enumerate(zip(*streams)):
            if i == self.steps:
                break
            interrupt.check()
            batch, t0 = stack_batches(batch_list, task.time_keys), time.time()
            self._state, m, self.alive = self._train_step(self._state, self.placement.shard(batch), self.step, self.noise,
                                                          self.masks, self.alive, padded=is_padded(batch))
            if self.compile_seconds is None:  # this process's first step compiles the program
                jax.block_until_ready(m)
                self.compile_seconds = time.time() - t0
            sums, self.step = add_sums(sums, m), self.step + 1
            self.time_steps += sum(int(b["lengths"].sum()) for b in batch_list)
            bar.update()
        bar.close()
        return [means(jax.tree.map(lambda x: x[k], sums)) for k in range(self.K)]

    def evaluate(self, split: str) -> list[dict]:
        task, sums, K = self.task, {}, self.K
        split_list = [s[split] for s in self.splits]
        size = eval_batch_size(split_list[0], self.cfg.eval_batch_size)
        streams = [batches(s, size, time_keys=task.time_keys, time_bucket=task.time_bucket)
                   for s in (split_list[:1] if self.shared_eval else split_list)]
        for batch_list in zip(*streams):
            interrupt.check()
            batch = batch_list[0] if self.shared_eval else stack_batches(batch_list, task.time_keys)
            m, outputs = self._eval_step(self._state["params"], batch, padded=is_padded(batch))
            sums = add_sums(sums, m)
            if outputs is not None:
                host = [task.host_metrics(np.asarray(outputs[k]), batch_list[0 if self.shared_eval else k]) for k in range(K)]
                sums = add_sums(sums, {name: (np.array([h[name][0] for h in host]), np.array([h[name][1] for h in host]))
                                       for name in host[0]})
        return [means(jax.tree.map(lambda x: x[k], sums)) for k in range(K)]

    def state(self, k: int):
        """Trial k's state at its own width and with its own variant's parameters: what its checkpoint holds."""
        state = widths.extract(unstack(self._state, k), self.own_width_shapes[k], self.runs[k].cfg.hidden, self.width)
        return switches.extract(state, self.own_shapes[k]) if self.switched else state

    def stop(self, k: int) -> None:
        self.alive = self.alive.at[k].set(False)


def first_line(runs: list[Run], task, devices, name: str) -> str:
    """A population's first line: its trials' cells and widths, the task, the widest trial's parameters per
    cell, the devices and the sweep folder (each trial's own count is in its result.json)."""
    cells = list(dict.fromkeys(cell_words(r.cfg).split(",")[0] for r in runs))
    widths = sorted({r.cfg.hidden for r in runs})
    widest = {cell_words(r.cfg).split(",")[0]: r for r in runs}  # runs are ordered by width: the last of each cell
    counts = [parameter_count(model_from_config(r.cfg, task, quiet=True), task, jax.random.key(r.cfg.seed))
              for r in widest.values()]
    units = f"{widths[0]}-{widths[-1]} units" if len(widths) > 1 else f"{widths[0]} units"
    folders = {str(r.record.dir.parent) for r in runs}
    return (f"{name}: training {plural(len(runs), 'trial')} of {', '.join(cells)} ({units}), on {task.name}: "
            f"up to {max(counts):,} parameters per trial, {device_words(list(devices))}; "
            f"sweep folder {', '.join(sorted(folders))}")

