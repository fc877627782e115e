"""Greff et al. (2017)'s evidence from a folder of run records, in one command:

    python -m sweeps.report multirun/random_search            # -> multirun/random_search/report/
    python -m sweeps.report runs/ --out /tmp/report --reference np
    python -m sweeps.report docs/studies/greff_jsb/records.jsonl.gz   # -> docs/studies/greff_jsb/

Reads every run record below the folder (result.json, or only metrics.jsonl for a run that never wrote
one), from single runs, population runs or sweeps alike, and writes report.md, report.html (the same
page with its figures embedded) and the PNG figures. Runs that failed or did not finish are listed with
their error, never dropped. A records.jsonl.gz (a study's records packed by sweeps.records) is read as
the folder it was packed from. The statistics live in sweeps.evidence, the drawing in sweeps.figures.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import math
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from sweeps import evidence, figures, records
from sweeps.evidence import Trial

COUNTED = ("completed", "diverged")  # runs with a best epoch; failed and running ones are listed instead
# Greff's order of the variants; any other cell or combination follows, alphabetically
ORDER = ["v", "nig", "nfg", "nog", "niaf", "noaf", "np", "cifg", "fgr", "gru", "srn"]

INTRO = """\
Each task gets a summary per variant (mean ± sd of the test metric at the best validation epoch and at
the last, seconds per epoch), learning curves, and sections after Greff et al. (2017), "LSTM: A Search
Space Odyssey", with the statistics a reviewer asks for beside them. A section that cannot be computed
from these trials says why instead.

- **Trials left out** (only where there are any): trials whose settings outside the searched
  hyperparameters and the cell (batch size, loss, epoch ceiling, patience, optimizer, a key another
  code version lacks, ...) differ from the settings most of the task's trials share. Pooling them would
  compare unlike runs, so every later section leaves them out.
- **Distribution** (their Fig. 3): the test metric of every trial of each variant, and of its best 10 %.
  Boxes span the quartiles with the median inside; whiskers reach 1.5 × the box; dots are the trials.
  Blue boxes differ significantly from the reference variant (Welch, all trials, Bonferroni); where the
  design is paired, a star beside a name marks a variant the paired test finds different (Wilcoxon, Holm).
- **Welch's t-test against {ref}**: does a variant's mean test metric differ from {ref}'s? Welch's test
  does not assume equal variances. Significant means p < 0.05 / m, Bonferroni-corrected for the m
  variants compared; "p < 0.05 only" passes the uncorrected test but not the corrected one. Holm's
  step-down correction beside it keeps the same family-wise 5 % and never flags fewer variants.
- **Effect sizes against {ref}**: how large each difference is, in the metric's units: the difference
  of means and of medians with 95 % bootstrap intervals; and a power line, the difference these trials
  would detect with 80 % power at the corrected level, so that "not significant" can be read as "no
  difference larger than this" or as "too few trials to tell".
- **Paired comparison against {ref}**: where variants were trained on the same draws (identical lr,
  hidden, momentum, input noise and seed), the draw's effect cancels in each pair's difference.
  Wilcoxon's signed-rank test on the complete pairs, Holm-corrected, with the number of pairs per
  comparison; the section says whether the design is paired or unpaired.
- **Hyperparameter importance** (fANOVA, Hutter et al. 2014): a random forest fitted to the trials, and the
  share of its predicted variance that each hyperparameter explains on its own, on the scale it is searched
  (lr and hidden: log10, momentum: log10(1 − momentum)), plus the lr × hidden interaction and the other
  interactions; pooled over variants, the cell is one more (categorical) column. Each share has a bootstrap
  interval (trials resampled, forests refit); the forest's out-of-bag R² says how much of the metric's own
  variance it captures. The seed is left out as noise, its measured spread reported as a floor; fixed
  hyperparameters and trials off the search scale are named.
- **Test metric against learning rate** (their Fig. 4): one point per trial, log-scale learning rate.
- **Best trial per variant**: the trial each variant's validation metric selects (the test set never
  chooses), its test metric, hyperparameters and where its record lies.
- **Every trial** (a task of at most 40 trials): one row per trial, for studies small enough to read whole.

