"""wandb for dashboards, with the run always closed (even when training fails) so a multirun goes on."""

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


class Tracker:
    def __init__(self, cfg, run_dir: Path, resolved_config: dict, run_id: str | None = None):
        self.run = None
        if cfg.wandb.mode == "disabled":
            return
        import wandb

        verbose = bool(cfg.get("verbose"))
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

    def summary(self, values: dict) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self, failed: bool = False) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
