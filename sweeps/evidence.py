"""The statistics of Greff et al. (2017) on a sweep's trials, with no plotting or file handling.

    best_share        the best 10 % of a variant's trials (Greff's lower row of Fig. 3)
    compare_to        Welch's t-test of each variant against the reference (V), Bonferroni- and Holm-corrected
    holm              Holm's step-down correction of a family of p-values
    effect            a difference of means or medians with its bootstrap 95 % interval
    detectable        the difference a t-test detects with 80 % power, for given n, spread and alpha
    effects_against   per variant: both differences with intervals, and the detectable difference at alpha / m
    paired_compare_to Wilcoxon's signed-rank test on the draws a variant shares with the reference
    analyse           fANOVA (Hutter et al. 2014) on a random forest fitted to the trials: the share of the
                      forest's predicted variance each hyperparameter (and the cell, across variants) explains
                      on its own, and the lr x hidden interaction; with the forest's out-of-bag R²
    importance        analyse's shares alone
    seed_noise        the seed-to-seed spread of repeated draws: the share no hyperparameter can explain
    not_analysed      the hyperparameters a forest leaves out, and why
    importance_intervals  bootstrap intervals of those shares (trials resampled, forests refit)
    odd_settings      trials whose settings (outside the searched hyperparameters and the cell) are not
                      their task's majority's: a study that mixes code versions or settings

A trial is one finished run: its variant, its test metric and the hyperparameters Greff searched.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
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
    valid_value: float | None = None  # the validation metric at the best validation epoch: what selects a trial
    best_epoch: int | None = None
    params: int | None = None  # trainable parameters
    wall_seconds: float | None = None


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
    Each row also has Holm's adjusted p ("holm_p") and verdict ("holm"), over the testable comparisons.
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
    for row, adjusted, reject in zip(rows, *holm([r["p"] for r in rows], alpha)):
        row.update(holm_p=adjusted, holm=reject)
    return rows


def holm(pvalues, alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction (statsmodels' multipletests): adjusted p-values and which are rejected
    at family-wise error `alpha`.

    The smallest p is compared with alpha / m, the next with alpha / (m - 1), and so on until one fails:
    the same family-wise guarantee as Bonferroni's alpha / m for all, never fewer rejections. A NaN p (a
    comparison that cannot be tested) is left out of the family and stays NaN, not rejected.
    """
    p = np.asarray(pvalues, float)
    adjusted, reject = np.full(p.shape, np.nan), np.zeros(p.shape, bool)
    finite = np.isfinite(p)
    if finite.any():
        from statsmodels.stats.multitest import multipletests  # imported here: statsmodels takes ~1 s to import

        reject[finite], adjusted[finite], _, _ = multipletests(p[finite], alpha=alpha, method="holm")
    return [float(x) for x in adjusted], [bool(x) for x in reject]


BOOTSTRAP = 2000  # resamples for the intervals of differences (scipy.stats.bootstrap, BCa)


def effect(a, b, statistic: str = "mean", seed: int = 0) -> dict:
    """statistic(a) - statistic(b) ("mean" or "median", in the metric's units) with its 95 % bootstrap
    interval: BCa (bias-corrected and accelerated) over BOOTSTRAP resamples, each group resampled on
    its own. `b` None: a one-sample statistic of `a` (e.g. paired differences), resampled as a whole.

    Groups without any spread give the difference itself as the interval; fewer than 2 values in a
    group, no interval (low and high NaN).
    """
    fn = {"mean": np.mean, "median": np.median}[statistic]
    samples = (np.asarray(a, float),) if b is None else (np.asarray(a, float), np.asarray(b, float))
    if min(len(x) for x in samples) == 0:  # e.g. a variant with no pair
        return {"diff": float("nan"), "low": float("nan"), "high": float("nan")}
    point = float(fn(samples[0]) - (fn(samples[1]) if b is not None else 0.0))
    if min(len(x) for x in samples) < 2:
        return {"diff": point, "low": float("nan"), "high": float("nan")}
    if all(np.ptp(x) == 0 for x in samples):
        return {"diff": point, "low": point, "high": point}

    def stat(*xs, axis=-1):
        return fn(xs[0], axis=axis) - (fn(xs[1], axis=axis) if len(xs) > 1 else 0.0)

    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a BCa that cannot be computed (ties) falls back to percentiles below
        ci = None
        for method in ("BCa", "percentile"):
            ci = stats.bootstrap(samples, stat, n_resamples=BOOTSTRAP, method=method, vectorized=True,
                                 random_state=np.random.default_rng(seed)).confidence_interval
            if np.isfinite(ci.low) and np.isfinite(ci.high):
                break
    return {"diff": point, "low": float(ci.low), "high": float(ci.high)}


