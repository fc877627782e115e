"""The report's figures, as PNG files: Greff et al. (2017) Fig. 3 (box plots), Fig. 4 (metric vs lr)
and the fANOVA shares as stacked bars. Each function takes plain numbers and a path, draws, saves."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only, no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
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
              significant: set[str], path, reference: str = "v", paired_significant: set[str] | None = None) -> None:
    """Greff's Fig. 3: test metric per variant over all trials (top) and the best 10 % (bottom). Blue: Greff's
    Welch test; `paired_significant` (a paired design's Wilcoxon test, Holm), where given: a star beside the name,
    since the paired test finds differences the draws' spread hides from Welch's."""
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
    starred = [f"{n} *" if n in (paired_significant or ()) else n for n in names]
    axes[1].set_xticks(range(1, len(names) + 1), starred, rotation=30, ha="right")
    star = f"\n*: differs from {reference} in the paired test (Wilcoxon, Holm)" if paired_significant is not None else ""
    fig.suptitle(f"{title}\ndark: {reference}; blue: differs from {reference} (Welch, all trials, Bonferroni){star}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def metric_vs_lr(groups: dict[str, tuple[list[float], list[float]]], label: str, path, title: str = "") -> None:
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
    _hide_spare_panels(axes, len(names), "learning rate")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def importance_bars(shares: dict[str, dict[str, float]], path, title: str = "") -> None:
    """fANOVA: one stacked bar per group of trials (all variants, then each), one colour per effect."""
    groups = list(shares)[::-1]  # matplotlib draws the first bar at the bottom
    effects = list(dict.fromkeys(k for s in shares.values() for k in s))
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(groups) + 1.2))
    left = np.zeros(len(groups))
    colors = plt.get_cmap("tab10")
    for i, effect in enumerate(effects):
        width = np.array([shares[g].get(effect, 0.0) for g in groups])
        ax.barh(groups, width, left=left, label=effect, color=OTHER if effect == "other interactions" else colors(i))
        left += width
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the forest's predicted variance (fANOVA)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curves(curves: dict[str, list[tuple[list[int], list[float], list[float]]]], label: str, path,
                    lrs: dict[str, list[float]] | None = None, title: str = "") -> None:
    """One panel per variant: each trial's validation metric (solid) and training metric (dotted) against the
    epoch, so under- and over-fitting and early stops can be seen. Lines are coloured by the trial's learning
    rate on one log scale (a colour bar says which), trials of one epoch are drawn as points, and the axes
    hold every point (log scale when the values span orders of magnitude)."""
    names = list(curves)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 0.8, 2.6 * rows + 0.4), sharey=True, squeeze=False,
                             layout="constrained")  # room for the colour bar
    every = np.concatenate([np.asarray(v + t, float) for n in names for _, v, t in curves[n]] or [np.zeros(1)])
    every = every[np.isfinite(every)] if np.isfinite(every).any() else np.zeros(1)
    rates = [lr for n in names for lr in (lrs or {}).get(n, []) if lr and lr > 0]
    norm = LogNorm(min(rates), max(rates) * (1.0001 if min(rates) == max(rates) else 1)) if rates else None
    cmap, cycle = plt.get_cmap("viridis"), plt.get_cmap("tab10")
    for ax, name in zip(axes.flat, names):
        for i, (epochs, valid, train) in enumerate(curves[name]):
            lr = (lrs or {}).get(name, [None] * (i + 1))[i]
            color = cmap(norm(lr)) if norm is not None and lr and lr > 0 else cycle(i % 10)
            marker = "o" if len(epochs) == 1 else None  # a one-epoch trial is a point, not an invisible line
            ax.plot(epochs, valid, color=color, lw=1, marker=marker, ms=3)
            ax.plot(epochs, train, color=color, lw=0.8, ls=":", marker=marker, ms=2, mfc="none")
        count = len(curves[name])
        ax.set_title(f"{name} ({count} trial{'s' if count != 1 else ''})", fontsize=10)
        _metric_axis(ax, every, label if ax in axes[:, 0] else "")
        if ax.get_yscale() == "linear":
            low, high = every.min(), every.max()
            ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _hide_spare_panels(axes, len(names), "epoch")
    fig.suptitle((title + "\n" if title else "") + "solid: validation; dotted: training", fontsize=9)
    if norm is not None:
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, fraction=0.03, pad=0.02)
        bar.set_label("learning rate")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _hide_spare_panels(axes, used: int, xlabel: str) -> None:
    """Hide the grid's unused panels; the panel above a hidden one keeps its x tick labels and label, which
    sharex would otherwise leave to the hidden panel."""
    rows, cols = axes.shape
    for k, ax in enumerate(axes.flat):
        r, c = divmod(k, cols)
        if k >= used:
            ax.set_visible(False)
        elif r == rows - 1 or (r + 1) * cols + c >= used:  # the lowest visible panel of its column
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel(xlabel)
