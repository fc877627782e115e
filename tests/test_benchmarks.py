"""Every benchmark the docs quote runs end to end, in a configuration small enough for CI.

tests/test_readme.py parses each quoted command with its script's parser; this runs each script's
`main` on tiny sizes, so a benchmark cannot silently break between the sessions that measure with it.
sweep_throughput.py (whole train.py processes) and gpu_check.sh (a GPU) are parsed only.
"""

import importlib

import pytest

pytestmark = pytest.mark.slow  # each runs a benchmark script: minutes in all

SMOKE = {
    "benchmarks.throughput": ["--cells", "np", "--shapes", "row", "--steps", "1", "--rounds", "1", "--no-torch",
                              "--fused-gradient", "false"],
    "benchmarks.cpu_step": ["--batch", "4", "--hidden", "8", "--rounds", "1", "--reps", "1", "--keep-freed-memory"],
    "benchmarks.malloc": ["--shapes", "row", "--rounds", "1", "--steps", "1", "--fused-gradient", "false"],
    "benchmarks.population": ["--cell", "np", "--hidden", "8", "--batch", "8", "--sizes", "2", "--steps", "1"],
}


@pytest.mark.parametrize("module", list(SMOKE))
def test_each_benchmark_runs_and_prints_its_table(module, capsys):
    importlib.import_module(module).main(SMOKE[module])
    out = capsys.readouterr().out
    assert "|---" in out, out  # a markdown table
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) >= 2, out  # its header and at least one measured row

