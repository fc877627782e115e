"""TensorBoard without an account: every run writes event files that equal its metrics.jsonl."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import compose_config
from training import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    train(compose_config("epochs=2", "tensorboard=true", "lr=0.01", "hidden=8"), out)
    return out


def events(run_dir):
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return acc


def test_the_event_files_hold_every_epochs_figures_of_metrics_jsonl(run_dir):
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    acc = events(run_dir)
    for key, part, metric in [("train/loss", "train", "loss"), ("valid/mse", "valid", "mse"), ("test/mse", "test", "mse")]:
        scalars = acc.Scalars(key)
        assert [s.step for s in scalars] == [line["epoch"] for line in lines]
        assert [s.value for s in scalars] == pytest.approx([line[part][metric] for line in lines], rel=1e-6)
    assert [s.value for s in acc.Scalars("seq_per_s")] == pytest.approx([line["seq_per_s"] for line in lines], rel=1e-6)


def test_the_run_carries_its_hyperparameters_for_the_hparams_tab(run_dir):
    content = events(run_dir).PluginTagToContent("hparams")
    info = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert info.hparams["lr"].number_value == pytest.approx(0.01)
    assert info.hparams["hidden"].number_value == 8 and info.hparams["cell.name"].string_value == "v"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"valid/mse", "test/mse"}


def test_no_event_files_when_switched_off(tmp_path):
    train(compose_config("tensorboard=false"), tmp_path / "run")
    assert (tmp_path / "run" / "result.json").exists() and not (tmp_path / "run" / "tensorboard").exists()