POWER = 0.8  # the power the detectable differences are quoted at


def detectable(n: int, sd: float, alpha: float, n_other: int | None = None, power: float = POWER) -> float:
    """The smallest difference (in the units of `sd`) that a two-sided t-test at `alpha` detects with
    probability `power`: statsmodels' TTestIndPower for two groups of n and n_other trials and pooled
    standard deviation sd, or TTestPower for n pairs (n_other None) whose differences have standard
    deviation sd. Student's t with equal variances: for Welch's test and Wilcoxon's (asymptotic
    efficiency >= 0.864 of the t-test's) an approximation. NaN below 2 trials (pairs) per group.
    """
    if n < 2 or (n_other is not None and n_other < 2) or not math.isfinite(sd):
        return float("nan")
    from statsmodels.stats.power import TTestIndPower, TTestPower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_other is None:
            es = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power)
        else:
            es = TTestIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=n_other / n)
    return float(np.asarray(es).reshape(-1)[0]) * sd


def pooled_sd(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) + len(b) < 3:
        return float("nan")
    return float(math.sqrt(((len(a) - 1) * a.var(ddof=1 if len(a) > 1 else 0) + (len(b) - 1) * b.var(ddof=1 if len(b) > 1 else 0))
                           / (len(a) + len(b) - 2)))


def effects_against(groups: dict[str, list[float]], reference: str = "v", alpha: float = ALPHA) -> list[dict]:
    """Per variant against `reference`: difference of means and of medians with bootstrap intervals, and
    the difference detectable with POWER at alpha / m (Bonferroni's level, at least as strict as any step
    of Holm's), given both groups' sizes and pooled spread."""
    others = [name for name in groups if name != reference]
    if reference not in groups or not others:
        return []
    b = groups[reference]
    return [{"variant": name, "n": len(groups[name]), "n_reference": len(b),
             "mean": effect(groups[name], b, "mean"), "median": effect(groups[name], b, "median"),
             "detectable": detectable(len(groups[name]), pooled_sd(groups[name], b), alpha / len(others), len(b))}
            for name in others]


# A trial's draw: the hyperparameters Greff's random search samples, and the seed. Trials of different
# variants with the same draw differ only by their cell: a pair.
DRAW = ("lr", "hidden", "momentum", "input_noise", "seed")


def draw_of(trial: "Trial") -> tuple:
    return tuple(getattr(trial, k) for k in DRAW)


def pairs(trials: list["Trial"], reference: list["Trial"]) -> tuple[list[tuple[float, float]], int]:
    """(value, reference value) for every draw that both lists hold exactly once (a complete pair); and
    how many shared draws were left out because one side holds them more than once (duplicate records
    of a draw cannot be matched one to one). Pairs come in a fixed order (by draw), so that bootstrap
    intervals over them are reproducible."""
    mine, ref = {}, {}
    for ts, into in ((trials, mine), (reference, ref)):
        for t in ts:
            into.setdefault(draw_of(t), []).append(t)
    shared = sorted(set(mine) & set(ref), key=repr)
    complete = [d for d in shared if len(mine[d]) == len(ref[d]) == 1]
    return [(mine[d][0].value, ref[d][0].value) for d in complete], len(shared) - len(complete)


