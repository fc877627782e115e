"""The report's figures, as PNG files: Greff et al. (2017) Fig. 3 (box plots), Fig. 4 (metric vs lr)
and the fANOVA shares as stacked bars. Each function takes plain numbers and a path, draws, saves."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REFERENCE, SIGNIFICANT, OTHER = "#888888", "#1f77b4", "#dddddd"  # Greff marks significant variants in blue


def _metric_axis(ax, values, label: str) -> None:
    """Log scale when a positive metric spans orders of magnitude (e.g. MSE with a few bad trials)."""
    values = np.asarray(values, float)
    if values.size and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)


def box_plots(all_trials: dict[str, list[float]], best: dict[str, list[float]], label: str, title: str,
              significant: set[str], path, reference: str = "v") -> None:
    """Greff's Fig. 3: test metric per variant over all trials (top) and the best 10 % (bottom)."""
    names = list(all_trials)
    fig, axes = plt.subplots(2, 1, figsize=(max(5, 0.8 * len(names) + 1.5), 6.5), sharex=True)
    for ax, groups, subtitle in ((axes[0], all_trials, "all trials"), (axes[1], best, "best 10 %")):
        parts = ax.boxplot([groups[n] for n in names], patch_artist=True, widths=0.6, showfliers=False,
                           medianprops={"color": "black"})
        for patch, name in zip(parts["boxes"], names):
            patch.set_facecolor(REFERENCE if name == reference else SIGNIFICANT if name in significant else OTHER)
            patch.set_alpha(0.8)
        for i, name in enumerate(names, start=1):  # the trials themselves: a box of three points says little
            ax.scatter(np.full(len(groups[name]), i) + np.linspace(-0.15, 0.15, len(groups[name])), groups[name],
                       s=6, color="black", alpha=0.4, zorder=3)
        _metric_axis(ax, np.concatenate([groups[n] for n in names]), label)
        ax.set_title(subtitle, fontsize=10)
    axes[1].set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    fig.suptitle(f"{title}\ndark: {reference}; blue: differs from {reference} (Welch, all trials, Bonferroni)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def metric_vs_lr(groups: dict[str, tuple[list[float], list[float]]], label: str, path) -> None:
    """Greff's Fig. 4: one small panel per variant, test metric against learning rate (log x)."""
    names = list(groups)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharex=True, sharey=True, squeeze=False)
    every = np.concatenate([np.asarray(groups[n][1], float) for n in names])
    for ax, name in zip(axes.flat, names):
        lrs, values = groups[name]
        ax.scatter(lrs, values, s=12, alpha=0.7, color=SIGNIFICANT)
        ax.set_xscale("log")
        ax.set_title(name, fontsize=10)
        _metric_axis(ax, every, label if ax in axes[:, 0] else "")
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def importance_bars(shares: dict[str, dict[str, float]], path) -> None:
    """fANOVA: one stacked bar per group of trials (all variants, then each), one colour per effect."""
    groups = list(shares)[::-1]  # matplotlib draws the first bar at the bottom
    effects = list(dict.fromkeys(k for s in shares.values() for k in s))
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(groups) + 1.2))
    left = np.zeros(len(groups))
    colors = plt.get_cmap("tab10")
    for i, effect in enumerate(effects):
        width = np.array([shares[g].get(effect, 0.0) for g in groups])
        ax.barh(groups, width, left=left, label=effect, color=OTHER if effect == "rest" else colors(i))
        left += width
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the test metric's variance (fANOVA)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curves(curves: dict[str, list[tuple[list[int], list[float], list[float]]]], label: str, path) -> None:
    """One panel per variant: each trial's validation metric (solid) and training loss-side metric (dotted)
    against the epoch, so under- and over-fitting and early stops can be seen."""
    names = list(curves)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), sharey=True, squeeze=False)
    # the axis spans the curves after their first two epochs: the untrained start would flatten the rest
    every = np.concatenate([np.asarray(v[2:] or v, float) for n in names for _, v, _ in curves[n]] or [np.zeros(1)])
    every = every[np.isfinite(every)] if np.isfinite(every).any() else np.zeros(1)
    colors = plt.get_cmap("tab10")
    for ax, name in zip(axes.flat, names):
        for i, (epochs, valid, train) in enumerate(curves[name]):
            ax.plot(epochs, valid, color=colors(i % 10), lw=1)
            ax.plot(epochs, train, color=colors(i % 10), lw=0.8, ls=":")
        ax.set_title(f"{name} ({len(curves[name])} trials)", fontsize=10)
        _metric_axis(ax, every, label if ax in axes[:, 0] else "")
        low, high = every.min(), every.max()
        ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.suptitle("solid: validation; dotted: training", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
