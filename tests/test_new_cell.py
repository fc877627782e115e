"""A cell from outside Odyssey: docs/cells.md's module and yaml, exactly as the page shows them, checked as
the registry checks every cell, trained one epoch through train.py and reported by sweeps.report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, TINY

PAGE = (ROOT / "docs" / "cells.md").read_text()
(MODULE,) = re.findall(r"```python\n(.*?)```", PAGE, re.S)
(YAML,) = re.findall(r"```yaml\n(.*?)```", PAGE, re.S)
NAME = re.search(r"^name: (\S+)", YAML, re.M).group(1)
TARGET = re.search(r"^_target_: (\S+)", YAML, re.M).group(1)


@pytest.fixture
def outside(tmp_path):
    """The page's module and yaml in a folder of their own, as a user would keep them."""
    (tmp_path / f"{TARGET.split('.')[0]}.py").write_text(MODULE)
    (tmp_path / "conf" / "cell").mkdir(parents=True)
    (tmp_path / "conf" / "cell" / f"{NAME}.yaml").write_text(YAML)
    return tmp_path


@pytest.fixture
def registered(outside, monkeypatch):
    """The page's cell imported and registered in this process, and forgotten afterwards."""
    from variants import registry

    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    monkeypatch.syspath_prepend(str(outside))
    module = TARGET.split(".")[0]
    yield registry.entry(NAME, TARGET)
    sys.modules.pop(module, None)


def test_the_pages_cell_equals_its_reference_and_names_its_parameters_as_every_registered_cell(registered):
    """Its NumPy reference, step by step and over a sequence, and its parameter tree."""
    import test_cells

    test_cells.test_one_step_equals_the_reference(NAME)
    test_cells.test_a_sequence_through_the_layer_equals_the_reference(NAME)
    test_cells.test_parameter_tree_names_and_shapes(NAME)


@pytest.mark.slow
def test_every_speed_path_of_the_pages_cell_equals_its_plain_scan(registered):
    """As every registered cell's, in the slow tier (it compiles every path: 7 s of the fast tier's cold run)."""
    import test_speed_settings

    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)  # test_speed_settings' data: B=4, T=5, D=3
    test_speed_settings.test_unroll_and_hoisting_give_the_same_outputs_and_gradients(NAME, True, (x, np.full(4, 5), np.array([5, 2, 4, 1])))


@pytest.mark.slow
def test_the_pages_cell_trains_through_train_py_and_shows_in_the_report(outside):
    runs = outside / "runs"
    proc = subprocess.run(
        [sys.executable, "train.py", f"cell={NAME}", f"hydra.searchpath=[file://{outside / 'conf'}]", *TINY,
         f"hydra.run.dir={runs / NAME}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(outside)}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((runs / NAME / "result.json").read_text())
    assert result["status"] == "completed" and result["cell"] == NAME
    assert result["config"]["cell"] == {"name": NAME, "_target_": TARGET, "kernel_init": "glorot_uniform",
                                        "recurrent_init": "orthogonal", "leak": 0.5}  # only the keys it reads
    D, H, O = 2, 8, 1  # the adding problem, TINY's width, one output
    assert result["num_params"] == D * H + H * H + H + H * O + O
    report = subprocess.run([sys.executable, "-m", "sweeps.report", str(runs)], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert report.returncode == 0, report.stderr[-2000:]
    assert f"| {NAME} |" in (runs / "report" / "report.md").read_text()


def test_a_wrong_value_for_the_pages_cells_own_key_is_refused_before_anything_runs(outside):
    proc = subprocess.run(
        [sys.executable, "train.py", f"cell={NAME}", f"hydra.searchpath=[file://{outside / 'conf'}]", "cell.leak=abc", *TINY,
         f"hydra.run.dir={outside / 'run'}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(outside)}, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "cell.leak='abc' of cell 'leaky' must be a float" in proc.stdout + proc.stderr
