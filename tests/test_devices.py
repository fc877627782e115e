"""The same run on one device or several: split batches and populations give the same metrics,
and checkpoints move between device counts. Several CPU devices are made in a subprocess, through
`training.devices.configure_cpu_devices` (train.py's `speed.cpu_devices`), which must run before JAX starts."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from conftest import ROOT, compose_config, without_compile_cache
from training import train
from training.devices import available_cores, configure_cpu_devices
from training.population import train_population

POP = [f"lr={lr}" for lr in ("1e-3", "1e-2", "3e-2", "3e-3")]
NOISY = ["input_noise=0.5", "layers=2", "dropout=0.3", "epochs=2"]  # every random draw a run makes

FOUR_DEVICES = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    from training.devices import configure_cpu_devices
    assert configure_cpu_devices(4) == 4
    import jax
    from conftest import compose_config
    from training import train
    from training.population import train_population
    out = sys.argv[1]
    assert jax.device_count() == 4
    train(compose_config("epochs=1"), out + "/sharded")
    train_population([compose_config(o, "epochs=1") for o in %r], [f"{out}/pop{k}" for k in range(4)])
    train(compose_config("batch_size=18", "eval_batch_size=18"), out + "/eighteen")
    train(compose_config(*%r), out + "/noisy4")
    train(compose_config(*%r, "batch_size=10", "eval_batch_size=10"), out + "/noisy2")
    import training.split
    training.split.COLLECTIVE_ON_CPU = True  # the GPU/TPU path (shard_map + psum), here on CPU devices
    train(compose_config(*%r), out + "/collective4")

""" % (POP, NOISY, NOISY, NOISY))


@pytest.fixture(scope="module")
def four_device_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("four")
    env = without_compile_cache(dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_dump_to={out / 'xla'}"))  # every compiled program
    proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)  # ~3 min idle; >10 min on a loaded 2-core CI box
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout + proc.stderr


def result(path):
    return json.loads((path / "result.json").read_text())