The test metric is the one at each run's best validation epoch. Diverged runs count with the epochs
before their loss became non-finite.
"""


def variant_name(cell: dict) -> str:
    """`np` with switches {coupled: true} is "np+coupled"; a switch set to false reads "peepholes=false"."""
    extra = [k if v is True else f"{k}={json.dumps(v)}" for k, v in sorted((cell.get("switches") or {}).items())
             if v is not None]  # null: the variant's own value
    return "+".join([cell["name"], *extra])


def load(root: Path, skip: Path | None = None) -> tuple[list[Trial], list[dict]]:
    """Every run below `root`: the trials that count, and the problems (runs that do not count, and why).
    No record stops the report: one that cannot be read as a run is listed with what is wrong with it."""
    dirs = {p.parent for name in ("result.json", "metrics.jsonl") for p in root.rglob(name)}
    trials, problems = [], []
    for d in sorted(dirs):
        if skip is not None and d.is_relative_to(skip):
            continue
        rel = str(d.relative_to(root)) or "."
        try:
            trials.append(read_trial(d, rel))
        except RecordProblem as e:
            problems.append({"path": rel, "status": e.status, "error": str(e)})
        except Exception as e:  # a shape read_trial did not foresee: named, never fatal
            problems.append({"path": rel, "status": "unreadable", "error": f"{type(e).__name__}: {e}"})
    return trials, problems


class RecordProblem(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


def number(x) -> float | None:
    """x as a finite float; None for anything else (null, a string, a bool, NaN)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def read_trial(run_dir: Path, rel: str) -> Trial:
    epochs = len((run_dir / "metrics.jsonl").read_text().splitlines()) if (run_dir / "metrics.jsonl").exists() else 0
    if not (run_dir / "result.json").exists():
        raise RecordProblem("no result.json", f"did not finish: {epochs} epoch(s) in metrics.jsonl and no result.json")
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, and bytes that are not UTF-8
        raise RecordProblem("unreadable", f"result.json is not valid JSON: {e}") from None
    if not isinstance(result, dict):
        raise RecordProblem("unreadable", f"result.json holds {json.dumps(result)[:60]}, not a run record (a JSON object)")
    status = str(result.get("status", "unknown"))
    if status == "failed":
        raise RecordProblem(status, str(result.get("error") or "failed without an error message"))
    if status == "interrupted":
        raise RecordProblem(status, f"interrupted by {result.get('signal', 'a signal')} after {epochs} epoch(s); "
                                    "rerun its command to resume it")
    if status not in COUNTED:
        raise RecordProblem(status, f"still running, or killed: {epochs} epoch(s) logged")
    try:
        cfg, objective = result["config"], result["objective"]
        name, mode = objective["name"], objective["mode"]
        raw = (result.get("test") or {}).get(name)
        value = number(raw)
        if value is None:
            raise RecordProblem(status, f"no finite test {name} in result.json (got {raw!r})")
        if mode not in ("max", "min"):
            raise RecordProblem(status, f"objective mode {mode!r} in result.json; expected 'max' or 'min'")

        def hyperparameter(value, key: str) -> float:
            if number(value) is None:
                raise RecordProblem(status, f"config.{key} in result.json is {value!r}, not a number")
            return float(value)

        optimizer = cfg.get("optimizer") or {}
        final = number(((result.get("final") or {}).get("test") or {}).get(name))
        seconds = [e["epoch_seconds"] for e in epoch_lines(run_dir) if number(e.get("epoch_seconds"))]
        return Trial(path=rel, task=str(result.get("task") or cfg["task"]["name"]), variant=variant_name(cfg["cell"]),
                     metric=name, mode=mode, value=value, status=status, lr=hyperparameter(cfg["lr"], "lr"),
                     hidden=int(hyperparameter(cfg["hidden"], "hidden")),
                     momentum=hyperparameter(optimizer["momentum"], "optimizer.momentum") if optimizer.get("name") == "sgd" else None,
                     input_noise=hyperparameter(cfg.get("input_noise") or 0.0, "input_noise"), seed=cfg.get("seed"),
                     final_value=final,
                     epoch_seconds=float(np.median(seconds[1:] or seconds)) if seconds else None,  # the first compiles
                     epochs=result.get("epochs_completed"), stopped_early=bool(result.get("stopped_early")),
                     valid_value=number((result.get("valid") or {}).get(name)), best_epoch=result.get("best_epoch"),
                     params=result.get("num_params"), wall_seconds=number(result.get("wall_seconds")))
    except (KeyError, TypeError, AttributeError) as e:
        raise RecordProblem(status, f"result.json lacks {e}, or holds it in another shape (expected the record "
                                    "training/records.py writes)") from None


