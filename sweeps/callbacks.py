"""Hydra callbacks for every multirun (conf/config.yaml: hydra.callbacks), whatever its sweeper or launcher.

    refuse a sweep over a key that trial folders are not named by (two trials would share one folder)
    refuse, in one line, a sweep still naming hydra-optuna-sweeper (hydra/sweeper=optuna): say what to write
    end with a table of the sweep's trials (folder, status, objective) and the command for its report
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hydra_plugins.odyssey_optuna import refuse_retired
from training.logs import configure_logging, plural

log = logging.getLogger("odyssey")


class SweepGuard(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        configure_logging(config.verbose)
        refuse_retired(config)  # before Hydra instantiates it (the old class fails with a traceback)
        excluded = set(config.hydra.job.config.override_dirname.exclude_keys)
        swept = [o.get_key_element() for o in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
                 if o.is_sweep_override() and o.get_key_element() in excluded]
        if swept:  # Hydra turns a callback's exception into a warning and goes on; SystemExit stops the sweep
            sys.exit(
                f"error: this sweep varies {', '.join(swept)}, which trial folders are not named by "
                f"(hydra.job.config.override_dirname.exclude_keys), so its trials would share one folder and overwrite "
                f"each other's records. Run one sweep per value, each with its own study=<name>.")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = trial_rows(sweep_dir)
        if rows:
            log.info("sweep %s: %s\n%s\nits report: python -m sweeps.report %s", sweep_dir, plural(len(rows), "trial"),
                     format_rows(rows), sweep_dir)


def trial_rows(sweep_dir: Path) -> list[tuple[str, str, str]]:
    """(trial folder, status, objective at the best validation epoch) for every result.json below sweep_dir."""
    rows = []
    for path in sorted(sweep_dir.rglob("result.json")):
        folder = str(path.parent.relative_to(sweep_dir))
        try:
            r = json.loads(path.read_text())
            name = (r.get("objective") or {}).get("name")
            value = (r.get("test") or {}).get(name) if name else None
            shown = f"test {name} {value:.4f}" if isinstance(value, (int, float)) else str(r.get("error") or "")[:80]
            rows.append((folder, str(r.get("status", "?")), shown))
        except (OSError, ValueError, AttributeError, TypeError):  # not JSON, or not a run's record
            rows.append((folder, "unreadable", ""))
    return rows


def format_rows(rows) -> str:
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {folder:{width}s}  {status:9s}  {objective}" for folder, status, objective in rows)
