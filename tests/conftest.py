"""Shared test helpers: compose the real conf/ with overrides, shrunk to a tiny run."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import jax
import pytest
from hydra import compose, initialize_config_dir

import training  # noqa: F401  (registers the config schema)
from training.devices import pin_matmul_kernels

# As train.py does in every process before JAX starts: the tests' in-process runs compute what their train.py
# subprocesses (which inherit the flag) do, bit for bit.
pin_matmul_kernels()

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
# The real data sets: ODYSSEY_DATA_DIR, else ../shared/data beside the repository, when present.
SHARED_DATA = Path(os.environ.get("ODYSSEY_DATA_DIR") or ROOT.parent / "shared" / "data")

TINY = ["task=adding", "task.length=6", "task.train_size=64", "task.valid_size=32", "task.test_size=32",
        "hidden=8", "epochs=1", "batch_size=16", "eval_batch_size=32", "wandb.mode=disabled"]


# Every test process (train.py runs, multiruns, their workers, the xdist workers) compiles the same small
# programs over and over; JAX's persistent compilation cache lets each compile once, and, kept in pytest's
# cache folder between runs, lets the next run after a change recompile only what the change touched (README:
# the fast tier's first and next run). A cached program is the same executable (its key holds the program, the
# compile options, XLA_FLAGS and the jax version), so numbers do not change. Tests that read XLA's dumps, or
# kill a process at a moment that may fall mid-compile, run without it (a killed write leaves an entry cut
# short, which JAX then warns about on every run: `rm -rf .pytest_cache` empties it). It grows by ~9 MB per
# fast-tier run of new programs and is never pruned. JAX_COMPILATION_CACHE_DIR, when set, wins.
CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


def pytest_configure(config):
    cache = getattr(config, "cache", None)  # none under -p no:cacheprovider: then every program compiles
    if cache and CACHE_VARIABLES[0] not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
        try:
            folder = cache.mkdir("jax-compilation-cache")  # .pytest_cache/d/jax-compilation-cache
        except OSError:  # a read-only checkout: compile everything
            return
        os.environ[CACHE_VARIABLES[0]] = str(folder)  # the workers inherit the variables
        os.environ[CACHE_VARIABLES[1]] = "0"  # default 1 s: the tests' programs are smaller
        # This process imported jax before they were set: tell it too (its tests run here under pytest -n 0).
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def without_compile_cache(env: dict) -> dict:
    """A subprocess environment in which every program is compiled (and dumped, with --xla_dump_to)."""
    return {k: v for k, v in env.items() if k not in CACHE_VARIABLES}


@pytest.fixture(autouse=True)
def full_float32_matmuls():
    """GPUs multiply float32 matrices in TF32 by default; the tests compare float32 numbers to ~1e-5."""
    with jax.default_matmul_precision("float32"):
        yield


def compose_config(*overrides: str, tiny: bool = True):
    """The real config from conf/, with TINY first (when asked) so later overrides win."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=[*(TINY if tiny else []), *overrides])


@pytest.fixture
def tiny_config():
    return compose_config


def registered_cells(fast=("np", "gru", "srn"), where=None) -> list:
    """Every registered cell (variants.CELLS, so a new cell is tested without a line here), as pytest
    parameters: those in `fast` run by default, the others with the slow tests; `where(cell)`: only the
    cells it accepts (a cell built with 8 units), e.g. those that declare a speed path."""
    from variants import CELLS, make_cell

    chosen = [name for name in CELLS if where is None or where(make_cell(name, 8))]
    return [name if name in fast else pytest.param(name, marks=pytest.mark.slow) for name in chosen]


def declares(path: str):
    """A `where` for registered_cells: the cells that declare the optional speed path `path`."""
    return lambda cell: path in cell.declared_paths()


def shared_data(sub: str) -> Path:
    """A real data set folder, or skip the test where ../shared/data is not present."""
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"{path} not present (real data sets live in ../shared/data)")
    return path


SMALL_FORESTS = {"TREES": 128, "FANOVA_RESAMPLES": 6, "FANOVA_RESAMPLE_TREES": 32}


@contextlib.contextmanager
def small_forests():
    """Reports on synthetic records with 128-tree fANOVA forests and 6 bootstrap resamples of 32 trees (the
    report's own: 1024, and 30 of 64). What those records were built to show (lr drives the metric, by far)
    stands out at any of these sizes; how far the forest's size and seed move the shares is tested on its
    own (test_report.py: test_the_importances_do_not_hang_on_the_forests_seed, at the report's sizes).
    Measured: the report fixture of test_report.py took 21 s at the report's sizes under a load of 2."""
    from sweeps import evidence

    with pytest.MonkeyPatch.context() as patch:
        for name, value in SMALL_FORESTS.items():
            patch.setattr(evidence, name, value)
        yield
