"""Every command of the README's "Use" block runs as written (shortened to a few steps), so an example
can never silently break again (the switch example once failed with Hydra's struct error)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED_DATA

SHORT = ["epochs=1", "max_steps_per_epoch=2", "wandb.mode=disabled", "patience=null"]
NEEDS = {"task=jsb": "polyphonic", "task=fsdd": "fsdd"}  # anything else but adding reads MNIST


def use_commands() -> list[str]:
    block = re.search(r"## Use\n\n```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line.split(" #")[0].strip() for line in block.splitlines() if line.startswith("python train.py")]


def test_the_readme_use_block_is_found():
    commands = use_commands()
    assert len(commands) >= 5 and any("cell.switches" in c for c in commands)


@pytest.mark.slow
@pytest.mark.parametrize("command", use_commands())
def test_every_readme_use_command_runs_as_written(command, tmp_path):
    args = shlex.split(command)[2:]
    if "--cfg" not in args:
        if "task=adding" not in args:
            folder = next((sub for key, sub in NEEDS.items() if key in args), "mnist")
            if not (SHARED_DATA / folder).exists():
                pytest.skip(f"{SHARED_DATA / folder} not present")
            args += [f"data_dir={SHARED_DATA}", "eval_batch_size=1000" if folder == "mnist" else "eval_batch_size=100"]
        args = [a for a in args if not a.startswith(("epochs=", "patience="))] + SHORT + [f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    if "--cfg" not in args:
        assert "completed after 1 epochs" in proc.stdout + proc.stderr
