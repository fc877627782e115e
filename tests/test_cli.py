"""What a researcher sees on the command line: quiet runs that end with one summary line, multiruns that
end with a table, resume by rerunning the same command, refuse sweeps that would share folders, and
record every trial that starts, bad values included."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY


def without(key: str) -> list[str]:
    return [o for o in TINY if not o.startswith(f"{key}=")]


def train_py(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # wandb as a user has it
    env.update(WANDB_DISABLE_GIT="true", WANDB_DISABLE_CODE="true")
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_run_is_quiet_and_ends_with_one_summary_line(tmp_path):
    proc = train_py(*[o for o in TINY if not o.startswith("wandb")], "wandb.mode=offline", "epochs=2",
                    f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    lines = [line for line in out.strip().splitlines() if ": step " not in line]  # progress: only an epoch over a minute
    assert len(lines) == 6, out  # what trains, where wandb writes, what data came, two epoch lines, the summary
    assert "training v, 8 units, on adding: " in lines[0] and "run folder" in lines[0]
    assert "wandb: offline run" in lines[1] and "upload later: wandb sync" in lines[1]
    assert "adding: 64 train, 32 valid, 32 test sequences of 6 steps" in lines[2]
    assert lines[-1].endswith(f"record: {tmp_path / 'result.json'}") and "completed after 2 epochs; best epoch" in lines[-1]
    assert "Unable to initialize backend" not in out and "\x1b[" not in out
    assert list((tmp_path / "wandb").glob("offline-run-*"))  # quiet, but written


def test_an_unknown_cell_on_the_command_line_lists_the_known_cells_and_says_how_to_add_one(tmp_path):
    proc = train_py("cell=lstm", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Unknown cell 'lstm'; choose one of v, nig, nfg" in proc.stderr and "docs/cells.md" in proc.stderr
    assert not (tmp_path / "result.json").exists()


def test_orbaxs_routine_wait_for_the_previous_save_is_dropped_unless_verbose(caplog):
    """On a busy machine Orbax warns when an epoch's checkpoint waits for the last one: routine, since every
    epoch saves; other absl warnings still show (this one broke the quiet run above under load)."""
    from training.logs import configure_logging

    absl = logging.getLogger("absl")
    wait = "Waiting for previous save to complete took 1.650927 seconds. If this number is high, consider checkpointing less frequently."
    try:
        configure_logging(verbose=False)
        absl.warning(wait)
        absl.warning("a real problem")
        assert wait not in caplog.text and "a real problem" in caplog.text
        configure_logging(verbose=True)
        absl.warning(wait)
        assert wait in caplog.text
    finally:
        configure_logging(verbose=False)


@pytest.mark.slow
def test_an_adhoc_sweep_records_every_trial_ends_with_a_table_and_resumes_when_rerun(tmp_path):
    sweep = ["-m", *without("hidden"), "launch=joblib", "cell=srn,gru", "hidden=8,0", "study=adhoc"]
    first = train_py(*sweep, cwd=tmp_path)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    folder = tmp_path / "multirun" / "adhoc"
    records = {p.parent.name: json.loads(p.read_text()) for p in folder.rglob("result.json")}
    assert len(records) == 4  # every trial that started, the ones with a bad value too
    failed = {name for name, r in records.items() if r["status"] == "failed"}
    assert failed == {name for name in records if "hidden=0," in name + ","}
    assert all("hidden must be a positive integer" in records[name]["error"] for name in failed)
    assert "sweep multirun/adhoc: 4 trials" in out and "its report: python -m sweeps.report multirun/adhoc" in out
    assert "[batch_size=16,cell=gru," in out  # parallel trials' epoch lines name their trial

    again = train_py(*sweep, cwd=tmp_path)
    assert again.returncode == 0
    assert (again.stdout + again.stderr).count("already holds a completed run of this config; nothing to do") == 2


@pytest.mark.slow
def test_a_sweep_over_a_key_that_folders_are_not_named_by_is_refused(tmp_path):
    proc = train_py("-m", *without("epochs"), "epochs=1,2", "study=clash", cwd=tmp_path)
    assert proc.returncode != 0
    assert "this sweep varies epochs, which trial folders are not named by" in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("result.json"))