def epoch_lines(run_dir: Path) -> list[dict]:
    """metrics.jsonl's lines; a torn line (a run killed while writing), or one that is not an object, is skipped."""
    lines = []
    path = Path(run_dir) / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return [line for line in lines if isinstance(line, dict)]


def table(header: list[str], rows: list[list], align: str = "") -> str:
    """A markdown table; `align` holds one of l/r per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [header, rule, *[[str(c).replace("|", "\\|") for c in row] for row in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def num(x, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def verdict(test: dict) -> str:
    if math.isnan(test["p"]):
        return "not testable"  # fewer than 2 trials, or no spread in either group
    return "yes" if test["significant"] else "p < 0.05 only" if test["uncorrected"] else "no"


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else "(no message)"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def task_section(task: str, trials: list[Trial], root: Path, out: Path, reference: str) -> list[str]:
    """One task's sections (see INTRO), its figures written to `out` as <task>_*.png. Trials whose settings
    are not the task's majority's are listed first and left out of everything after."""
    odd = evidence.odd_settings({t.path: config_of(root / t.path) for t in trials})
    left_out = {o["path"] for o in odd["odd"]}
    trials = [t for t in trials if t.path not in left_out]
    metric, mode, stem = trials[0].metric, trials[0].mode, slug(task)
    label = f"test {metric} ({'higher' if mode == 'max' else 'lower'} is better)"
    names = sorted({t.variant for t in trials}, key=lambda v: (ORDER.index(v) if v in ORDER else len(ORDER), v))
    by_variant = {v: [t for t in trials if t.variant == v] for v in names}
    values = {v: [t.value for t in ts] for v, ts in by_variant.items()}
    best = {v: list(evidence.best_share(x, mode)) for v, x in values.items()}
    diverged = sum(t.status == "diverged" for t in trials)
    tests: tuple = ([], [])

    @functools.cache
    def paired() -> list[dict]:  # once: the figure marks what the paired section finds
        return evidence.paired_compare_to(by_variant, reference)

    def distribution():
        nonlocal tests
        tests = evidence.compare_to(values, reference), evidence.compare_to(best, reference)
        try:
            starred = {r["variant"] for r in paired() if r["holm"]} if any(r["pairs"] for r in paired()) else None
        except Exception:  # no stars; the paired section says what went wrong
            starred = None
        figures.box_plots(values, best, f"test {metric}", f"{task}: {label}",
                          {r["variant"] for r in tests[0] if r["significant"]}, out / f"{stem}_box.png", reference, starred)
        few = [v for v, x in values.items() if len(evidence.best_share(x, mode)) >= len(x)]
        thin = [v for v, x in values.items() if v not in few and len(x) < 20]  # best 10 % raised to 2 trials
        return [f"![box plots]({stem}_box.png)", "", distribution_table(values, best, mode), "",
                *([f"Too few trials for a best 10 %: for {', '.join(few)} it is every trial, so the lower panel "
                   "repeats the upper one.", ""] if few else []),
                *([f"Fewer than 20 trials: for {', '.join(thin)} the \"best 10 %\" is the best 2 trials, too few for its "
                   "panel or its t-test to mean much.", ""] if thin else [])]

    def curves():
        data = {v: [curve(root / t.path, metric) for t in ts] for v, ts in by_variant.items()}
        figures.learning_curves(data, metric, out / f"{stem}_curves.png", lrs={v: [t.lr for t in ts] for v, ts in by_variant.items()},
                                title=f"{task}: validation and training {metric} per epoch, every trial")
        return [f"![learning curves]({stem}_curves.png)", ""]

    def lr_plot():
        figures.metric_vs_lr({v: ([t.lr for t in ts], [t.value for t in ts]) for v, ts in by_variant.items()},
                             f"test {metric}", out / f"{stem}_lr.png", title=f"{task}: {label} against the learning rate")
        return [f"![metric vs lr]({stem}_lr.png)", ""]

    return [f"## {task}: {label}", "",
            f"{len(trials)} trials of {len(names)} variant(s)" + (f", {diverged} of them diverged." if diverged else ".")
            + (f" {len(left_out)} more left out: their settings differ (below)." if left_out else ""), "",
            *settings_section(odd, len(trials)),
            "### Summary per variant", "", *guarded(lambda: [summary_table(by_variant, metric), ""]),
            "### Learning curves", "", *guarded(curves),
            "### Distribution of the test metric", "", *guarded(distribution),
            f"### Welch's t-test against {reference}", "", *guarded(lambda: welch_section(*tests, metric, reference)),
            f"### Effect sizes against {reference}", "", *guarded(lambda: effects_section(values, metric, reference)),
            f"### Paired comparison against {reference} (Wilcoxon signed-rank)", "",
            *guarded(lambda: paired_section(paired(), by_variant, metric, reference)),
            "### Hyperparameter importance (fANOVA)", "", *guarded(lambda: importance_section(trials, by_variant, out / f"{stem}_importance.png")),
            "### Test metric against learning rate", "", *guarded(lr_plot),
            "### Best trial per variant", "", *guarded(lambda: [ranking_table(by_variant, metric, mode), ""]),
            *(["### Every trial", "", *guarded(lambda: [trials_table(by_variant, metric), ""])]
              if len(trials) <= EVERY_TRIAL_MAX else [])]


def guarded(section) -> list[str]:
    """A section's lines, or one line saying why it could not be computed: one analysis that has nothing
    to say (a constant forest, a single trial) never costs the rest of the report."""
    try:
        return section()
    except Exception as e:  # any analysis or plotting error; the report names it and goes on
        return [f"Not computed: {type(e).__name__}: {first_line(str(e))}", ""]


def curve(run_dir: Path, metric: str) -> tuple[list[int], list[float], list[float]]:
    lines = [e for e in epoch_lines(run_dir) if "valid" in e]
    return ([e["epoch"] for e in lines], [e["valid"].get(metric) for e in lines], [e["train"].get(metric) for e in lines])


def mean_sd(values) -> str:
    x = [v for v in values if v is not None]
    if not x:
        return "–"
    return f"{np.mean(x):.4g} ± {np.std(x, ddof=1):.2g}" if len(x) > 1 else f"{x[0]:.4g}"


def summary_table(by_variant: dict, metric: str) -> str:
    """The tutorial's table: per variant, test metric at the best validation epoch and at the last epoch."""
    return table(["variant", "trials", f"test {metric}, best valid. epoch (mean ± sd)", f"test {metric}, last epoch",
                  "s / epoch (median)", "epochs (mean)", "stopped early"],
                 [[v, len(ts), mean_sd(t.value for t in ts), mean_sd(t.final_value for t in ts),
                   num(np.median([t.epoch_seconds for t in ts if t.epoch_seconds]) if any(t.epoch_seconds for t in ts) else None, 3),
                   num(np.mean([t.epochs for t in ts if t.epochs]) if any(t.epochs for t in ts) else None, 3),
                   sum(t.stopped_early for t in ts)] for v, ts in by_variant.items()])