@pytest.mark.slow
def test_a_run_split_over_four_devices_equals_the_single_device_run(four_device_runs, tmp_path):
    out, _ = four_device_runs
    sharded = result(out / "sharded")
    single = train(compose_config("epochs=1"), tmp_path / "single")
    assert sharded["device_count"] == 4 and single["device_count"] == 1
    assert sharded["platform"] == single["platform"] == "cpu"
    assert sharded["test"]["mse"] == pytest.approx(single["test"]["mse"], rel=1e-5)
    assert sharded["final"]["train"]["loss"] == pytest.approx(single["final"]["train"]["loss"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name, devices, batch", [("noisy4", 4, 16), ("noisy2", 2, 10), ("collective4", 4, 16)])
def test_input_noise_and_dropout_give_the_same_numbers_on_one_two_or_four_devices(four_device_runs, tmp_path, name,
                                                                                   devices, batch):
    """Noise and dropout are drawn per example (keyed by its row in the batch), never per device slice; the
    same holds for the collective (shard_map + psum) path GPUs and TPUs take (collective4)."""
    out, _ = four_device_runs
    split = result(out / name)
    single = train(compose_config(*NOISY, f"batch_size={batch}", f"eval_batch_size={batch}"), tmp_path)
    assert (split["device_count"], single["device_count"]) == (devices, 1)
    split_lines = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines()]
    single_lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(split_lines, single_lines, strict=True):
        for part in ("train", "valid", "test"):
            assert a[part]["loss"] == pytest.approx(b[part]["loss"], rel=1e-5), (a["epoch"], part)


@pytest.mark.slow
def test_a_population_in_a_four_device_process_equals_one_device(four_device_runs, tmp_path):
    out, _ = four_device_runs
    here = train_population([compose_config(o, "epochs=1") for o in POP], [tmp_path / f"p{k}" for k in range(4)])
    for k, r in enumerate(here):
        assert result(out / f"pop{k}")["test"]["mse"] == pytest.approx(r["test"]["mse"], rel=1e-5)


@pytest.mark.slow
def test_a_batch_that_does_not_divide_over_the_devices_runs_on_the_most_that_it_does(four_device_runs):
    out, log = four_device_runs
    assert result(out / "eighteen")["device_count"] == 3
    assert "batch sizes 18/18 split evenly over 3 of the 4 cpu devices; using 3 (a multiple of 4 uses them all)" in log


@pytest.mark.slow
def test_runs_over_several_cpu_devices_compile_no_collective_operation(four_device_runs):
    """XLA:CPU's in-process all-reduce deadlocked training (training/split.py); devices only exchange copies.
    Only the GPU/TPU path, forced onto CPU devices for the test (collective4), sums with an all-reduce."""
    out, _ = four_device_runs
    programs = list((out / "xla").glob("*after_optimizations.txt"))
    assert any("jit_slice_grads" in p.name for p in programs)  # the split run's programs were dumped
    collectives = ("all-reduce(", "all-gather(", "reduce-scatter(", "all-to-all(", "collective-permute(")
    has_collective = {p.name: any(c in p.read_text() for c in collectives) for p in programs}
    gpu_path = [name for name in has_collective if "jit_collective_" in name]
    assert gpu_path and all(has_collective[name] for name in gpu_path if "collective_train" in name)
    assert not [name for name, found in has_collective.items() if found and name not in gpu_path]


def test_the_cpu_device_count_is_fixed_once_jax_has_started(caplog):
    jax.devices()  # this test process has started JAX
    current = jax.device_count("cpu")
    with caplog.at_level(logging.WARNING, logger="odyssey"):
        assert configure_cpu_devices(current + 1) == current
    assert f"JAX already started with {current} CPU device(s)" in caplog.text
    assert configure_cpu_devices(current) == current  # the count in effect: no warning
    assert available_cores() >= 1


PINNED_FLAGS = textwrap.dedent("""
    import os, jax
    from training.devices import pin_matmul_kernels, xla_flags
    pin_matmul_kernels()
    before = os.environ.get("XLA_FLAGS")
    jax.devices()  # XLA reads the flags now
    os.environ.pop("XLA_FLAGS", None)
    pin_matmul_kernels()  # too late for this process: it must not claim a flag its backends never read
    print(before, os.environ.get("XLA_FLAGS"), xla_flags(), sep="|")
""")


@pytest.mark.parametrize("given, pinned", [
    (None, "--xla_cpu_multi_thread_eigen=false"),  # a plain `python train.py` computes what a sweep's trial does
    ("--xla_dump_to=dump", "--xla_dump_to=dump --xla_cpu_multi_thread_eigen=false"),  # other flags kept
    ("--xla_cpu_multi_thread_eigen=true", "--xla_cpu_multi_thread_eigen=true"),  # the user's choice wins
])
def test_every_process_pins_xla_cpus_matmul_kernels_before_jax_starts_unless_told_otherwise(given, pinned, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | ({"XLA_FLAGS": given} if given else {})
    proc = subprocess.run([sys.executable, "-c", PINNED_FLAGS], cwd=tmp_path, env=env | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"{pinned}|None|{pinned}"  # the records name what the backends read


@pytest.mark.parametrize("setting", [0, -2, "many", True])
def test_a_cpu_device_setting_other_than_auto_or_a_whole_number_from_one_is_refused(setting):
    with pytest.raises(ValueError, match=r"choose auto \(one per core\) or a whole number >= 1"):
        configure_cpu_devices(setting)


@pytest.mark.slow
def test_a_checkpoint_from_four_devices_resumes_on_one(four_device_runs, tmp_path):
    out, _ = four_device_runs
    resumed = train(compose_config("epochs=2"), out / "sharded")  # wrote epoch 1 on 4 devices
    straight = train(compose_config("epochs=2"), tmp_path / "straight")
    lines = (out / "sharded" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
    assert resumed["device_count"] == 1
    assert resumed["test"]["mse"] == pytest.approx(straight["test"]["mse"], rel=1e-5)


@pytest.mark.slow
def test_platform_can_be_forced_and_is_recorded(tmp_path):
    r = train(compose_config("platform=cpu"), tmp_path)
    assert (r["platform"], r["device_count"]) == ("cpu", 1)
    assert r["device_kind"]
