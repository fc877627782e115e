"""The same run on one device or several: sharded batches and populations give the same metrics,
and checkpoints move between device counts. Several CPU devices are simulated in a subprocess
(XLA_FLAGS=--xla_force_host_platform_device_count=4 must be set before JAX starts)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, compose_config
from training import train
from training.population import train_population

POP = [f"lr={lr}" for lr in ("1e-3", "1e-2", "3e-2", "3e-3")]

FOUR_DEVICES = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, "tests")
    import jax
    from conftest import compose_config
    from training import train
    from training.population import train_population
    out = sys.argv[1]
    assert jax.device_count() == 4
    train(compose_config("epochs=1"), out + "/sharded")
    train_population([compose_config(o, "epochs=1") for o in %r], [f"{out}/pop{k}" for k in range(4)])
    try:
        train(compose_config("batch_size=18"), out + "/bad")
    except ValueError as e:
        print("ERROR:", e)
""" % (POP,))


@pytest.fixture(scope="module")
def four_device_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("four")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def result(path):
    return json.loads((path / "result.json").read_text())


@pytest.mark.slow
def test_a_run_sharded_over_four_devices_equals_the_single_device_run(four_device_runs, tmp_path):
    out, _ = four_device_runs
    sharded = result(out / "sharded")
    single = train(compose_config("epochs=1"), tmp_path / "single")
    assert sharded["device_count"] == 4 and single["device_count"] == 1
    assert sharded["platform"] == single["platform"] == "cpu"
    assert sharded["test"]["mse"] == pytest.approx(single["test"]["mse"], rel=1e-5)
    assert sharded["final"]["train"]["loss"] == pytest.approx(single["final"]["train"]["loss"], rel=1e-5)


@pytest.mark.slow
def test_a_population_sharded_over_four_devices_equals_one_device(four_device_runs, tmp_path):
    out, _ = four_device_runs
    here = train_population([compose_config(o, "epochs=1") for o in POP], [tmp_path / f"p{k}" for k in range(4)])
    for k, r in enumerate(here):
        assert result(out / f"pop{k}")["test"]["mse"] == pytest.approx(r["test"]["mse"], rel=1e-5)


@pytest.mark.slow
def test_a_batch_that_does_not_divide_over_the_devices_is_refused_clearly(four_device_runs):
    _, stdout = four_device_runs
    assert "ERROR: batch_size=18 does not divide evenly over 4 devices; choose a multiple of 4" in stdout


@pytest.mark.slow
def test_a_checkpoint_from_four_devices_resumes_on_one(four_device_runs, tmp_path):
    out, _ = four_device_runs
    resumed = train(compose_config("epochs=2"), out / "sharded")  # wrote epoch 1 on 4 devices
    straight = train(compose_config("epochs=2"), tmp_path / "straight")
    lines = (out / "sharded" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
    assert resumed["device_count"] == 1
    assert resumed["test"]["mse"] == pytest.approx(straight["test"]["mse"], rel=1e-5)


def test_platform_can_be_forced_and_is_recorded(tmp_path):
    r = train(compose_config("platform=cpu"), tmp_path)
    assert (r["platform"], r["device_count"]) == ("cpu", 1)
    assert r["device_kind"]