def distribution_table(values: dict, best: dict, mode: str) -> str:
    return table(["variant", "trials", "median", "mean", "std", "best", "median of best 10 %"],
                 [[v, len(x), num(np.median(x)), num(np.mean(x)), num(np.std(x, ddof=1) if len(x) > 1 else None),
                   num(evidence.ordered(x, mode)[0]), num(np.median(best[v]))] for v, x in values.items()])


def welch_section(tests_all: list[dict], tests_best: list[dict], metric: str, reference: str) -> list[str]:
    if not tests_all:
        return [f"No comparison: this task has no `{reference}` trials, or no other variant.", ""]
    m, threshold = len(tests_all), tests_all[0]["threshold"]
    k = sum(math.isfinite(a["p"]) for a in tests_all)
    rows = [[a["variant"], a["n"], num(a["diff"], 3), num(a["p"], 2), verdict(a), num(a["holm_p"], 2), holm_verdict(a),
             num(b["diff"], 3), num(b["p"], 2), verdict(b)] for a, b in zip(tests_all, tests_best)]
    return [f"Significant: p < 0.05 / {m} = {threshold:.2g} (Bonferroni over {m} comparison{'s' * (m > 1)}). "
            f"Holm: the step-down correction over the {k} testable comparison{'s' * (k != 1)} (all trials), the same "
            "family-wise 5 %, significant where its adjusted p < 0.05. "
            f"Differences are variant − {reference}: mean {metric}.", "",
            table(["variant", "trials", "Δ mean (all)", "p", "significant", "Holm p", "significant (Holm)",
                   "Δ mean (best 10 %)", "p", "significant"], rows, "lrrrlrlrrl"), ""]


