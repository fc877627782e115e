"""The statistics of Greff et al. (2017) on a sweep's trials, with no plotting or file handling.

    best_share        the best 10 % of a variant's trials (Greff's lower row of Fig. 3)
    compare_to        Welch's t-test of each variant against the reference (V), Bonferroni-corrected
    importance        fANOVA (Hutter et al. 2014): the share of the test metric's variance that each
                      hyperparameter, and the lr x hidden interaction, explains

A trial is one finished run: its variant, its test metric and the hyperparameters Greff searched.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05  # Greff's significance level, before the Bonferroni correction
MIN_TRIALS = 10  # fewer completed trials than this: fANOVA's forest has too little to learn from
# Greff's search space, each hyperparameter on the scale it is drawn (and so analysed) on: fANOVA
# averages over the box of observed values, uniformly on this scale
SCALES = {
    "lr": np.log10,  # log-uniform [1e-6, 1e-2]
    "hidden": np.log10,  # log-uniform [20, 200]
    "momentum": lambda m: np.log10(np.maximum(1.0 - m, 1e-12)),  # 1 - log-uniform [0.01, 1]
    "input_noise": lambda x: x,  # uniform [0, 1]
}
INTERACTIONS = [("lr", "hidden")]  # the interaction Greff et al. single out


@dataclass(frozen=True)
class Trial:
    path: str  # the run directory, relative to the folder the report reads
    task: str
    variant: str  # cell name, plus its extra switches: "np+coupled"
    metric: str  # the task's objective, e.g. "accuracy"
    mode: str  # "max" or "min": which direction is better
    value: float  # the test metric at the best validation epoch
    status: str  # "completed" or "diverged" (its best epoch before the loss blew up)
    lr: float
    hidden: int
    momentum: float | None  # only for SGD; Adam has none
    input_noise: float
    seed: int | None
    final_value: float | None = None  # the test metric at the last epoch
    epoch_seconds: float | None = None  # median seconds per epoch (training and evaluation)
    epochs: int | None = None  # epochs completed
    stopped_early: bool = False


def ordered(values, mode: str) -> np.ndarray:
    """Best first."""
    values = np.sort(np.asarray(values, dtype=float))
    return values[::-1] if mode == "max" else values


def best_share(values, mode: str, share: float = 0.1) -> np.ndarray:
    """The best `share` of the values (at least two, so a t-test still has a variance to estimate)."""
    values = ordered(values, mode)
    return values[: max(2, math.ceil(share * len(values)))]


def compare_to(groups: dict[str, list[float]], reference: str = "v", alpha: float = ALPHA) -> list[dict]:
    """Welch's t-test (unequal variances, as Greff) of every other group against `reference`.

    The threshold is Bonferroni-corrected for the number of comparisons (alpha / m): with nine
    variants, an uncorrected 5 % test would flag one of them by chance about a third of the time.
    """
    others = [name for name in groups if name != reference]
    if reference not in groups or not others:
        return []
    threshold = alpha / len(others)
    rows = []
    for name in others:
        a, b = np.asarray(groups[name], float), np.asarray(groups[reference], float)
        testable = min(len(a), len(b)) >= 2 and (a.var() > 0 or b.var() > 0)  # no spread at all: nothing to test
        p = stats.ttest_ind(a, b, equal_var=False).pvalue if testable else float("nan")
        rows.append({"variant": name, "n": len(a), "diff": float(a.mean() - b.mean()), "p": float(p),
                     "significant": bool(p < threshold), "uncorrected": bool(p < alpha), "threshold": threshold})
    return rows


def features(trials: list[Trial]) -> dict[str, np.ndarray]:
    """The hyperparameters that vary across `trials`, on their search scale (see SCALES)."""
    out = {}
    for name, scale in SCALES.items():
        raw = [getattr(t, name) for t in trials]
        if any(v is None for v in raw):  # e.g. momentum where some trials used Adam
            continue
        col = scale(np.asarray(raw, dtype=float))
        if np.ptp(col) > 0:
            out[name] = col
    return out


def off_scale(trials: list[Trial]) -> list[tuple[Trial, str]]:
    """The trials with a hyperparameter that has no value on its search scale (lr=0 or hidden=0 on a log
    scale, a NaN), each with the values at fault: fANOVA cannot place them, so `importance` leaves them out."""
    out = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for t in trials:
            bad = [f"{name}={getattr(t, name)!r}" for name, scale in SCALES.items()
                   if getattr(t, name) is not None and not np.isfinite(scale(np.asarray([getattr(t, name)], dtype=float)))[0]]
            if bad:
                out.append((t, ", ".join(bad)))
    return out


def importance(trials: list[Trial], seed: int = 0) -> tuple[dict[str, float] | None, str]:
    """fANOVA shares of variance of the test metric, or None and the reason it could not be computed.

    Keys: each varying hyperparameter (main effect), "lr x hidden" (pure interaction, when both
    vary) and "rest" (higher-order interactions, whatever the forest cannot split on). Trials off the
    search scale (`off_scale`) are left out.
    """
    left_out = {id(t) for t, _ in off_scale(trials)}
    trials = [t for t in trials if id(t) not in left_out]
    if len(trials) < MIN_TRIALS:
        return None, f"{len(trials)} trial{'s' * (len(trials) != 1)}"
    cols = features(trials)
    if not cols:
        return None, "no hyperparameter varies"
    y = np.array([t.value for t in trials])
    if np.ptp(y) == 0:
        return None, "the test metric is the same in every trial"
    names = list(cols)
    pairs = [(names.index(a), names.index(b)) for a, b in INTERACTIONS if a in cols and b in cols]
    shares = fanova_shares(np.column_stack([cols[n] for n in names]), y, [(i,) for i in range(len(names))] + pairs, seed)
    out = {" x ".join(names[i] for i in key): float(v) for key, v in shares.items()}
    out["rest"] = max(0.0, 1.0 - sum(out.values()))
    return out, ""


# Trees in the fANOVA forest. Its shares move with the forest's seed: on docs/studies/greff_jsb's 90 trials,
# forest seeds 0-3 gave lr 67-79 % with 32 trees, 72-77 % with 256 and 74-76 % with 1024 (~2 s).
TREES = 1024


def fanova_shares(X: np.ndarray, y: np.ndarray, subsets: list[tuple[int, ...]], seed: int = 0) -> dict:
    """Share of the forest's variance explained by each subset of columns (fANOVA, Hutter et al. 2014).

    A regression forest (scikit-learn) is fit to (X, y); each tree is a set of leaves, boxes with a value,
    over the box of observed values. The marginal of a subset U of columns averages a tree over the
    other columns, uniformly; its variance V_U, less the variances of U's proper subsets (so a pair's
    share is its pure interaction), divided by the tree's total variance, is U's share in that tree; the
    shares are averaged over the trees whose prediction varies. Leaves of at least 0.5 % of the trials
    (>= 5) smooth the seed-to-seed noise, but never more than a tenth of them (see leaf_size). Written on
    scikit-learn's public tree arrays (tree_.feature, threshold, children_*, value) rather than Optuna's
    private fANOVA, which Optuna 2.10 (pinned by hydra-optuna-sweeper) keeps internal and which predates
    numpy 2.
    """
    from sklearn.ensemble import RandomForestRegressor

    leaf = leaf_size(len(y))
    forest = RandomForestRegressor(n_estimators=TREES, max_depth=64, min_samples_split=2,
                                   min_samples_leaf=leaf, random_state=seed).fit(X, y)
    bounds = np.column_stack([X.min(axis=0), X.max(axis=0)])
    per_tree = [_tree_shares(_leaves(e.tree_, bounds), bounds, subsets) for e in forest.estimators_]
    varying = [shares for shares in per_tree if shares is not None]
    if not varying:
        raise ValueError(f"fANOVA: the forest predicts a constant ({len(y)} trials, leaves of >= {leaf}); "
                         "nothing to attribute")
    return {u: float(np.mean([shares[u] for shares in varying])) for u in subsets}


def leaf_size(n: int) -> int:
    """The forest's min_samples_leaf for n trials: 0.5 % of them, at least 5, but at most a tenth of them.

    Each tree sees a bootstrap sample, which holds only about 63 % of the n trials (6.4 of 10 on
    average), and scikit-learn counts distinct trials against min_samples_leaf; a split needs two
    leaves. With a floor of 5 and 10 trials a split needs all 10 distinct in one bootstrap (chance
    10!/10^10, 4e-4 per tree), so every tree is a single leaf and the forest predicts a constant.
    From 50 trials on the cap does not bind.
    """
    return max(1, min(max(5, n // 200), n // 10))


def _leaves(tree, bounds: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """(box [d, 2], value) of every leaf, boxes clipped to `bounds`."""
    out, stack = [], [(0, bounds.copy())]
    while stack:
        node, box = stack.pop()
        left, right = tree.children_left[node], tree.children_right[node]
        if left == -1:  # a leaf
            out.append((box, float(tree.value[node].reshape(-1)[0])))
            continue
        f, t = tree.feature[node], tree.threshold[node]
        lo, hi = box.copy(), box.copy()
        lo[f, 1], hi[f, 0] = min(box[f, 1], t), max(box[f, 0], t)
        stack += [(left, lo), (right, hi)]
    return out


def _tree_shares(leaves, bounds: np.ndarray, subsets) -> dict | None:
    size = np.maximum(bounds[:, 1] - bounds[:, 0], 1e-300)
    boxes = np.array([b for b, _ in leaves])  # [L, d, 2]
    values = np.array([v for _, v in leaves])
    widths = np.clip(boxes[:, :, 1] - boxes[:, :, 0], 0, None) / size  # [L, d]: share of each axis
    weight = widths.prod(axis=1)
    mean = weight @ values
    total = weight @ (values - mean) ** 2
    if total <= 1e-12 * max(1.0, mean ** 2):
        return None
    variance: dict[tuple[int, ...], float] = {}

    def marginal_variance(u: tuple[int, ...]) -> float:
        if u in variance:
            return variance[u]
        cuts = [np.unique(np.concatenate([boxes[:, d, :].ravel(), bounds[d]])) for d in u]
        grids = [np.clip(c, bounds[d, 0], bounds[d, 1]) for c, d in zip(cuts, u)]
        mids = [(g[:-1] + g[1:]) / 2 for g in grids]
        cell = [np.diff(g) / size[d] for g, d in zip(grids, u)]
        rest = np.delete(widths, list(u), axis=1).prod(axis=1)  # each leaf's share of the other axes
        inside = [(boxes[:, d, 0][:, None] <= m[None, :]) & (m[None, :] < boxes[:, d, 1][:, None]) for m, d in zip(mids, u)]
        cover = inside[0].astype(float) if len(u) == 1 else inside[0][:, :, None] & inside[1][:, None, :]
        m = np.tensordot(rest * values, cover, axes=(0, 0))  # the marginal on every cell
        w = cell[0] if len(u) == 1 else np.outer(cell[0], cell[1])
        v = float((w * (m - mean) ** 2).sum())
        for k in range(1, len(u)):  # keep the pure effect: less every proper subset's
            for sub in itertools.combinations(u, k):
                v -= marginal_variance(sub)
        variance[u] = max(v, 0.0)
        return variance[u]

    return {u: marginal_variance(tuple(u)) / total for u in subsets}