def paired_compare_to(by_variant: dict[str, list["Trial"]], reference: str = "v", alpha: float = ALPHA) -> list[dict]:
    """Wilcoxon's signed-rank test on the paired differences (variant - reference, one per shared draw),
    Holm-corrected over the variants; each row names its number of pairs. Also the mean and median of
    the differences with bootstrap intervals (resampling pairs), how many pairs lie below and above zero (a
    median can move with a few pairs; the counts say how shared a shift is), and the difference detectable with
    POWER at alpha / m given the differences' spread. A variant with no pair gets a row with 0 pairs and NaNs."""
    others = [name for name in by_variant if name != reference]
    if reference not in by_variant or not others:
        return []
    rows = []
    for name in others:
        matched, duplicated = pairs(by_variant[name], by_variant[reference])
        d = np.array([x - y for x, y in matched], float)
        testable = len(d) >= 2 and np.any(d != 0)  # Wilcoxon drops zero differences; all zero: nothing to test
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's note that ties or zeros make it switch to the normal approximation
            p = float(stats.wilcoxon(d).pvalue) if testable else float("nan")
        rows.append({"variant": name, "pairs": len(d), "duplicated": duplicated, "p": p,
                     "below": int(np.sum(d < 0)), "above": int(np.sum(d > 0)),
                     "uncorrected": bool(p < alpha),
                     "mean": effect(d, None, "mean"), "median": effect(d, None, "median"),
                     "detectable": detectable(len(d), float(np.std(d, ddof=1)) if len(d) > 1 else float("nan"),
                                              alpha / len(others))})
    for row, adjusted, reject in zip(rows, *holm([r["p"] for r in rows], alpha)):
        row.update(holm_p=adjusted, holm=reject)
    return rows


CELL = "cell"  # the variant, analysed as a category where a forest spans several


def features(trials: list[Trial]) -> dict[str, np.ndarray]:
    """The hyperparameters that vary across `trials`, on their search scale (see SCALES), and the cell as a
    category (codes 0..k-1 of the variants in sorted order) where the trials span k > 1 variants: left out,
    a pooled forest would credit a variant's difference to whichever hyperparameter it can split on."""
    out = {}
    for name, scale in SCALES.items():
        raw = [getattr(t, name) for t in trials]
        if any(v is None for v in raw):  # e.g. momentum where some trials used Adam
            continue
        col = scale(np.asarray(raw, dtype=float))
        if np.ptp(col) > 0:
            out[name] = col
    variants = sorted({t.variant for t in trials})
    if len(variants) > 1:
        out[CELL] = np.array([variants.index(t.variant) for t in trials], dtype=float)
    return out


def box(cols: dict[str, np.ndarray]) -> np.ndarray:
    """[d, 2] bounds fANOVA averages over: a numeric column's observed range; the cell's codes widened by a
    half on each side, so each of its k variants weighs 1/k (the forest's splits fall between codes)."""
    return np.array([[-0.5, c.max() + 0.5] if name == CELL else [c.min(), c.max()] for name, c in cols.items()])


def not_analysed(trials: list[Trial]) -> list[tuple[str, str]]:
    """The hyperparameters a forest on `trials` does not analyse, each with why: fixed, absent in some
    trials (momentum beside Adam), or the seed, which is noise: it has no scale on which nearby values
    behave alike, so a forest splitting on it would fit noise; its spread is `seed_noise`'s floor instead."""
    out = []
    for name in SCALES:
        raw = [getattr(t, name) for t in trials]
        if all(v is None for v in raw):
            out.append((name, "not used (Adam)" if name == "momentum" else "absent"))
        elif any(v is None for v in raw):
            out.append((name, "absent in some trials"))
        elif len(set(raw)) == 1:
            out.append((name, f"fixed at {raw[0]:.4g}"))
    seeds = {t.seed for t in trials}
    if len(seeds) > 1:
        out.append(("seed", "noise: see the seed-to-seed spread"))
    elif None not in seeds:
        out.append(("seed", f"fixed at {seeds.pop()}: its noise is in every trial, unmeasured"))
    return out