def holm_verdict(test: dict) -> str:
    return "not testable" if math.isnan(test["holm_p"]) else "yes" if test["holm"] else "no"


def interval(e: dict, digits: int = 3) -> str:
    """A difference and its 95 % interval: "-0.021 [-0.03, -0.012]"."""
    if math.isnan(e["low"]):
        return num(e["diff"], digits)
    return f"{num(e['diff'], digits)} [{num(e['low'], digits)}, {num(e['high'], digits)}]"


def effects_section(values: dict, metric: str, reference: str) -> list[str]:
    rows = evidence.effects_against(values, reference)
    if not rows:
        return [f"No comparison: this task has no `{reference}` trials, or no other variant.", ""]
    alpha = evidence.ALPHA / len(rows)
    return [f"Variant − {reference} in {metric} over all trials, with 95 % bootstrap intervals (BCa, "
            f"{evidence.BOOTSTRAP} resamples of each group). The last column is the power line: with these trials "
            f"and this spread (the groups' pooled sd), a difference of that size in {metric} is detected with "
            f"{100 * evidence.POWER:.0f} % power at p < {alpha:.2g} (0.05 / {len(rows)}: Bonferroni's threshold, at least as "
            "strict as any step of Holm's; two-sided t-test, statsmodels' TTestIndPower).", "",
            table(["variant", f"trials (/ {reference})", "Δ mean [95 % CI]", "Δ median [95 % CI]", "pooled sd",
                   f"Δ detected with {100 * evidence.POWER:.0f} % power"],
                  [[r["variant"], f"{r['n']} / {r['n_reference']}", interval(r["mean"]), interval(r["median"]),
                    num(evidence.pooled_sd(values[r["variant"]], values[reference]), 3), num(r["detectable"], 3)]
                   for r in rows]), ""]


def paired_section(rows: list[dict], by_variant: dict, metric: str, reference: str) -> list[str]:
    """The paired comparison's section from evidence.paired_compare_to's rows."""
    if not rows:
        return [f"No comparison: this task has no `{reference}` trials, or no other variant.", ""]
    draw = "lr, hidden, momentum, input noise and seed"
    if not any(r["pairs"] for r in rows):
        return [f"Design: **unpaired**. No trial of another variant repeats a draw ({draw}) of {reference}'s, so there "
                "is nothing to pair; the Welch tests above are the comparison.", ""]
    paired = sum(bool(r["pairs"]) for r in rows)
    alpha = evidence.ALPHA / len(rows)
    duplicated = sum(r["duplicated"] for r in rows)
    k = sum(math.isfinite(r["p"]) for r in rows)
    return [f"Design: **paired**. {paired} of {len(rows)} variants share draws ({draw} identical) with "
            f"{reference}'s {len(by_variant[reference])} trials; each comparison uses only its complete pairs (a draw "
            "both variants completed), named in the second column, counts the pairs in which the variant lies below "
            f"and above {reference} (the third: how shared a shift is), and tests their differences (variant − "
            f"{reference}, in {metric}) with Wilcoxon's signed-rank test; Holm over the {k} testable comparison"
            f"{'s' * (k != 1)}. Intervals: 95 % bootstrap over the pairs (BCa, {evidence.BOOTSTRAP} resamples). Power "
            f"line: with these pairs and this spread of their differences, a difference of that size is detected "
            f"with {100 * evidence.POWER:.0f} % power at p < {alpha:.2g} (paired t-test, statsmodels' TTestPower; Wilcoxon's "
            "test needs ~5 % more pairs for normal differences, at most 16 % more for any)."
            + (f" {duplicated} shared draw(s) are held by more than one trial of a variant and cannot be matched one to "
               "one; they are left out." if duplicated else ""), "",
            table(["variant", "pairs", "Δ < 0 / Δ > 0", "median Δ [95 % CI]", "mean Δ [95 % CI]", "Wilcoxon p",
                   "Holm p", "significant (Holm)", f"Δ detected with {100 * evidence.POWER:.0f} % power"],
                  [[r["variant"], r["pairs"], f"{r['below']} / {r['above']}", interval(r["median"]), interval(r["mean"]),
                    num(r["p"], 2), num(r["holm_p"], 2), holm_verdict(r), num(r["detectable"], 3)] for r in rows],
                  "lrrrrrrlr"), ""]


