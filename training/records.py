"""The record every run leaves in its output directory, whatever happens to it.

    metrics.jsonl   one JSON line per epoch (train, valid and test metrics, seconds, throughput)
    result.json     status (running|completed|diverged|failed), final metrics, the resolved config,
                    parameter count, device, timings; rewritten atomically, so it is never half-written
    checkpoints/    Orbax checkpoints for resumption (training.checkpoint)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FINISHED = ("completed", "diverged")  # a sweep rerun skips these; it reruns failed, running or missing


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json(path: Path, obj: Any) -> None:
    """Write through a temporary file and rename, so a killed process never leaves half a record."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(x):
    if hasattr(x, "item"):
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


class RunRecord:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.dir / "metrics.jsonl"
        self.result_path = self.dir / "result.json"

    def previous(self) -> dict | None:
        return read_json(self.result_path)

    def epochs(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def keep_epochs_through(self, epoch: int) -> list[dict]:
        """On resume: drop lines logged after the checkpoint we resume from (they will be redone)."""
        kept = [e for e in self.epochs() if e["epoch"] <= epoch]
        tmp = Path(f"{self.metrics_path}.tmp")
        tmp.write_text("".join(json.dumps(e, default=_jsonable) + "\n" for e in kept))
        os.replace(tmp, self.metrics_path)
        return kept

    def log_epoch(self, line: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(line, default=_jsonable) + "\n")

    def write_result(self, result: dict) -> None:
        write_json(self.result_path, result)