def seed_noise(trials: list[Trial]) -> dict | None:
    """The seed-to-seed spread of the metric: over draws (variant and every searched hyperparameter alike)
    run with more than one seed, the pooled within-draw variance, and its share of the metric's variance
    over all `trials`. That share is a floor no hyperparameter can explain; fANOVA's forest fits part of it
    anyway and credits it to the hyperparameters. None when no draw was repeated with another seed."""
    groups: dict[tuple, list[float]] = {}
    for t in trials:
        groups.setdefault((t.variant, t.lr, t.hidden, t.momentum, t.input_noise), []).append(t.value)
    repeated = [np.asarray(v) for v in groups.values() if len(v) > 1]
    y = np.array([t.value for t in trials])
    if not repeated or len(y) < 2:
        return None
    dof = sum(len(v) - 1 for v in repeated)
    within = sum(float(((v - v.mean()) ** 2).sum()) for v in repeated) / dof
    total = float(np.var(y, ddof=1))
    return {"draws": len(repeated), "trials": sum(len(v) for v in repeated), "sd": math.sqrt(within),
            "share": within / total if total > 0 else float("nan")}


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


@dataclass(frozen=True)
class Importance:
    shares: dict[str, float]  # effect -> share of the forest's variance; "other interactions" last
    r2: float  # the forest's out-of-bag R²: how much of the metric's own variance the forest captures
    columns: list[str]  # what the forest was fitted on, in order


OTHER = "other interactions"  # what the listed effects leave of the forest's variance


def analyse(trials: list[Trial], seed: int = 0, trees: int | None = None,
            oob: bool = True) -> tuple[Importance | None, str]:
    """fANOVA of the test metric, or None and the reason it could not be computed.

    A random forest is fitted to the trials (see `features`); fANOVA splits the variance of its prediction,
    averaged uniformly over the box of values tried, into the main effect of each column (hyperparameter or
    cell), the "lr x hidden" pure interaction (when both vary), and OTHER (every interaction not listed).
    These are shares of the forest's variance, not of the metric's: the forest's out-of-bag R² (`oob`) says
    how much of the metric's variance that is. Trials off the search scale (`off_scale`) are left out.
    """
    off = {id(t) for t, _ in off_scale(trials)}
    trials = [t for t in trials if id(t) not in off]
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
    shares, r2 = fanova_shares(np.column_stack([cols[n] for n in names]), y, [(i,) for i in range(len(names))] + pairs,
                               seed, trees, bounds=box(cols), oob=oob)
    out = {" x ".join(names[i] for i in key): float(v) for key, v in shares.items()}
    out[OTHER] = max(0.0, 1.0 - sum(out.values()))
    return Importance(out, r2, names), ""


def importance(trials: list[Trial], seed: int = 0, trees: int | None = None) -> tuple[dict[str, float] | None, str]:
    """`analyse`'s shares alone (no out-of-bag fit), as the bootstrap resamples need them."""
    result, why = analyse(trials, seed, trees, oob=False)
    return (result.shares if result else None), why


# Trees in the fANOVA forest. Its shares move with the forest's seed: on docs/studies/greff_jsb's 90 trials,
# forest seeds 0-3 gave lr 67-79 % with 32 trees, 72-77 % with 256 and 74-76 % with 1024 (~2 s).
TREES = 1024