def config_of(run_dir: Path) -> dict:
    """A counted trial's resolved config, from its result.json (read_trial has checked it is there), with the
    commit of the code that ran it as one more setting (`code`), so records of another code version are left
    out of the comparison as any other differing setting is (records written before commits were recorded
    have none, and compare equal among themselves)."""
    record = json.loads((Path(run_dir) / "result.json").read_text())
    code = (record.get("provenance") or {}).get("commit")
    return {**record["config"], **({"code": code} if code else {})}


def settings_section(odd: dict, kept: int) -> list[str]:
    """The trials whose settings are not the task's majority's, and how they differ; they are left out."""
    if not odd["odd"]:
        return [f"All {kept} trials share their settings outside the searched hyperparameters and the cell "
                "(sweeps.evidence.odd_settings).", ""]
    return ["### Trials left out: settings differ from the other trials'", "",
            f"These trials' configs differ from the settings {kept} trials share (outside the searched hyperparameters "
            "and the cell; see sweeps.evidence.NOT_SETTINGS for what is not compared): another code version or "
            "another setting. They are not pooled with the rest: every section below leaves them out."
            + (" No set of settings has a majority: of the tied ones, the first in sorted order is kept." if odd["tie"] else ""), "",
            table(["record", "differs in (its value; the others')"],
                  [[f"`{o['path']}`", "; ".join(f"{k} = {v} ({m})" for k, v, m in o["differences"])] for o in odd["odd"]],
                  "ll"), ""]


def importance_section(trials: list[Trial], by_variant: dict, figure: Path) -> list[str]:
    """fANOVA over all variants pooled (the cell a category in its forest), then per variant, each share with
    its bootstrap interval; then what the forests left out (hyperparameters, the seed as noise with its
    measured spread, trials off the search scale, groups too small). A task of one variant gets the pooled row only."""
    off = evidence.off_scale(trials)
    out_paths = {t.path for t, _ in off}
    trials = [t for t in trials if t.path not in out_paths]
    by_variant = {v: [t for t in ts if t.path not in out_paths] for v, ts in by_variant.items()}
    groups = {"all variants": trials, **(by_variant if len(by_variant) > 1 else {})}  # one variant: one row
    results, intervals, skipped = {}, {}, []
    for group, ts in groups.items():
        try:
            result, why = evidence.analyse(ts)
        except ValueError as e:  # e.g. a forest that predicts a constant: nothing to attribute
            result, why = None, first_line(str(e))
        if result:
            results[group] = result
            intervals[group] = evidence.importance_intervals(ts)
        else:
            skipped.append(f"{group} ({why})")
    md = [IMPORTANCE_LEAD, ""]
    if results:
        effects = list(dict.fromkeys(k for r in results.values() for k in r.shares))
        figures.importance_bars({f"{g} (R² {r.r2:.2f})": r.shares for g, r in results.items()}, figure,
                                title=f"{trials[0].task}: fANOVA shares of the forest's variance of test {trials[0].metric}")
        md += [table(["trials of", "n", "forest R² (out of bag)", *effects],
                     [[g, len(groups[g]), f"{r.r2:.2f}", *[share_cell(r.shares, intervals[g][0], e) for e in effects]]
                      for g, r in results.items()]), "",
               f"![fANOVA]({figure.name})", "",
               f"In brackets, each share's 95 % bootstrap interval: {evidence.FANOVA_RESAMPLES} resamples of the row's trials "
               f"(with replacement), each forest refit with {evidence.FANOVA_RESAMPLE_TREES} trees (the shares: "
               f"{evidence.TREES}) to bound the cost; the smaller forests' own noise widens the "
               "intervals, and as each sees fewer distinct trials (its leaves smooth more) a share can lie outside its "
               "interval. Resamples "
               "whose forest split: " + ", ".join(f"{g} {intervals[g][1]}" for g in results) + ".", ""]
    md += left_out_lines(trials, groups, results)
    if skipped:
        md += [f"Not analysed (fANOVA needs {evidence.MIN_TRIALS} trials and a varying hyperparameter): "
               + "; ".join(skipped) + ".", ""]
    if off:
        md += [f"Left out of fANOVA, a hyperparameter off its search scale (lr and hidden: log10, momentum: "
               f"log10(1 − momentum)): " + "; ".join(f"`{t.path}` ({why})" for t, why in off) + ".", ""]
    return md


