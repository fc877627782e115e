"""README's "When something goes wrong", row by row: every run that starts ends with exactly one result.json
that tells the truth, a finished record is never overwritten by a failed rerun, and bad input gets one clear
line saying what was wrong and what is accepted, losing nothing already written.

(Rows tested elsewhere: a bad config value, tests/test_config.py and test_run_protocol.py; missing and corrupt
data, tests/test_mnist.py, test_tasks_music.py, test_tasks_speech.py; a non-finite loss and SIGKILL,
tests/test_train.py; a corrupt latest checkpoint and a torn metrics line, a failed rerun of a finished run,
tests/test_run_protocol.py; a sweep over a key folders are not named by, tests/test_cli.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY, compose_config
from training import train


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` (hidden ones included) with its bytes and modification time."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def train_py(*overrides: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python train.py <overrides>` as a user runs it; stdout and stderr together in .stdout."""
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


# ---------------------------------------------------------------------------------------------------
# A rerun into a folder that holds another config's run


@pytest.mark.slow
def test_a_rerun_with_another_config_is_refused_in_one_line_and_leaves_the_folder_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    first = train_py(*TINY, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stdout
    before = snapshot(run_dir)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", "result.json"} <= set(before)

    refused = train_py(*TINY, "hidden=16", f"hydra.run.dir={run_dir}")
    assert refused.returncode == 1
    (line,) = refused.stdout.strip().splitlines()
    assert "refused" in line and "different config (changed: hidden 8 -> 16)" in line and "hydra.run.dir" in line

    after = snapshot(run_dir)
    log_before, log_after = before.pop("train.log")[0].decode(), after.pop("train.log")[0].decode()
    assert after == before  # .hydra/ included: Hydra's config and overrides of the first run
    assert log_after.startswith(log_before) and log_after[len(log_before):].strip() == line  # its one line, kept


@pytest.mark.parametrize("junk", ["null", "[1, 2]", '{"status": "compl'])
def test_a_result_json_that_is_not_a_record_is_replaced_by_the_runs_own(tmp_path, junk, caplog):
    (tmp_path / "result.json").write_text(junk)
    result = train(compose_config(), tmp_path)
    assert result["status"] == "completed"
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "completed"
    assert "is not a run record (a JSON object); it will be replaced by this run's" in caplog.text
