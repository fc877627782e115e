"""Dashboards: wandb, and TensorBoard event files for a look without an account; each run is always closed
(even when training fails) so a multirun goes on."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("odyssey")

MODES = ("online", "offline", "disabled")


def run_name(cfg) -> str:
    return f"{cfg.cell.name}-{cfg.task.name}-lr{cfg.lr:g}-h{cfg.hidden}-s{cfg.seed}"


def sweep_group() -> str | None:
    """Runs of one Hydra multirun share a group: the sweep's output directory name."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        if hc.mode == RunMode.MULTIRUN:
            return Path(hc.sweep.dir).name
    except Exception:  # not under Hydra (tests, notebooks)
        pass
    return None


# the hyperparameters TensorBoard's HParams tab shows per run (the swept ones, and what identifies the model)
HPARAMS = ("cell.name", "lr", "hidden", "layers", "input_noise", "dropout", "optimizer.name", "optimizer.momentum",
           "batch_size", "seed")


def hparams_of(resolved_config: dict) -> dict:
    """The HPARAMS a config holds, by dotted name; None (a momentum Adam lacks) is left out, as HParams wants."""
    out = {}
    for key in HPARAMS:
        node = resolved_config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[key] = node
    return out


class EventFiles:
    """TensorBoard event files in <run>/tensorboard/: the epoch rows wandb gets, and the run's hyperparameters
    for the HParams tab (tensorboardX: no TensorFlow needed). `tensorboard --logdir multirun/<study>` shows a
    sweep's trials live, each as the run named by its folder."""

    def __init__(self, run_dir: Path, resolved_config: dict, objective: str | None):
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), flush_secs=10)
        metrics = {f"{part}/{objective}": 0.0 for part in ("valid", "test")} if objective else {}
        for summary in hparams(hparams_of(resolved_config), metrics):
            self.writer.file_writer.add_summary(summary)

    def log(self, metrics: dict, step: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self.writer.close()


class Tracker:
    """A run's dashboards. objective: the metric its task selects by (the record's `objective`, which the
    training loop uses too), for TensorBoard's HParams tab."""

    def __init__(self, cfg, run_dir: Path, resolved_config: dict, objective: str | None, run_id: str | None = None):
        self.run = None
        self.events = EventFiles(run_dir, resolved_config, objective) if cfg.tensorboard else None
        if cfg.wandb.mode == "disabled":
            return
        import wandb

        verbose = cfg.verbose
        self.run = wandb.init(
            mode=cfg.wandb.mode, project=cfg.wandb.project, entity=cfg.wandb.entity,
            group=cfg.wandb.group or sweep_group(), name=run_name(cfg),
            tags=[f"cell:{cfg.cell.name}", f"task:{cfg.task.name}", *cfg.wandb.tags],
            config=resolved_config, dir=str(run_dir), reinit="create_new",
            id=run_id, resume="allow" if run_id else None,
            # quiet by default: wandb's banners, sync hints, run summary and stdout capture only with verbose=true
            # (its failures still raise, and end the run as failed). Odyssey says where the run is, in one line.
            settings=wandb.Settings(silent=not verbose, console="auto" if verbose else "off"),
        )
        folder = Path(self.run.dir).parent  # wandb/<offline-run-...>: what `wandb sync` uploads
        log.info("wandb: %s run %s in %s%s", cfg.wandb.mode, self.run.id, folder,
                 f" (upload later: wandb sync {folder})" if cfg.wandb.mode == "offline" else "")

    @property
    def id(self) -> str | None:
        return self.run.id if self.run is not None else None

    def log(self, metrics: dict, step: int) -> None:
        """One epoch's row, committed now: wandb otherwise holds a row with an explicit step until the next
        step or finish(), and the last row, flushed after summary(), would overwrite the best epoch's figures
        in the run's summary with the last epoch's."""
        if self.run is not None:
            self.run.log(metrics, step=step, commit=True)
        if self.events is not None:
            self.events.log(metrics, step)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self, failed: bool = False) -> None:
        if self.events is not None:
            self.events.close()
            self.events = None
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