IMPORTANCE_LEAD = (
    "What this measures: a random forest is fitted to each row's trials (test metric against the varying "
    "hyperparameters, each on its search scale, and, where the row spans several variants, the cell as a "
    "category). fANOVA splits the variance of the forest's prediction, averaged over the box of values tried "
    "(each variant weighted alike), into what each one explains on its own (its main effect), the lr × hidden "
    "interaction, and the other interactions. These are shares of the forest's variance, not of the metric's: "
    "noise the forest fitted is credited to hyperparameters, and a single varying hyperparameter gets 100 % by "
    "construction. The forest's out-of-bag R² says how much of the metric's variance it captures at all (near or below 0: "
    "it does not predict trials it did not see, and its shares say little); the seed-to-seed spread below, "
    "where measured, how much no hyperparameter can explain.")


def share_cell(shares: dict, bounds: dict, effect: str) -> str:
    """"58.8 % (18.9–95.6)": the share and its bootstrap interval; an effect absent from a row reads "–"."""
    if effect not in shares:
        return "–"
    lo, hi = bounds.get(effect, (math.nan, math.nan))
    return f"{100 * shares[effect]:.1f} % ({100 * lo:.1f}–{100 * hi:.1f})"


def left_out_lines(trials: list[Trial], groups: dict, results: dict) -> list[str]:
    """What the forests did not see: the hyperparameters left out (and why) and the seed's noise floor."""
    md = []
    skipped = evidence.not_analysed(trials)
    if skipped:
        md += ["Not in the forests: " + "; ".join(f"{name} ({why})" for name, why in skipped)
               + ("; the cell is a column of the pooled row only (one variant per other row)" if len(groups) > 1 else "")
               + ".", ""]
    floors = {g: evidence.seed_noise(ts) for g, ts in groups.items()}
    measured = {g: f for g, f in floors.items() if f}
    if measured:
        md += ["Seed-to-seed spread (draws alike in variant and every searched hyperparameter, run with several "
               "seeds): " + "; ".join(f"{g}: sd {f['sd']:.3g} over {f['draws']} draw{'s' * (f['draws'] != 1)} ({f['trials']} trials), "
                                      f"{100 * f['share']:.1f} % of the metric's variance" for g, f in measured.items())
               + ". That share is noise no hyperparameter can explain.", ""]
    elif len({t.seed for t in trials}) > 1:
        md += ["Seed-to-seed spread: not measured, no draw was run with more than one seed; what the forest "
               "credits to a hyperparameter may partly be that noise.", ""]
    return md


def ranking_table(by_variant: dict, metric: str, mode: str) -> str:
    """Each variant's trial with the best validation metric (a trial without one ranks last), ranked the same way:
    selecting by the test metric would report the luckiest test score, not the model a researcher would pick."""
    sign = 1 if mode == "max" else -1

    def key(t):
        return (t.valid_value is not None, sign * (t.valid_value if t.valid_value is not None else 0.0))

    winners = sorted((max(ts, key=key) for ts in by_variant.values()), key=key, reverse=True)
    return table(["rank", "variant", f"valid {metric}", f"test {metric}", "best epoch", "lr", "hidden", "momentum",
                  "input noise", "seed", "record"],
                 [[i + 1, t.variant, num(t.valid_value), num(t.value), num(t.best_epoch), f"{t.lr:.2e}", t.hidden,
                   num(t.momentum, 3), num(t.input_noise, 3), "–" if t.seed is None else t.seed, f"`{t.path}`"]
                  for i, t in enumerate(winners)], "rlrrrrrrrrl")