def fanova_shares(X: np.ndarray, y: np.ndarray, subsets: list[tuple[int, ...]], seed: int = 0,
                  trees: int | None = None, bounds: np.ndarray | None = None, oob: bool = False) -> tuple[dict, float]:
    """Share of the forest's variance explained by each subset of columns (fANOVA, Hutter et al. 2014).

    A regression forest (scikit-learn) is fit to (X, y); each tree is a set of leaves, boxes with a value,
    over `bounds` (default: the box of observed values). The marginal of a subset U of columns averages a tree over the
    other columns, uniformly; its variance V_U, less the variances of U's proper subsets (so a pair's
    share is its pure interaction), divided by the tree's total variance, is U's share in that tree; the
    shares are averaged over the trees whose prediction varies. Leaves of at least 0.5 % of the trials
    (>= 5) smooth the seed-to-seed noise, but never more than a tenth of them (see leaf_size). Written on
    scikit-learn's public tree arrays (tree_.feature, threshold, children_*, value). Optuna's public
    FanovaImportanceEvaluator computes the same main effects (tests/test_report.py: within 0.02 of the
    variance with the same leaf size, same ranking with these leaves), but gives no pair's interaction (lr x
    hidden), fixes its leaves at one trial, and reads a log-scale parameter on its raw scale.
    Returns the shares and, with `oob`, the forest's out-of-bag R² (NaN without it).
    """
    from sklearn.ensemble import RandomForestRegressor

    leaf = leaf_size(len(y))
    forest = RandomForestRegressor(n_estimators=trees or TREES, max_depth=64, min_samples_split=2,
                                   min_samples_leaf=leaf, random_state=seed, oob_score=oob).fit(X, y)
    if bounds is None:
        bounds = np.column_stack([X.min(axis=0), X.max(axis=0)])
    per_tree = [_tree_shares(_leaves(e.tree_, bounds), bounds, subsets) for e in forest.estimators_]
    varying = [shares for shares in per_tree if shares is not None]
    if not varying:
        raise ValueError(f"fANOVA: the forest predicts a constant ({len(y)} trials, leaves of >= {leaf}); "
                         "nothing to attribute")
    return ({u: float(np.mean([shares[u] for shares in varying])) for u in subsets},
            float(forest.oob_score_) if oob else float("nan"))


# The bootstrap intervals of the fANOVA shares: resamples of the trials, and trees per resample's forest.
# Bounded: 30 resamples x 64 trees cost about 1.5 x the 1024-tree point estimate (120 trials: 8 s against
# 5.7 s on this project's 2-core box under a load of 9), and only the pooled row gets them. A 64-tree forest
# adds its own seed-to-seed spread (lr moved 12 points with 32 trees on greff_jsb_batch16's 90 trials),
# which widens the intervals: they are conservative.
FANOVA_RESAMPLES, FANOVA_RESAMPLE_TREES = 30, 64


def importance_intervals(trials: list[Trial], resamples: int | None = None, trees: int | None = None,
                         level: float = 0.95, seed: int = 0) -> tuple[dict[str, tuple[float, float]], int]:
    """Percentile bootstrap intervals of importance()'s shares: the trials are resampled with replacement
    `resamples` (default FANOVA_RESAMPLES) times and a `trees`-tree forest (FANOVA_RESAMPLE_TREES; seed
    varied per resample) is refit to each. Returns
    {effect: (low, high)} and how many resamples gave shares (one whose forest is constant, or in which
    no hyperparameter varies, is dropped); an effect absent from a resample counts as 0 there."""
    resamples, trees = resamples or FANOVA_RESAMPLES, trees or FANOVA_RESAMPLE_TREES
    rng = np.random.default_rng(seed)
    draws = []
    for b in range(resamples):
        sample = [trials[i] for i in rng.integers(0, len(trials), len(trials))]
        try:
            shares, _ = importance(sample, seed=b, trees=trees)
        except ValueError:  # a constant forest: nothing to attribute in this resample
            shares = None
        if shares:
            draws.append(shares)
    effects = list(dict.fromkeys(k for d in draws for k in d))
    tail = 100 * (1 - level) / 2
    return {e: tuple(float(x) for x in np.percentile([d.get(e, 0.0) for d in draws], [tail, 100 - tail]))
            for e in effects}, len(draws)


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


