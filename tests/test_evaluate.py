"""python -m training.evaluate: a run's checkpoint evaluated again gives the figures its record holds."""

import json

import pytest

from conftest import compose_config
from training import train
from training.evaluate import evaluate_run, main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    return out, train(compose_config("epochs=3", "lr=0.1"), out)  # best epoch 1 of 3 (tests/test_train.py)


def test_the_best_checkpoint_gives_the_records_test_figure_and_the_latest_the_last_epochs(run):
    run_dir, result = run
    assert result["best_epoch"] == 1 and result["epochs_completed"] == 3
    metrics, epoch = evaluate_run(run_dir)
    assert epoch == 1 and metrics["mse"] == pytest.approx(result["test"]["mse"], rel=1e-6)
    metrics, epoch = evaluate_run(run_dir, split="valid", checkpoint="latest")
    assert epoch == 3 and metrics["mse"] == pytest.approx(result["final"]["valid"]["mse"], rel=1e-6)


def test_the_command_prints_the_figure_beside_the_records(run, capsys):
    run_dir, result = run
    main([str(run_dir)])
    out = capsys.readouterr().out
    assert out.startswith("test at epoch 1 (best checkpoint): ") and f"the record: loss={result['test']['loss']:.6g}" in out


def test_a_folder_without_checkpoints_names_what_it_looked_for(tmp_path, capsys):
    (tmp_path / "result.json").write_text(json.dumps({"status": "failed", "config": {}}))
    with pytest.raises(SystemExit, match=r"checkpoints/best holds no checkpoint \(looked for the best one"):
        main([str(tmp_path)])
    assert not (tmp_path / "checkpoints").exists()  # nothing created
    with pytest.raises(SystemExit, match="unknown option 'splt'.*split=train|valid|test"):
        main([str(tmp_path), "splt=test"])
    with pytest.raises(SystemExit, match="result.json: no run record"):
        main([str(tmp_path / "nowhere")])
