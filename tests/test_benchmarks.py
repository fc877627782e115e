"""Every benchmark the docs quote runs end to end, in a configuration small enough for CI.

tests/test_readme.py parses each quoted command with its script's parser; this runs each script as its
command line does (`python -m benchmarks.<name> ...`) on tiny sizes, so a benchmark cannot silently break
between the sessions that measure with it. sweep_throughput.py (whole train.py processes) and gpu_check.sh
(a GPU) are parsed only.

Each runs in a process of its own: a benchmark starts JAX with one CPU device per core (speed.cpu_devices
auto), which a process cannot undo, so run in the test process it would leave the tests that come after it on
the same pytest worker with two devices where they expect one (tests/test_devices.py failed so).
"""

import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # each runs a benchmark script: minutes in all

SMOKE = {
    "benchmarks.throughput": ["--cells", "np", "--shapes", "row", "--steps", "1", "--rounds", "1", "--no-torch",
                              "--fused-gradient", "false"],
    "benchmarks.cpu_step": ["--batch", "4", "--hidden", "8", "--length", "16", "--rounds", "1", "--reps", "1",
                            "--keep-freed-memory"],
    "benchmarks.malloc": ["--shapes", "row", "--rounds", "1", "--steps", "1", "--fused-gradient", "false"],
    "benchmarks.population": ["--cell", "np", "--hidden", "8", "--batch", "8", "--sizes", "2", "--steps", "1"],
}


@pytest.mark.parametrize("module", list(SMOKE))
def test_each_benchmark_runs_and_prints_its_table(module):
    proc = subprocess.run([sys.executable, "-m", module, *SMOKE[module]], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|---" in out, out  # a markdown table
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) >= 2, out  # its header and at least one measured row


def test_the_test_process_keeps_one_cpu_device_after_the_benchmarks():
    """What running them in-process broke: this process's JAX is as the device tests expect it."""
    import jax

    assert all(d.platform != "cpu" for d in jax.devices()) or len(jax.devices("cpu")) == 1
