"""The adding problem: generated from the seed, two marked values, the target is their sum."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import compose_config
from tasks import make_task
from tasks import task_from_conf


def test_each_sequence_marks_one_value_in_each_half_and_the_target_is_their_sum():
    task = task_from_conf("adding", length=10, train_size=200, valid_size=30, test_size=40)
    splits = task.load(None, seed=0)
    shapes = {k: v["x"].shape for k, v in splits.items()}
    assert shapes == {"train": (200, 10, 2), "valid": (30, 10, 2), "test": (40, 10, 2)}
    for s in splits.values():
        values, markers = s["x"][..., 0], s["x"][..., 1]
        assert ((0 <= values) & (values <= 1)).all()
        assert set(np.unique(markers)) == {0.0, 1.0}
        assert (markers[:, :5].sum(1) == 1).all() and (markers[:, 5:].sum(1) == 1).all()
        np.testing.assert_allclose(s["y"], (values * markers).sum(1), rtol=1e-6)
        assert (s["lengths"] == 10).all()


def test_the_data_follow_the_seed():
    task = task_from_conf("adding", length=8, train_size=20, valid_size=5, test_size=5)
    a, b, c = task.load(None, seed=0), task.load(None, seed=0), task.load(None, seed=1)
    np.testing.assert_array_equal(a["train"]["x"], b["train"]["x"])
    assert not np.array_equal(a["train"]["x"], c["train"]["x"])
    assert not np.array_equal(a["train"]["x"][:5], a["test"]["x"])  # each split draws its own sequences


def test_always_predicting_one_scores_the_known_baseline_of_about_one_sixth():
    test = task_from_conf("adding", length=50, test_size=20000).load(None, seed=0)["test"]
    batch = {"y": jnp.asarray(test["y"]), "mask": jnp.ones(len(test["y"]))}
    total, count = task_from_conf("adding").metrics(jnp.ones((len(test["y"]), 1)), batch)["mse"]
    assert float(total / count) == pytest.approx(1 / 6, abs=0.01)


def test_padding_rows_do_not_count():
    batch = {"y": jnp.array([1.0, 5.0]), "mask": jnp.array([1.0, 0.0])}
    m = task_from_conf("adding").metrics(jnp.array([[2.0], [0.0]]), batch)
    assert float(m["mse"][0] / m["mse"][1]) == 1.0


def test_the_yaml_builds_the_task_and_a_too_short_length_is_refused():
    cfg = compose_config("task.length=7")
    task = make_task(cfg.task, cfg.download)
    assert (task.length, task.sizes["train"]) == (7, 64)
    with pytest.raises(ValueError, match="task.length must be at least 2"):
        make_task(compose_config("task.length=1").task, download=False)
