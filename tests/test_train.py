"""train(cfg) leaves a complete record of every run: metrics per epoch, the result, wandb, checkpoints
that a killed run resumes from to the same numbers, and `diverged` instead of a crash."""

from __future__ import annotations

import json
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, compose_config, shared_data
from tasks.mnist import MNISTTask
from test_mnist import write_mnist
from training import train

def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def refuse_non_json(constant: str):
    raise ValueError(f"{constant} is not JSON (RFC 8259)")


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory` with its bytes and modification time."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def run_train_py(*overrides: str, **kwargs) -> subprocess.Popen:
    """`python train.py <overrides>` in the repository, as a user would run it."""
    return subprocess.Popen([sys.executable, "train.py", *overrides], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


# ---------------------------------------------------------------------------------------------------
# The record of one tiny run (SRN on the adding problem: D=2 inputs, H=8 units, O=1 output)


@pytest.fixture(scope="module")
def srn_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("srn")
    cfg = compose_config("cell=srn", "epochs=3")
    result = train(cfg, run_dir)
    return cfg, run_dir, result


def test_result_json_records_a_completed_run(srn_run):
    cfg, run_dir, returned = srn_run
    result = json.loads((run_dir / "result.json").read_text())
    assert result == json.loads(json.dumps(returned))  # train() returns what it recorded
    assert result["status"] == "completed"
    assert (result["cell"], result["task"], result["run_dir"]) == ("srn", "adding", str(run_dir))
    assert result["epochs_completed"] == 3 and result["best_epoch"] in (1, 2, 3)
    assert result["objective"] == {"name": "mse", "mode": "min"}
    for split in ("valid", "test"):
        assert set(result[split]) == {"loss", "mse"}
        assert all(np.isfinite(v) for v in result[split].values())
    assert set(result["final"]) == {"train", "valid", "test"}
    assert result["wall_seconds"] > 0
    assert result["platform"] == "cpu" and result["device_kind"] and result["device_count"] >= 1
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    made = result["provenance"]  # which code made it, where: a study's records are audited by these
    assert made["commit"] == head and isinstance(made["dirty"], bool) and made["host"] and "cores" in made["cpu"]
    assert set(made["versions"]) == {"python", "jax", "flax", "optax"}
    assert result["config"]["cell"]["name"] == "srn" and result["config"]["hidden"] == 8
    assert result["config"]["optimizer"]["name"] == "adam" and result["config"]["lr"] == 1e-3
    assert result["speed_paths"] == {"unroll": 2, "hoist_projection": False, "fused_gradient": False, "kernel": False,
                                     "parallel_scan": False}  # auto's srn on CPU


def test_num_params_counts_the_recurrent_layer_and_the_head(srn_run):
    _, _, result = srn_run
    D, H, O = 2, 8, 1
    srn = D * H + H * H + H  # W, R, b
    head = H * O + O
    assert result["num_params"] == srn + head == 97


def test_metrics_jsonl_has_one_line_per_epoch_with_all_splits(srn_run):
    cfg, run_dir, result = srn_run
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    steps_per_epoch = cfg.task.train_size // cfg.batch_size
    assert [line["step"] for line in lines] == [steps_per_epoch * e for e in (1, 2, 3)]
    for line in lines:
        assert {"loss", "mse", "grad_norm"} <= set(line["train"])
        assert set(line["valid"]) == set(line["test"]) == {"loss", "mse"}
        assert line["seq_per_s"] > 0 and 0 < line["train_seconds"] <= line["epoch_seconds"]
    best = lines[result["best_epoch"] - 1]
    assert result["valid"] == best["valid"] and result["test"] == best["test"]
    assert best["valid"]["mse"] == min(line["valid"]["mse"] for line in lines)  # selected on valid
    assert result["final"] == {k: lines[-1][k] for k in ("train", "valid", "test")}


def test_rerunning_a_finished_run_returns_its_record_and_changes_nothing(srn_run):
    cfg, run_dir, result = srn_run
    before = snapshot(run_dir)
    assert train(cfg, run_dir) == json.loads(json.dumps(result))
    assert snapshot(run_dir) == before


def test_a_record_from_before_a_config_key_existed_or_under_another_speed_path_is_still_this_run(srn_run, tmp_path):
    """A study rerun by newer code (speed.fused_gradient did not exist) or with another speed path that
    gives the same numbers (speed.unroll) skips its finished trials instead of refusing them."""
    cfg, run_dir, result = srn_run
    old_dir = tmp_path / "old"
    shutil.copytree(run_dir, old_dir)
    old = json.loads((old_dir / "result.json").read_text())
    del old["config"]["speed"]["fused_gradient"]
    (old_dir / "result.json").write_text(json.dumps(old))
    before = snapshot(old_dir)
    assert train(compose_config("cell=srn", "epochs=3", "speed.unroll=3"), old_dir)["status"] == "completed"
    assert snapshot(old_dir) == before
    with pytest.raises(ValueError, match=r"changed: speed.dtype float32 -> bfloat16"):  # bfloat16 changes the numbers
        train(compose_config("cell=srn", "epochs=3", "speed.dtype=bfloat16"), old_dir)


def test_a_record_with_cell_keys_the_cell_does_not_read_is_still_this_run(srn_run, tmp_path):
    """conf/cell/srn.yaml once listed forget_bias and switches, which the SRN never read."""
    cfg, run_dir, result = srn_run
    old_dir = tmp_path / "old"
    shutil.copytree(run_dir, old_dir)
    old = json.loads((old_dir / "result.json").read_text())
    old["config"]["cell"] |= {"forget_bias": 1.0, "switches": {}}
    (old_dir / "result.json").write_text(json.dumps(old))
    before = snapshot(old_dir)
    assert train(compose_config("cell=srn", "epochs=3"), old_dir)["status"] == "completed"
    assert snapshot(old_dir) == before


def test_resuming_into_a_directory_of_another_config_is_refused_and_changes_nothing(srn_run):
    cfg, run_dir, _ = srn_run
    before = snapshot(run_dir)
    assert "checkpoints/3/_CHECKPOINT_METADATA" in before
    with pytest.raises(ValueError, match=r"different config \(changed: hidden 8 -> 16\).*hydra\.run\.dir"):
        train(compose_config("cell=srn", "epochs=3", "hidden=16"), run_dir)
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_train_on_tiny_mnist_files_found_through_odyssey_data_dir(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data")
    monkeypatch.setenv("ODYSSEY_DATA_DIR", str(tmp_path / "data"))
    cfg = compose_config("task=mnist", "task.valid_size=10", "hidden=8", "epochs=1", "batch_size=16",
                         "eval_batch_size=16", "wandb.mode=disabled", tiny=False)
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "completed" and result["config"]["data_dir"] == str(tmp_path / "data")
    assert result["objective"] == {"name": "accuracy", "mode": "max"}
    assert set(result["test"]) == {"loss", "accuracy"}
    assert result["test"]["accuracy"] * 20 == pytest.approx(round(result["test"]["accuracy"] * 20))  # of 20 images
    D, H, O = 28, 8, 10
    vanilla_lstm = D * 4 * H + H * 4 * H + 4 * H + 3 * H  # W_{z,i,f,o}, R_{z,i,f,o}, b_{z,i,f,o}, p_{i,f,o}
    assert result["num_params"] == vanilla_lstm + H * O + O


# ---------------------------------------------------------------------------------------------------
# wandb, offline: read back what the run logged from its .wandb file


def wandb_records(run_folder: Path):
    """The protobuf records of an offline run's `run-<id>.wandb` file.

    wandb 0.31 has no public reader for it (wandb-core writes it; `wandb sync` uploads it). The file is a
    LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB blocks of chunks, each with a
    7-byte header (crc32, little-endian length, type: 1 full, 2 first, 3 middle, 4 last).
    """
    from wandb.proto import wandb_internal_pb2

    (path,) = run_folder.glob("run-*.wandb")
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", f"{path} is not a wandb log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def logged(run_folder: Path) -> dict:
    """What an offline run holds: its run record, history rows, summary and exit code."""
    out = {"history": [], "summary": {}, "exit_code": None, "run": None, "kinds": []}
    for r in wandb_records(run_folder):
        kind = r.WhichOneof("record_type")
        out["kinds"].append(kind)
        if kind == "run":
            out["run"] = r.run
        elif kind == "history":  # a history row also sets the summary of its keys, as wandb's dashboard shows it
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
            out["summary"].update({k: v for k, v in out["history"][-1].items() if not k.startswith("_")})
        elif kind == "summary":
            out["summary"].update({i.key: json.loads(i.value_json) for i in r.summary.update if i.key})
        elif kind == "exit":
            out["exit_code"] = r.exit.exit_code
    return out


@pytest.fixture(scope="module")
def wandb_runs(tmp_path_factory):
    """A run that fails after wandb started, then a run that completes, in one process (as in a multirun)."""
    import wandb

    base = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"WANDB_DIR": str(base), "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
                           "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true",
                           "WANDB__DISABLE_STATS": "true", "WANDB__DISABLE_MACHINE_INFO": "true"}.items():
            mp.setenv(key, value)
        mp.delenv("WANDB_MODE", raising=False)
        failing = compose_config("wandb.mode=offline", "batch_size=128")  # more than the 64 training sequences
        with pytest.raises(ValueError, match="batch_size=128 is larger than the training set"):
            train(failing, base / "failed")
        cfg = compose_config("wandb.mode=offline", "epochs=3", "lr=0.1", "wandb.tags=[smoke]")  # best epoch 1 of 3
        result = train(cfg, base / "completed")
        wandb.teardown()  # finish() returns before wandb-core has flushed the .wandb files; this waits
    return {"failed": base / "failed", "completed": base / "completed", "result": result}


def offline_folder(run_dir: Path) -> Path:
    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    return folder


@pytest.mark.slow
def test_wandb_offline_holds_the_metrics_config_and_name(wandb_runs):
    result, run_dir = wandb_runs["result"], wandb_runs["completed"]
    folder = offline_folder(run_dir)
    assert folder.name.endswith(result["wandb_id"])
    wb = logged(folder)
    assert wb["run"] is not None, f"no run record in {folder}: {wb['kinds']}"
    assert wb["run"].display_name == "v-adding-lr0.1-h8-s0"
    assert set(wb["run"].tags) == {"cell:v", "task:adding", "smoke"}
    config = {u.key: json.loads(u.value_json) for u in wb["run"].config.update}
    assert config["cell"]["name"] == "v" and config["lr"] == 0.1 and config["hidden"] == 8
    assert config["task"] == result["config"]["task"]
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert sorted(h["epoch"] for h in wb["history"]) == [1, 2, 3]
    for h in wb["history"]:
        line = lines[h["epoch"] - 1]
        assert h["valid/mse"] == pytest.approx(line["valid"]["mse"])
        assert h["test/mse"] == pytest.approx(line["test"]["mse"])
        assert h["train/loss"] == pytest.approx(line["train"]["loss"])
        assert h["seq_per_s"] == pytest.approx(line["seq_per_s"])
    assert wb["summary"]["status"] == "completed" and wb["summary"]["num_params"] == result["num_params"]
    # the dashboard's test figure is result.json's (the best validation epoch's); the last epoch's is final/
    assert result["best_epoch"] < result["epochs_completed"], "the run must not end on its best epoch, or this shows nothing"
    assert wb["summary"]["test/mse"] != pytest.approx(lines[-1]["test"]["mse"])
    assert wb["summary"]["test/mse"] == pytest.approx(result["test"]["mse"])
    assert wb["summary"]["best_epoch"] == result["best_epoch"]
    assert wb["summary"]["final/test/mse"] == pytest.approx(lines[-1]["test"]["mse"])
    assert wb["exit_code"] == 0


@pytest.mark.slow
def test_wandb_run_is_closed_when_training_fails(wandb_runs):
    record = json.loads((wandb_runs["failed"] / "result.json").read_text())
    assert record["status"] == "failed" and "batch_size=128" in record["error"] and record["traceback"]
    # finished by train() as failed (a run left open would be closed by wandb.teardown() with exit code 0)
    assert logged(offline_folder(wandb_runs["failed"]))["exit_code"] == 1
    assert wandb_runs["result"]["status"] == "completed"  # and the next run in the process works


# ---------------------------------------------------------------------------------------------------
# Resumption after SIGKILL, and divergence, through `python train.py` as a user runs it

# 1000 steps per epoch (~0.5 s once compiled), so the run is still going when its first checkpoint
# lands; the SRN compiles fastest
RESUMABLE = ["cell=srn", "task=adding", "task.length=10", "task.train_size=16000", "task.valid_size=64",
             "task.test_size=64", "hidden=8", "epochs=3", "batch_size=16", "eval_batch_size=64", "wandb.mode=disabled",
             "speed.cpu_devices=1",  # as the in-process reference: same device count, same floating-point sums
             "input_noise=0.5"]  # the random stream must resume where it stopped


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_numbers_as_an_uninterrupted_one(tmp_path):
    reference = train(compose_config(*RESUMABLE, tiny=False), tmp_path / "uninterrupted")

    run_dir = tmp_path / "killed"
    command = [*RESUMABLE, f"hydra.run.dir={run_dir}"]
    proc = run_train_py(*command)
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "1").exists():
        assert proc.poll() is None, f"train.py ended before its first checkpoint:\n{proc.stdout.read()}"
        assert time.time() < deadline, "no checkpoint after 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    killed = json.loads((run_dir / "result.json").read_text())
    assert killed["status"] == "running", "the run finished before it was killed; make its epochs longer"
    first_epoch = (run_dir / "metrics.jsonl").read_text().splitlines()[0]

    resumed = run_train_py(*command)
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out
    assert "resuming" in out

    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs_completed"] == 3
    assert result["best_epoch"] == reference["best_epoch"]
    for key in ("valid", "test"):
        assert result[key] == reference[key]  # bit for bit: the same kernels in and out of process
    for key in ("train", "valid", "test"):
        assert result["final"][key] == reference["final"][key]
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert (run_dir / "metrics.jsonl").read_text().splitlines()[0] == first_epoch  # epoch 1 was not redone


@pytest.mark.slow
def test_an_absurd_learning_rate_ends_as_diverged_and_train_py_exits_normally(tmp_path):
    run_dir = tmp_path / "diverged"
    proc = run_train_py("cell=srn", "task=adding", "task.length=6", "task.train_size=64", "task.valid_size=32",
                        "task.test_size=32", "hidden=8", "epochs=3", "batch_size=16", "wandb.mode=disabled",
                        "optimizer=sgd", "lr=1e8", f"hydra.run.dir={run_dir}")
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "diverged"
    assert result["config"]["lr"] == 1e8 and result["config"]["optimizer"]["name"] == "sgd"
    lines = [json.loads(line, parse_constant=refuse_non_json) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["diverged"] is True and lines[-1]["train"]["loss"] is None  # strict JSON: null, and said so
    assert "train.loss" in lines[-1]["non_finite"]
    json.loads((run_dir / "result.json").read_text(), parse_constant=refuse_non_json)
    assert result["epochs_completed"] == len(lines) - 1  # the diverged epoch is logged, not completed


# ---------------------------------------------------------------------------------------------------
# The real files


@pytest.mark.slow
def test_a_short_run_on_real_mnist_is_scored_on_the_10000_test_images(tmp_path, monkeypatch):
    data = shared_data("mnist")
    cfg = compose_config("task=mnist", f"data_dir={data}", "hidden=16", "epochs=1", "max_steps_per_epoch=5",
                         "wandb.mode=disabled", tiny=False)
    loaded = []  # the splits the run trained and was scored on

    def load(self, *args, _load=MNISTTask.load):
        loaded.append(_load(self, *args))
        return loaded[-1]

    monkeypatch.setattr(MNISTTask, "load", load)
    result = train(cfg, tmp_path)
    assert {k: len(v["y"]) for k, v in loaded[0].items()} == {"train": 55_000, "valid": 5_000, "test": 10_000}
    assert result["status"] == "completed"
    accuracy = result["test"]["accuracy"]
    assert 0.0 < accuracy < 1.0
    assert accuracy * 10_000 == pytest.approx(round(accuracy * 10_000), abs=1e-3)  # a count of 10,000 images
    line = read_jsonl(tmp_path / "metrics.jsonl")[0]
    assert line["step"] == 5
