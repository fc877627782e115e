"""The record every run leaves in its output directory, whatever happens to it.

    metrics.jsonl   one JSON line per epoch (train, valid and test metrics, seconds, throughput)
    result.json     status (running|completed|diverged|failed|interrupted), final metrics, the resolved config,
                    parameter count, device, timings; rewritten atomically, so it is never half-written
    checkpoints/    Orbax checkpoints for resumption (training.checkpoint)
    .hydra/         the job's config, Hydra's config and the command line's overrides, as Hydra writes them;
                    written here (conf/config.yaml turns Hydra's own writing off) once the run takes the folder,
                    so a rerun that is refused leaves the folder as it was
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("odyssey")

FINISHED = ("completed", "diverged")  # a sweep rerun skips these; it reruns (resumes) failed, interrupted, running or missing


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json(path: Path, obj: Any) -> None:
    """Write through a temporary file and rename, so a killed process never leaves half a record."""
    write_text(path, dumps(obj, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Through `<path>.tmp` and a rename; a write that fails (a full disk) removes the temporary file and
    leaves `path` as it was."""
    tmp = Path(f"{path}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


JOB_CONFIGS = ".hydra"


def job_configs(task_cfg, hydra_cfg, overrides) -> dict[str, str]:
    """The files Hydra writes into a job's `.hydra/` (config.yaml, hydra.yaml, overrides.yaml), as text.
    hydra_cfg: the config holding the `hydra` node (HydraConfig.instance().cfg in a job)."""
    from omegaconf import OmegaConf

    return {"config.yaml": OmegaConf.to_yaml(task_cfg), "hydra.yaml": OmegaConf.to_yaml(hydra_cfg),
            "overrides.yaml": OmegaConf.to_yaml(OmegaConf.create(list(overrides)))}


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON (RFC 8259 has no NaN or Infinity): a non-finite number is written as null, and the
    object gains "non_finite": the dotted paths of those numbers, so nothing is silently lost."""
    found: list[str] = []
    clean = _strict(obj, "", found)
    if found and isinstance(clean, dict):
        clean["non_finite"] = sorted(set(clean.get("non_finite") or []) | set(found))
    return json.dumps(clean, indent=indent, allow_nan=False)


def _strict(x, path: str, found: list[str]):
    if isinstance(x, dict):
        return {k: _strict(v, f"{path}.{k}" if path else str(k), found) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v, f"{path}.{i}", found) for i, v in enumerate(x)]
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:
        x = x.item()
    elif hasattr(x, "tolist"):
        return _strict(x.tolist(), path, found)
    if isinstance(x, float) and not math.isfinite(x):
        found.append(path)
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


class RunRecord:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.result_path = self.dir / "result.json"

    def previous(self) -> dict | None:
        """The record already here; an unreadable one (torn, junk) is reported and treated as none."""
        record = read_json(self.result_path)
        if self.result_path.exists() and not isinstance(record, dict):
            log.warning("%s is not a run record (a JSON object); it will be replaced by this run's", self.result_path)
            return None
        return record

    def epochs(self) -> list[dict]:
        """The epoch lines; a line that is not JSON (torn by a kill mid-write) is dropped with a warning."""
        if not self.metrics_path.exists():
            return []
        lines = []
        for number, line in enumerate(self.metrics_path.read_text().splitlines(), 1):
            try:
                lines.append(json.loads(line)) if line.strip() else None
            except json.JSONDecodeError:
                log.warning("%s, line %d is not JSON (a run killed while writing it?); dropped", self.metrics_path, number)
        return lines

    def keep_epochs_through(self, epoch: int) -> list[dict]:
        """On resume: drop lines logged after the checkpoint we resume from (they will be redone)."""
        kept = [e for e in self.epochs() if e["epoch"] <= epoch]
        write_text(self.metrics_path, "".join(dumps(e) + "\n" for e in kept))
        return kept

    def log_epoch(self, line: dict) -> None:
        """Append one line; a write that fails (a full disk) is cut off again, so no torn line is left."""
        with open(self.metrics_path, "a") as f:
            size = f.tell()
            try:
                f.write(dumps(line) + "\n")
                f.flush()
            except BaseException:
                f.truncate(size)
                raise

    def write_result(self, result: dict) -> None:
        write_json(self.result_path, result)

    def write_job_configs(self, files: dict[str, str] | None) -> None:
        """The job's `.hydra/` files (job_configs), when the run was started by Hydra."""
        if not files:
            return
        folder = self.dir / JOB_CONFIGS
        folder.mkdir(exist_ok=True)
        for name, text in files.items():
            write_text(folder / name, text)