EVERY_TRIAL_MAX = 40  # a task with more trials is read through its tables and figures, not row by row


def trials_table(by_variant: dict, metric: str) -> str:
    """Every trial, in variant order, then by hidden size, lr and seed."""
    rows = [t for ts in by_variant.values() for t in sorted(ts, key=lambda t: (t.hidden, t.lr, t.seed or 0))]
    return table(["variant", "lr", "hidden", "momentum", "input noise", "seed", "best epoch", "epochs", "stopped early",
                  f"valid {metric}", f"test {metric}", f"test {metric}, last epoch", "parameters", "wall s"],
                 [[t.variant, f"{t.lr:.2e}", t.hidden, num(t.momentum, 3), num(t.input_noise, 3),
                   "–" if t.seed is None else t.seed, num(t.best_epoch), num(t.epochs), "yes" if t.stopped_early else "no",
                   num(t.valid_value), num(t.value), num(t.final_value), "–" if t.params is None else f"{t.params:,}",
                   "–" if t.wall_seconds is None else f"{t.wall_seconds:.0f}"] for t in rows], "lrrrrrrrlrrrrr")


def write_report(root, out=None, reference: str = "v", title: str | None = None) -> Path:
    """Read the records below `root`, write report.md, report.html and the figures into `out`.

    `root` may also be a records.jsonl.gz (sweeps.records): it is unpacked into a temporary folder and
    read as that folder, the title naming the folder it was packed from; `out` defaults to its folder.
    """
    root = Path(root)
    if records.is_packed(root):
        with tempfile.TemporaryDirectory() as tmp:
            sweep = records.unpack(root, tmp)["sweep"]
            return write_report(tmp, Path(out) if out else root.parent, reference, title=sweep)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of run records or a records{records.SUFFIX}")
    out = Path(out) if out else root / "report"
    trials, problems = load(root, skip=out)
    if not trials and not problems:
        raise FileNotFoundError(f"No run records (result.json or metrics.jsonl) below {root}")
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# Sweep report: `{title or root}`", "",
          f"{len(trials) + len(problems)} run records: {len(trials)} count as trials, {len(problems)} do not "
          f"(listed at the end). Reference variant: `{reference}` (`--reference`).", "", INTRO.format(ref=reference)]
    by_task = defaultdict(list)
    for t in trials:
        by_task[(t.task, t.metric)].append(t)
    for (task, _), ts in sorted(by_task.items()):
        md += task_section(task, ts, root, out, reference)
    md += ["## Runs that do not count", ""]
    md += [table(["record", "status", "error"], [[f"`{p['path']}`", p["status"], first_line(p["error"])]
                                                   for p in problems], "lll") if problems else "None.", ""]
    text = "\n".join(md)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(html(text, out))
    return out / "report.md"


def html(markdown: str, folder: Path) -> str:
    """The same page as one self-contained HTML file: the PNGs are embedded as base64."""
    from markdown_it import MarkdownIt

    def embed(m):
        data = base64.b64encode((folder / m.group(2)).read_bytes()).decode()
        return f"![{m.group(1)}](data:image/png;base64,{data})"

    # html=False: text from records (error messages, paths) is escaped, never passed through as markup
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(re.sub(r"!\[([^]]*)\]\(([^)]+\.png)\)", embed, markdown))
    style = ("body{font-family:sans-serif;max-width:70em;margin:auto;padding:1em}img{max-width:100%}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}")
    return f"<!doctype html><meta charset='utf-8'><title>Sweep report</title><style>{style}</style>\n{body}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", help="folder holding run records (searched recursively), or a records.jsonl.gz "
                                    "packed by sweeps.records")
    parser.add_argument("--out", help="where to write the report (default: <dir>/report; beside a records.jsonl.gz)")
    parser.add_argument("--reference", default="v", help="variant the t-tests compare against (default: v)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.dir, args.out, args.reference)
    except (FileNotFoundError, ValueError) as e:  # ValueError: a records.jsonl.gz that is not one
        sys.exit(f"sweeps.report: {e}")
    print(f"wrote {path}, report.html and the figures beside it")


if __name__ == "__main__":
    main()
