"""The statistics of Greff et al. (2017) on a sweep's trials, with no plotting or file handling.

    best_share        the best 10 % of a variant's trials (Greff's lower row of Fig. 3)
    compare_to        Welch's t-test of each variant against the reference (V), Bonferroni-corrected
    importance        fANOVA (Hutter et al. 2014): the share of the test metric's variance that each
                      hyperparameter, and the lr x hidden interaction, explains

A trial is one finished run: its variant, its test metric and the hyperparameters Greff searched.
"""

from __future__ import annotations

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
        p = stats.ttest_ind(a, b, equal_var=False).pvalue if min(len(a), len(b)) >= 2 else float("nan")
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


def importance(trials: list[Trial], seed: int = 0) -> tuple[dict[str, float] | None, str]:
    """fANOVA shares of variance of the test metric, or None and the reason it could not be computed.

    Keys: each varying hyperparameter (main effect), "lr x hidden" (pure interaction, when both
    vary) and "rest" (higher-order interactions, whatever the forest cannot split on).
    """
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


def fanova_shares(X: np.ndarray, y: np.ndarray, subsets: list[tuple[int, ...]], seed: int = 0) -> dict:
    """Share of the forest's total variance explained by each subset of columns (Hutter et al. 2014).

    Uses Optuna's own fANOVA (random forest + marginals over the box of observed values) through its
    internal `_Fanova`, because the public `FanovaImportanceEvaluator` reports only main effects,
    normalised to sum to 1, and has no interactions. Optuna 2.10 (pinned by hydra-optuna-sweeper)
    also predates numpy 2: its tree reads a node's value as a 1-element array, which numpy 2 refuses
    to store as a float. `_Tree` applies the fix later Optuna releases made (a float).
    Leaves of at least 0.5 % of the trials (>= 5) smooth the seed-to-seed noise and keep the pairwise
    marginal cheap: its cost grows with the square of the number of leaves.
    """
    from optuna.importance._fanova import _fanova, _tree

    class _Tree(_tree._FanovaTree):
        def _get_node_value(self, node_index: int) -> float:
            return float(self._tree.value[node_index].reshape(-1)[0])

    model = _fanova._Fanova(n_trees=32, max_depth=64, min_samples_split=2,
                            min_samples_leaf=max(5, len(y) // 200), seed=seed)
    bounds = np.column_stack([X.min(axis=0), X.max(axis=0)])
    model._forest.fit(X, y)  # what _Fanova.fit does, with the fixed tree class
    model._trees = [_Tree(e.tree_, bounds) for e in model._forest.estimators_]
    model._column_to_encoded_columns = [np.array([i]) for i in range(X.shape[1])]
    model._variances = {}
    if all(tree.variance == 0 for tree in model._trees):
        raise ValueError("fANOVA: the forest predicts a constant; nothing to attribute")
    return {s: model.get_importance(tuple(s))[0] for s in subsets}
