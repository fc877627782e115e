"""Every command of the README's "Use" block runs as written (shortened to a few steps), so an example
can never silently break again (the switch example once failed with Hydra's struct error)."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

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
        assert "completed after 1 epoch;" in proc.stdout + proc.stderr


def sweep_commands() -> list[list[str]]:
    """The preset commands of the README's Sweeps block, as argument lists after `python train.py -m`."""
    block = re.search(r"## Sweeps\n\n.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [shlex.split(line.split(" #")[0])[3:] for line in block.splitlines() if line.startswith("python train.py -m")]


@pytest.mark.slow
@pytest.mark.parametrize("args", sweep_commands(), ids=lambda a: " ".join(a))
def test_every_readme_preset_command_launches_valid_trials(args):
    """A dry run through the preset's own sweeper (its grid, or Optuna with its seed): every trial it would
    start passes the config check. (The presets run for hours; sweeps.presets lists without training.)"""
    from sweeps.presets import compose_preset, trials
    from training import check_config

    assert args[:2] == ["-cd", "sweeps"] and args[2] == "-cn"
    name, overrides = args[3], args[4:]
    launched = trials(name, overrides)
    assert launched
    for job in launched[:12]:
        check_config(compose_preset(name, [*overrides, *job]))


@pytest.mark.slow
@pytest.mark.parametrize("inline", ["python train.py -m launch=joblib study=lr_scan", "python train.py -m launch=population"])
def test_the_readme_adhoc_and_population_multiruns_run(inline, tmp_path):
    """The inline multirun examples, on the tiny adding task (their trials as written would read MNIST)."""
    from conftest import TINY

    text = (ROOT / "README.md").read_text()
    command = next(line for line in re.findall(r"`(python train.py -m [^`]+)`|^(python train.py -m [^\n#]+)", text, re.M)
                   for line in line if line.startswith(inline))
    args = shlex.split(command)[2:]
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, *TINY, "hydra.sweep.dir=" + str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    records = list(tmp_path.rglob("result.json"))
    assert records and all('"status": "completed"' in p.read_text() for p in records)


def example_loop() -> tuple[list[str], list[list[str]]]:
    """The cells and the per-cell command (as arguments after `python train.py -m`) of the README's example
    loop (`for cell in ...; do python train.py -m ... cell=$cell ...; done`)."""
    block = re.search(r"\*\*An example\*\*.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    block = block.replace("\\\n", " ")
    cells = re.search(r"for cell in ([\w ]+); do", block).group(1).split()
    command = re.search(r"do\s+(python train.py -m [^;]+); done", block).group(1)
    return cells, [shlex.split(command.replace("$cell", cell))[3:] for cell in cells]


@pytest.mark.slow
def test_the_readme_example_loop_launches_valid_trials_for_each_of_its_cells():
    """The example's loop, listed (as the preset commands are) for each cell it names: its trials pass the
    config check and land in the one folder its report command reads."""
    from sweeps.presets import compose_preset, trial_dir, trials
    from training import check_config

    cells, commands = example_loop()
    assert len(cells) >= 2
    report = re.search(r"python -m sweeps.report (\S+)", (ROOT / "README.md").read_text().split("**An example**")[1])
    for cell, args in zip(cells, commands):
        name, overrides = args[3], args[4:]
        launched = trials(name, overrides)
        assert len(launched) == int(next(o.split("=")[1] for o in overrides if o.startswith("hydra.sweeper.n_trials=")))
        for job in launched:
            cfg = compose_preset(name, [*overrides, *job])
            check_config(cfg)
            assert cfg.cell.name == cell
        assert str(trial_dir(name, [*overrides, *launched[0]])).startswith(report.group(1))


def benchmark_commands() -> list[str]:
    """Every benchmark command the README, sweeps/README.md and docs/ quote, in code blocks or inline
    (inline code may wrap across lines). They run for minutes to hours, so the test below parses them."""
    found = []
    for path in [ROOT / "README.md", ROOT / "sweeps" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text()
        lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
        inline = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))]
        for command in lines + inline:
            command = re.sub(r"^(\w+=\S+ )+", "", command.split(" #")[0].strip())  # leading VAR=value settings
            if command.startswith(("python -m benchmarks.", "bash benchmarks/gpu_check.sh")):
                found.append(command)
    return sorted(set(found))


def test_the_docs_quote_benchmark_commands():
    commands = benchmark_commands()
    assert len(commands) >= 8 and any("gpu_check.sh" in c for c in commands)


@pytest.mark.parametrize("command", benchmark_commands())
def test_every_benchmark_command_the_docs_quote_is_accepted(command):
    """Its flags exist and take the values given (argparse exits on anything else); gpu_check.sh's
    sections exist in the script."""
    words = shlex.split(command)
    if words[0] == "bash":
        script = (ROOT / words[1]).read_text()
        sections = set(re.findall(r"^  ([a-z]+)\)", script, re.M))
        assert set(words[2:]) <= sections, f"{command}: gpu_check.sh has sections {sorted(sections)}"
    else:
        module = importlib.import_module(words[2])
        module.parser().parse_args(words[3:])


def test_ci_runs_the_readmes_test_command_and_the_slow_tier_and_stops_at_a_failure():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    command = re.search(r"Run the tests.*?```bash\n(.*?)\n```", readme, re.S).group(1)
    fast = command.split("&&")[-1].strip()
    assert fast == "python -m pytest"
    lines = [line.strip() for line in ci.splitlines()]
    assert any(line.startswith(fast + " ") or line == fast for line in lines) and "set -euo pipefail" in lines
    assert any(line.startswith("python -m pytest -m slow") for line in lines)
    # the slow tier's browser test skips without Chromium: CI installs it, so there it runs
    assert any("apt-get install" in line and line.endswith(("chromium", "chromium >/dev/null")) for line in lines)


def test_the_layout_names_every_folder_and_module_and_nothing_that_is_gone():
    """README's Layout block against the tree: every top-level folder and every module of the packages it
    describes file by file is named, and every file name it gives exists where it says."""
    block = re.search(r"## Layout\n\n```\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    sections, folder = {}, None
    for line in block.splitlines():
        head = line[:20].strip()
        if head:
            folder = head
        sections[folder] = sections.get(folder, "") + " " + line[20:]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    top = {p.split("/")[0] + "/" for p in tracked if "/" in p and not p.startswith(".")}
    assert top <= set(sections) | {"hydra_plugins/"}, f"top-level folders the Layout omits: {top - set(sections)}"
    for package in ("training", "paths", "variants", "benchmarks"):
        files = {Path(p).name for p in tracked if p.startswith(f"{package}/") and p.count("/") == 1
                 and Path(p).suffix in (".py", ".sh") and Path(p).name != "__init__.py"}
        text = sections[f"{package}/"]
        assert {f for f in files if f not in text} == set(), f"{package}/ modules the Layout omits"
        named = set(re.findall(r"[\w.]+\.(?:py|sh)\b", text))
        assert named <= files | {"__init__.py"}, f"{package}/ files the Layout names that do not exist: {named - files}"