# Config keys that do not make two trials different experiments, so odd_settings ignores them: the
# hyperparameters the searches draw (they differ by design), the cell's name and switches (the variant,
# which is what is compared), and bookkeeping that leaves the numbers alone (logging, paths, the
# platform, evaluation batch size, and the speed settings that compute the same numbers; speed.dtype
# changes them and counts). Everything else (task.*, optimizer name and constants, batch_size, epochs,
# patience, layers, dropout, grad_clip, the cell's initialisers and forget bias, ...) must agree.
NOT_SETTINGS = ("lr", "hidden", "input_noise", "seed", "optimizer.momentum", "optimizer.one_minus_momentum",
                "cell.name", "cell.switches", "wandb", "verbose", "study", "data_dir", "download", "platform",
                "eval_batch_size", "speed.unroll", "speed.hoist_projection", "speed.fused_gradient", "speed.kernel",
                "speed.cpu_devices", "speed.keep_freed_memory")
ABSENT = "absent"  # a key one trial's config has and another's lacks: records of another code version


def settings(config: dict, prefix: str = "") -> dict[str, str]:
    """A resolved config flattened to dotted keys, each value as JSON text, less NOT_SETTINGS."""
    out = {}
    for key, value in (config or {}).items():
        path = f"{prefix}{key}"
        if any(path == k or path.startswith(k + ".") for k in NOT_SETTINGS):
            continue
        if isinstance(value, dict) and value:
            out.update(settings(value, path + "."))
        else:
            out[path] = json.dumps(value, sort_keys=True)
    return out


def odd_settings(configs: dict[str, dict]) -> dict:
    """The trials (by path) whose settings differ from the settings most trials share.

    Settings outside the cell (`cell.*`) are compared over all trials; a cell's own keys only among the trials
    of that cell: each cell's config holds the keys it reads (a minGRU has no recurrent_init, an LSTM has a
    forget_bias), which is what tells cells apart, not a setting that makes their trials unlike.
    `configs`: each trial's resolved config. Returns {"kept": how many trials share the majority's
    settings, "tie": whether another set of settings had as many trials (the first in sorted order is
    then kept), "odd": [{"path", "differences": [(key, its value, the majority's value)]}]} in path order.
    """
    flat = {path: settings(cfg) for path, cfg in configs.items()}
    shared = {p: {k: v for k, v in s.items() if not k.startswith("cell.")} for p, s in flat.items()}
    own = {p: {k: v for k, v in s.items() if k.startswith("cell.")} for p, s in flat.items()}
    majority, tie = _majority(shared)
    by_cell: dict[str, list[str]] = {}
    for path, cfg in configs.items():
        by_cell.setdefault(json.dumps(((cfg or {}).get("cell") or {}).get("name")), []).append(path)
    for paths in by_cell.values():
        cell_majority, cell_tie = _majority({p: own[p] for p in paths})
        majority.update({p: {**majority[p], **cell_majority[p]} for p in paths})
        tie |= cell_tie
    odd = []
    for path in sorted(flat):
        mine, theirs = flat[path], majority[path]
        differences = [(k, mine.get(k, ABSENT), theirs.get(k, ABSENT)) for k in sorted(set(mine) | set(theirs))
                       if mine.get(k, ABSENT) != theirs.get(k, ABSENT)]
        if differences:
            odd.append({"path": path, "differences": differences})
    return {"kept": len(flat) - len(odd), "tie": tie, "odd": odd}


def _majority(flat: dict[str, dict]) -> tuple[dict[str, dict], bool]:
    """({path: the settings most of these trials share}, whether another set had as many: the first of the
    tied ones in sorted order is the majority then)."""
    groups: dict[str, list[str]] = {}
    for path, s in flat.items():
        groups.setdefault(json.dumps(s, sort_keys=True), []).append(path)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    if not ranked:
        return {}, False
    majority = json.loads(ranked[0][0])
    return {p: majority for p in flat}, len(ranked) > 1 and len(ranked[1][1]) == len(ranked[0][1])
