"""The report's figures (sweeps/figures.py): every panel readable on its own."""

import matplotlib.pyplot as plt
from PIL import Image

from sweeps import figures


def test_the_panel_above_a_hidden_one_keeps_its_x_tick_labels():
    """Four variants in a 2 x 3 grid: the lower row's spare panels are hidden, so the two panels above them
    must show their own x tick labels and axis label (sharex gave them to the hidden panels)."""
    fig, axes = plt.subplots(2, 3, sharex=True, squeeze=False)
    figures._hide_spare_panels(axes, 4, "epoch")
    labelled = [ax.xaxis.get_tick_params()["labelbottom"] and ax.get_xlabel() == "epoch" for ax in axes.flat[:4]]
    assert labelled == [False, True, True, True] and not any(ax.get_visible() for ax in axes.flat[4:])
    plt.close(fig)


def test_learning_curves_draw_one_epoch_trials_as_points_and_colour_lines_by_learning_rate(tmp_path):
    curves = {"v": [([1], [10.0], [9.0]), ([1, 2, 3], [12.0, 11.0, 10.5], [11.5, 10.0, 9.0])]}
    path = tmp_path / "curves.png"
    figures.learning_curves(curves, "nll", path, lrs={"v": [1e-4, 1e-2]}, title="jsb: nll")
    assert Image.open(path).size[0] > 300
    assert not plt.get_fignums()  # closed after saving


def test_learning_curve_axes_hold_every_point(tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: saved.setdefault("fig", self))
    curves = {"v": [([1, 2, 3], [60.0, 12.0, 10.0], [58.0, 11.0, 9.0])]}
    figures.learning_curves(curves, "nll", tmp_path / "x.png")
    low, high = saved["fig"].axes[0].get_ylim()
    assert low <= 9.0 and high >= 60.0
    assert all(float(t).is_integer() for t in saved["fig"].axes[0].get_xticks())
