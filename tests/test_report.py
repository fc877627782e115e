"""The sweep report finds what synthetic records were built to show: the hyperparameter that drives the
metric, the variant that is shifted, the runs that did not finish, and draws valid figures."""

from __future__ import annotations

import json
import math
import re

import matplotlib.image
import numpy as np
import pytest

from conftest import SMALL_FORESTS, compose_config, small_forests
from sweeps import evidence, report
from sweeps.evidence import Trial

PNG = b"\x89PNG\r\n\x1a\n"


def write_record(run_dir, *, cell="v", switches=None, task="mnist", objective=("accuracy", "max"), value=0.9,
                 lr=1e-3, hidden=64, momentum=0.9, noise=0.0, seed=0, status="completed", wandb=True, error=None,
                 valid=None):
    """A run record as training/loop.py writes it: metrics.jsonl (3 epochs) and result.json."""
    run_dir.mkdir(parents=True)
    name, mode = objective
    lines = [{"epoch": e, "step": 10 * e, "train": {"loss": 1.0 / e, name: value}, "valid": {"loss": 1.0 / e, name: value},
              "test": {"loss": 1.0 / e, name: value}, "train_seconds": 1.0, "epoch_seconds": 1.2, "seq_per_s": 500.0}
             for e in (1, 2, 3)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = {"cell": {"name": cell, "switches": switches or {}, "forget_bias": 1.0},
              "task": {"name": task, "bidirectional": False},
              "optimizer": {"name": "sgd", "momentum": momentum, "nesterov": True} if momentum is not None
              else {"name": "adam", "b1": 0.9, "b2": 0.999, "eps": 1e-8},
              "lr": lr, "hidden": hidden, "layers": 1, "bidirectional": False, "dropout": 0.0, "input_noise": noise,
              "epochs": 3, "batch_size": 32, "seed": seed}
    result = {"status": status, "cell": cell, "task": task, "run_dir": str(run_dir), "platform": "cpu",
              "device_kind": "cpu", "device_count": 1, "config": config}
    if wandb:
        config["wandb"] = {"mode": "offline", "project": "odyssey", "entity": None, "group": None, "tags": []}
        result["wandb_id"] = f"run{seed}"
    if status == "failed":
        result.update(error=error, traceback=f"Traceback (most recent call last):\n  ...\n{error}\n")
    elif status != "running":
        result.update(num_params=1234, objective={"name": name, "mode": mode}, epochs_completed=3, best_epoch=3,
                      valid={"loss": 0.3, name: value if valid is None else valid}, test={"loss": 0.3, name: value},
                      final={k: lines[-1][k] for k in ("train", "valid", "test")}, wall_seconds=3.6)
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))


def accuracy(lr, shift, rng):
    """Depends on lr only (best at 1e-4), plus the variant's shift and a little seed noise."""
    return 0.95 - 0.02 * (math.log10(lr) + 4) ** 2 + shift + 0.002 * rng.normal()


SHIFTS = {"v": 0.0, "nig": -0.03, "np": 0.0}  # nig is worse by 0.03; np is drawn exactly like v


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A Greff-style random search over three variants, plus a small second task and broken runs."""
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    for cell, shift in SHIFTS.items():
        for i in range(40):
            lr = 10 ** rng.uniform(-6, -2)
            write_record(root / "multirun" / f"cell={cell}" / str(i), cell=cell, value=accuracy(lr, shift, rng), lr=lr,
                         hidden=int(10 ** rng.uniform(np.log10(20), np.log10(200))),
                         momentum=1 - 10 ** rng.uniform(-2, 0), noise=rng.uniform(0, 1), seed=i, wandb=i % 2 == 0)
    for i, cell in enumerate(["v", "np"]):  # a population run: several members, one folder each, no wandb
        write_record(root / "population" / f"member_{i}", cell=cell, switches={"coupled": True} if i else None,
                     task="adding", objective=("mse", "min"), value=0.1 + 0.05 * i, lr=1e-3 * (i + 1),
                     momentum=None, seed=i, wandb=False)
    write_record(root / "multirun" / "broken" / "0", status="failed", error="ValueError: lr must be positive, got -1 <script>x</script>")
    write_record(root / "multirun" / "broken" / "1", status="running")
    write_record(root / "multirun" / "broken" / "2", status="diverged", value=float("nan"))
    (root / "multirun" / "broken" / "2" / "result.json").write_text(
        (root / "multirun" / "broken" / "2" / "result.json").read_text().replace('"accuracy": NaN', '"accuracy": null'))
    killed = root / "multirun" / "broken" / "3"
    killed.mkdir()
    (killed / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    bad = root / "multirun" / "broken" / "4"
    bad.mkdir()
    (bad / "result.json").write_text('{"status": "compl')
    with small_forests():
        report.write_report(root)
    return root


def trials_from(values, lrs, hiddens, noises, variant="v", mode="max"):
    return [Trial(path=str(i), task="t", variant=variant, metric="m", mode=mode, value=float(y), status="completed",
                  lr=float(lr), hidden=int(h), momentum=None, input_noise=float(n), seed=i)
            for i, (y, lr, h, n) in enumerate(zip(values, lrs, hiddens, noises))]


def random_space(n, seed=0):
    rng = np.random.default_rng(seed)
    return 10 ** rng.uniform(-6, -2, n), np.round(10 ** rng.uniform(1.3, 2.3, n)), rng.uniform(0, 1, n), rng


def test_a_metric_that_depends_only_on_lr_gives_lr_the_largest_importance():
    lrs, hiddens, noises, rng = random_space(60)
    values = -(np.log10(lrs) + 4) ** 2 + 0.05 * rng.normal(size=60)
    shares, why = evidence.importance(trials_from(values, lrs, hiddens, noises))
    assert why == "" and set(shares) == {"lr", "hidden", "input_noise", "lr x hidden", evidence.OTHER}
    assert shares["lr"] > 0.8
    assert max(shares, key=shares.get) == "lr"


def test_a_pure_lr_hidden_interaction_is_found_as_the_interaction():
    lrs, hiddens, noises, rng = random_space(120, seed=1)
    values = (np.log10(lrs) + 4) * (np.log10(hiddens) - 1.8)
    shares, _ = evidence.importance(trials_from(values, lrs, hiddens, noises))
    assert shares["lr x hidden"] > 0.4  # the forest, fit to 120 noisy-free points, leaks some into main effects
    assert max(shares, key=shares.get) == "lr x hidden"


def population(values, lrs, variants, seeds):
    """Trials of a population run: lr, cell and seed vary; hidden, noise and the optimizer (Adam) are fixed."""
    return [Trial(path=str(i), task="t", variant=v, metric="m", mode="max", value=float(y), status="completed",
                  lr=float(lr), hidden=128, momentum=None, input_noise=0.0, seed=int(s))
            for i, (y, lr, v, s) in enumerate(zip(values, lrs, variants, seeds))]


def test_a_metric_that_depends_on_the_cell_only_gives_the_cell_the_share():
    """Pooled over variants, the cell is a column of the forest: without it the forest could only credit the
    variants' difference to lr (the issue's "lr 100.0 %" on a population sweep)."""
    rng = np.random.default_rng(0)
    variants = np.repeat(["gru", "np", "v"], 12)
    lrs = 10 ** rng.uniform(-4, -2, 36)
    values = np.select([variants == "gru", variants == "np"], [0.9, 0.7], 0.8) + 0.001 * rng.normal(size=36)
    result, why = evidence.analyse(population(values, lrs, variants, range(36)))
    assert why == "" and result.columns == ["lr", "cell"]
    assert result.shares["cell"] > 0.9 and result.shares["lr"] < 0.05
    assert result.r2 > 0.9  # the forest captures the variants' difference


def test_on_a_population_sweep_lr_no_longer_takes_everything_and_the_seed_is_a_measured_floor():
    """The issue's sweep: lr, cell and seed vary; each (cell, lr) draw runs with 3 seeds. The metric depends on
    lr and the cell, plus seed noise of known size: the cell gets a share, the seed is not a column, and its
    spread is measured as the noise floor (within-draw variance over the total)."""
    rng = np.random.default_rng(1)
    draws = [(v, lr) for v in ("v", "gru") for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)]
    variants, lrs, seeds = zip(*[(v, lr, s) for v, lr in draws for s in range(3)])
    variants, lrs = np.array(variants), np.array(lrs)
    noise = 0.02 * rng.normal(size=len(lrs))
    values = -0.1 * (np.log10(lrs) + 3) ** 2 + 0.1 * (variants == "gru") + noise
    trials = population(values, lrs, variants, seeds)
    result, _ = evidence.analyse(trials)
    assert result.columns == ["lr", "cell"] and 0.2 < result.shares["cell"] < 0.8 and result.shares["lr"] < 0.8
    floor = evidence.seed_noise(trials)
    assert floor["draws"] == 10 and floor["trials"] == 30
    assert floor["sd"] == pytest.approx(0.02, rel=0.35)
    assert floor["share"] == pytest.approx(np.var(noise, ddof=1) / np.var(values, ddof=1), rel=0.5)
    assert ("seed", "noise: see the seed-to-seed spread") in evidence.not_analysed(trials)


def test_the_seed_noise_floor_is_the_pooled_within_draw_variance_over_the_total():
    """Two draws, each run with two seeds: values 1, 3 and 10, 12. Within: (2 + 2) / 2 = 2; total: 85 / 3."""
    trials = population([1, 3, 10, 12], [1e-3, 1e-3, 1e-2, 1e-2], ["v"] * 4, range(4))
    floor = evidence.seed_noise(trials)
    assert floor == {"draws": 2, "trials": 4, "sd": pytest.approx(math.sqrt(2)), "share": pytest.approx(2 / (85 / 3))}
    assert evidence.seed_noise(trials[::2]) is None  # no draw repeated: nothing to measure


def test_what_the_forest_leaves_out_is_named_with_why():
    trials = population(range(12), 10 ** np.linspace(-4, -2, 12), ["v"] * 12, [0] * 12)
    assert evidence.not_analysed(trials) == [("hidden", "fixed at 128"), ("momentum", "not used (Adam)"),
                                             ("input_noise", "fixed at 0"),
                                             ("seed", "fixed at 0: its noise is in every trial, unmeasured")]


def test_the_report_says_what_fanova_measures_and_names_the_seed_floor_and_what_it_left_out(tmp_path):
    """A population sweep's records (lr, cell, seed vary; Adam; hidden fixed) through the whole report."""
    rng = np.random.default_rng(2)
    for cell in ("v", "gru"):
        for lr in (1e-4, 1e-3, 1e-2):
            for seed in range(2):
                write_record(tmp_path / f"{cell}-{lr}-{seed}", cell=cell, lr=lr, seed=seed, momentum=None,
                             value=0.8 + 0.05 * (cell == "gru") - 0.02 * abs(math.log10(lr) + 3) + 0.002 * rng.normal())
    with small_forests():  # what is written where, not the shares' precision
        report.write_report(tmp_path)
    fanova = section((tmp_path / "report" / "report.md").read_text(), "Hyperparameter importance", "###")
    assert "shares of the forest's variance, not of the metric's" in fanova and "out-of-bag R²" in fanova
    assert "what no hyperparameter explains" not in fanova and "| rest |" not in fanova
    header = next(line for line in fanova.splitlines() if line.startswith("| trials of"))
    assert "| lr | cell | other interactions |" in header
    assert "Not in the forests: hidden (fixed at 64); momentum (not used (Adam)); input_noise (fixed at 0); " \
           "seed (noise: see the seed-to-seed spread)" in fanova
    assert re.search(r"Seed-to-seed spread .*all variants: sd [0-9.e-]+ over 6 draws \(12 trials\)", fanova)
    assert "Not analysed (fANOVA needs 10 trials and a varying hyperparameter): v (6 trials); gru (6 trials)." in fanova


def test_fanova_attributes_a_one_column_function_to_that_column():
    """evidence.fanova_shares, on scikit-learn's public tree arrays, against a known answer."""
    X = np.random.default_rng(0).uniform(0, 1, (50, 2))
    shares, _ = evidence.fanova_shares(X, np.sin(3 * X[:, 0]), [(0,), (1,), (0, 1)])
    assert shares[(0,)] > 0.95 and shares[(1,)] < 0.02 and shares[(0, 1)] < 0.02


def test_importance_analyses_only_what_varies_and_skips_too_few_trials():
    lrs, hiddens, noises, _ = random_space(30)
    shares, _ = evidence.importance(trials_from(np.log10(lrs), lrs, [64] * 30, [0.0] * 30))
    assert set(shares) == {"lr", evidence.OTHER}  # hidden and noise are fixed; momentum is absent (Adam)
    shares, why = evidence.importance(trials_from(np.log10(lrs[:5]), lrs[:5], hiddens[:5], noises[:5]))
    assert shares is None and why == "5 trials"


def test_the_fewest_trials_analysed_still_give_a_forest_that_splits():
    """MIN_TRIALS trials (Greff's 10 draws per variant): a bootstrap holds ~6 distinct of them, so leaves of
    at least 5 never allow a split and the forest predicts a constant; the leaf size must follow n."""
    lrs, hiddens, noises, rng = random_space(evidence.MIN_TRIALS)
    values = np.log10(lrs) + 0.01 * rng.normal(size=evidence.MIN_TRIALS)
    shares, why = evidence.importance(trials_from(values, lrs, hiddens, noises))
    assert why == "" and max(shares, key=shares.get) == "lr"
    assert [evidence.leaf_size(n) for n in (10, 20, 49, 50, 90, 2000)] == [1, 2, 4, 5, 5, 10]


@pytest.mark.slow
def test_the_importances_do_not_hang_on_the_forests_seed():
    """A study's fANOVA shares are evidence, so the forest's seed may move them by a point or two, not ten
    (32 trees moved lr by 12 points on docs/studies/greff_jsb's 90 trials)."""
    lrs, hiddens, noises, rng = random_space(90)
    values = -(np.log10(lrs) + 4) ** 2 + 3 * noises + 2 * rng.normal(size=90)  # noisy: 32 trees spread lr by 8 points
    trials = trials_from(values, lrs, hiddens, noises)
    runs = [evidence.importance(trials, seed=seed)[0] for seed in range(4)]
    for key in runs[0]:
        spread = max(r[key] for r in runs) - min(r[key] for r in runs)
        assert spread < 0.03, (key, [round(r[key], 3) for r in runs])


def test_welch_finds_the_shifted_variant_and_not_the_one_drawn_alike():
    rng = np.random.default_rng(0)
    groups = {"v": rng.normal(0.9, 0.02, 40), "nig": rng.normal(0.88, 0.02, 40), "np": rng.normal(0.9, 0.02, 40)}
    rows = {r["variant"]: r for r in evidence.compare_to(groups)}
    assert set(rows) == {"nig", "np"} and rows["nig"]["threshold"] == pytest.approx(0.025)
    assert rows["nig"]["significant"] and rows["nig"]["diff"] == pytest.approx(-0.02, abs=0.01)
    assert not rows["np"]["significant"]
    assert evidence.compare_to({"nig": [1, 2], "np": [1, 2]}) == []  # no reference, nothing to compare


def test_groups_without_any_spread_are_not_testable_rather_than_infinitely_significant():
    """Accuracies on a small test set tie (FSDD: steps of 1/300); Welch's test on two constant groups
    would report p = 0."""
    rows = evidence.compare_to({"v": [0.9967, 0.9967], "gru": [0.9867, 0.9867]})
    assert np.isnan(rows[0]["p"]) and not rows[0]["significant"] and not rows[0]["uncorrected"]


def test_best_share_takes_the_best_tenth_in_the_objectives_direction():
    assert list(evidence.best_share(range(20), "max")) == [19, 18]
    assert list(evidence.best_share(range(20), "min")) == [0, 1]
    assert len(evidence.best_share(range(200), "max")) == 20


def test_variant_names_carry_their_switches():
    assert report.variant_name({"name": "np", "switches": {"coupled": True}}) == "np+coupled"
    assert report.variant_name({"name": "v", "switches": {"peepholes": False}}) == "v+peepholes=false"
    assert report.variant_name({"name": "gru"}) == "gru"


def section(text: str, title: str, level: str = "##") -> str:
    """The body of the markdown section whose heading starts with `title`, up to the next heading of its level."""
    return text.split(f"\n{level} {title}", 1)[1].split(f"\n{level} ", 1)[0]


def test_report_lists_every_run_that_does_not_count_with_its_reason(sweep):
    md = (sweep / "report" / "report.md").read_text()
    problems = section(md, "Runs that do not count")
    assert "`multirun/broken/0` | failed | ValueError: lr must be positive, got -1" in problems
    assert "`multirun/broken/1` | running | still running, or killed: 3 epoch(s) logged" in problems
    assert "`multirun/broken/2` | diverged | no finite test accuracy in result.json (got None)" in problems
    assert "`multirun/broken/3` | no result.json | did not finish: 2 epoch(s)" in problems
    assert "`multirun/broken/4` | unreadable |" in problems
    assert "122 count as trials, 5 do not" in md


def test_report_marks_the_shifted_variant_significant_and_ranks_by_the_metric(sweep):
    md = (sweep / "report" / "report.md").read_text()
    mnist = section(md, "mnist: test accuracy (higher is better)")
    welch = section(mnist, "Welch's t-test against v", "###")
    assert "0.05 / 2 = 0.025" in welch
    assert [line.split(" | ")[4] for line in welch.splitlines() if line.startswith(("| nig", "| np"))] == ["yes", "no"]
    ranking = [line for line in section(mnist, "Best trial per variant", "###").splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[1] for row in ranking[2:]][-1] == "nig"  # the shifted variant's best is the worst best
    assert "`multirun/cell=nig/" in ranking[-1]


def test_the_best_trial_is_the_one_validation_selects_and_a_small_study_lists_every_trial(tmp_path):
    """Trial 0 has the better validation accuracy, trial 1 the better test accuracy: a researcher picks trial 0,
    so the report does, and reports its test accuracy (0.9), not the luckier 0.95; all four trials get a row."""
    for i, (valid, test, hidden) in enumerate([(0.93, 0.90, 64), (0.91, 0.95, 128)]):
        write_record(tmp_path / "multirun" / f"cell=v,trial_{i}", cell="v", value=test, valid=valid, hidden=hidden, wandb=False)
        write_record(tmp_path / "multirun" / f"cell=np,trial_{i}", cell="np", value=0.5 + i / 10, valid=0.5 - i / 10,
                     hidden=hidden, wandb=False)
    with small_forests():
        md = report.write_report(tmp_path / "multirun").read_text()
    ranking = [row.split(" | ") for row in section(md, "Best trial per variant", "###").splitlines() if row.startswith("| ")][2:]
    assert [(r[1], r[2], r[3], r[-1]) for r in ranking] == [("v", "0.93", "0.9", "`cell=v,trial_0` |"),
                                                          ("np", "0.5", "0.5", "`cell=np,trial_0` |")]
    every = [row.split(" | ") for row in section(md, "Every trial", "###").splitlines() if row.startswith("| ")][2:]
    assert [(r[0].strip("| "), r[2], r[9], r[10], r[12]) for r in every] == [
        ("v", "64", "0.93", "0.9", "1,234"), ("v", "128", "0.91", "0.95", "1,234"),
        ("np", "64", "0.5", "0.5", "1,234"), ("np", "128", "0.4", "0.6", "1,234")]


def test_a_task_of_more_than_40_trials_is_not_listed_row_by_row(sweep):
    md = (sweep / "report" / "report.md").read_text()
    assert "### Every trial" not in section(md, "mnist: test accuracy (higher is better)")  # 120 trials
    assert "### Every trial" in section(md, "adding")  # 2 trials


def test_a_paired_designs_box_plot_stars_the_variant_the_paired_test_finds_where_welchs_sees_nothing(tmp_path, monkeypatch):
    """nfg is v's trial plus 0.01 on each of 12 shared draws whose lr spreads them over 0.3: Welch's test cannot
    tell, the paired test can; the figure marks it (a star beside its name) and says what the star means."""
    rng = np.random.default_rng(1)
    draws = [(10 ** rng.uniform(-5, -2), int(rng.integers(20, 200)), 1 - 10 ** rng.uniform(-2, 0)) for _ in range(12)]
    for cell, shift in (("v", 0.0), ("nfg", -0.01), ("np", 0.0)):
        for i, (lr, hidden, momentum) in enumerate(draws):
            value = 0.9 - 0.03 * (math.log10(lr) + 3.5) ** 2 + shift + (0.0005 * rng.normal() if cell == "np" else 0)
            write_record(tmp_path / "multirun" / f"cell={cell}" / str(i), cell=cell, lr=lr, hidden=hidden,
                         momentum=momentum, value=value, seed=0, wandb=False)
    drawn = {}
    real = report.figures.box_plots
    monkeypatch.setattr(report.figures, "box_plots", lambda *a, **k: drawn.update(args=a) or real(*a, **k))
    with small_forests():
        report.write_report(tmp_path)
    welch, starred = drawn["args"][4], drawn["args"][7]
    assert welch == set() and starred == {"nfg"}
    assert "a star beside a name marks a variant the paired test finds different" in (tmp_path / "report" / "report.md").read_text()


def test_report_finds_lr_most_important_in_each_variant(sweep):
    mnist = section((sweep / "report" / "report.md").read_text(), "mnist")
    fanova = section(mnist, "Hyperparameter importance", "###")
    header, _, *rows = [line.strip("| ").split(" | ") for line in fanova.splitlines() if line.startswith("|")]
    assert header == ["trials of", "n", "forest R² (out of bag)", "lr", "hidden", "momentum", "input_noise", "cell",
                      "lr x hidden", "other interactions"]
    assert [row[:2] for row in rows] == [["all variants", "120"], ["v", "40"], ["nig", "40"], ["np", "40"]]
    for row in rows:  # "96.1 % (90.2–98.0)": every share with its bootstrap interval; the cell only where pooled
        cells = dict(zip(header[3:], row[3:]))
        assert (cells["cell"] == "–") == (row[0] != "all variants"), row
        shares = {h: float(v.split(" %")[0]) for h, v in cells.items() if v != "–"}
        assert all(re.fullmatch(r"\d+\.\d % \(\d+\.\d–\d+\.\d\)", v) for v in cells.values() if v != "–"), row
        assert shares["lr"] > 50 and max(shares, key=shares.get) == "lr", row
        assert 0.6 < float(row[2]) <= 1, row  # lr and the shift explain most; the rest is seed noise and the fit
    assert "Not in the forests: seed (noise: see the seed-to-seed spread)" in fanova


def test_a_task_with_few_trials_and_no_reference_is_reported_with_notes(sweep):
    adding = section((sweep / "report" / "report.md").read_text(), "adding")
    assert "lower is better" in adding and "| np+coupled | 1 |" in adding
    assert "all variants (2 trials); v (1 trial); np+coupled (1 trial)." in adding
    assert "No comparison" not in adding and "(Bonferroni over 1 comparison)" in adding
    assert "`population/member_0`" in adding


def test_figures_are_valid_pngs_and_the_html_page_embeds_them(sweep):
    out = sweep / "report"
    names = {p.name for p in out.glob("*.png")}
    assert names == {"mnist_box.png", "mnist_lr.png", "mnist_importance.png", "mnist_curves.png", "adding_box.png",
                     "adding_lr.png", "adding_curves.png"}
    for name in names:
        assert (out / name).read_bytes()[:8] == PNG
        height, width, _ = matplotlib.image.imread(out / name).shape
        assert height > 200 and width > 300
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 7 and "<table>" in page


def test_command_line_writes_elsewhere_and_refuses_a_folder_without_records(sweep, tmp_path, capsys):
    report.main([str(sweep / "population"), "--out", str(tmp_path / "r"), "--reference", "np"])
    assert (tmp_path / "r" / "report.md").exists() and "wrote" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="No run records"):
        report.main([str(tmp_path / "empty")])
    with pytest.raises(SystemExit, match="is not a folder"):
        report.main([str(tmp_path / "missing")])


@pytest.mark.slow
def test_records_written_by_train_are_read_as_trials(tmp_path):
    """The synthetic records above mirror the real ones; this keeps them honest against training/loop.py."""
    from training import train

    train(compose_config("cell=np", "cell.switches.coupled=true", "optimizer=sgd", "input_noise=0.1"), tmp_path / "a")
    with pytest.raises(ValueError):
        train(compose_config("cell=v", "batch_size=1000"), tmp_path / "b")  # larger than the training set: fails
    trials, problems = report.load(tmp_path)
    [trial] = trials
    assert (trial.path, trial.task, trial.variant, trial.metric, trial.mode) == ("a", "adding", "np+coupled", "mse", "min")
    assert trial.momentum == 0.9 and trial.input_noise == 0.1 and trial.hidden == 8 and trial.seed == 0
    assert problems == [{"path": "b", "status": "failed", "error": problems[0]["error"]}]
    assert "batch_size=1000 is larger than the training set" in problems[0]["error"]
    report.write_report(tmp_path)
    assert "`b` | failed | ValueError: batch_size=1000" in (tmp_path / "report" / "report.md").read_text()


def test_the_summary_per_variant_gives_mean_and_sd_at_the_best_and_last_epoch_and_seconds_per_epoch(sweep):
    mnist = section((sweep / "report" / "report.md").read_text(), "mnist")
    summary = mnist.split("### Summary per variant")[1].split("###")[0]
    assert "| v | 40 | " in summary and " ± " in summary and "| 1.2 |" in summary  # median s/epoch of the records


def test_with_two_trials_per_variant_the_report_says_the_best_10_percent_is_every_trial(sweep):
    adding = section((sweep / "report" / "report.md").read_text(), "adding")
    assert "Too few trials for a best 10 %: for v, np+coupled it is every trial" in adding


def test_error_messages_from_records_are_escaped_in_the_html_page(sweep):
    page = (sweep / "report" / "report.html").read_text()
    assert "<script>x</script>" not in page and "&lt;script&gt;" in page


def test_an_analysis_that_cannot_run_leaves_its_reason_and_the_rest_of_the_report(tmp_path):
    """12 trials whose metric is the same everywhere: fANOVA's forest is constant, the rest is still written."""
    for i, (cell, lr) in enumerate((c, lr) for c in ("v", "np", "nfg", "cifg") for lr in (1e-3, 3e-3, 1e-2)):
        write_record(tmp_path / f"{cell}-{lr}", cell=cell, lr=lr, task="adding", objective=("mse", "min"), value=0.25,
                     momentum=None, seed=i)
    report.write_report(tmp_path)
    text = (tmp_path / "report" / "report.md").read_text()
    fanova = text.split("### Hyperparameter importance (fANOVA)")[1].split("###")[0]
    assert "the test metric is the same in every trial" in fanova or "Not computed" in fanova
    assert "### Best trial per variant" in text and (tmp_path / "report" / "adding_box.png").exists()


def test_a_failing_fanova_is_named_per_group_and_the_report_goes_on(tmp_path, monkeypatch):
    def constant_forest(trials, seed=0):
        raise ValueError("fANOVA: the forest predicts a constant; nothing to attribute")

    monkeypatch.setattr(evidence, "analyse", constant_forest)
    for i, lr in enumerate((1e-3, 3e-3, 1e-2)):
        write_record(tmp_path / str(i), lr=lr, value=0.9 + 0.01 * i, momentum=None, seed=i)
    report.write_report(tmp_path)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "all variants (fANOVA: the forest predicts a constant; nothing to attribute)" in text
    assert "### Best trial per variant" in text


def test_fanova_splits_an_additive_function_by_its_terms_variances():
    """y = x0 + 2 x1 on a uniform square: Var shares 1/5 and 4/5, no interaction."""
    X = np.random.default_rng(1).uniform(0, 1, (400, 2))
    shares, _ = evidence.fanova_shares(X, X[:, 0] + 2 * X[:, 1], [(0,), (1,), (0, 1)])
    assert shares[(0,)] == pytest.approx(0.2, abs=0.06) and shares[(1,)] == pytest.approx(0.8, abs=0.06)
    assert shares[(0, 1)] < 0.03


def test_holm_steps_down_where_bonferroni_stops_and_leaves_untestable_comparisons_out():
    """p = 0.01, 0.02, 0.04: Bonferroni (0.05 / 3) rejects only the first; Holm compares 0.01 with 0.05 / 3,
    0.02 with 0.05 / 2 and 0.04 with 0.05: all three, adjusted 0.03, 0.04, 0.04."""
    adjusted, reject = evidence.holm([0.04, 0.01, 0.02])
    assert adjusted == pytest.approx([0.04, 0.03, 0.04]) and reject == [True, True, True]
    adjusted, reject = evidence.holm([0.01, float("nan"), 0.04])  # a family of two testable comparisons
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
    assert reject == [True, False, True]
    rows = evidence.compare_to({"v": [0.9967, 0.9967], "gru": [0.9867, 0.9867]})  # not testable: not rejected
    assert math.isnan(rows[0]["holm_p"]) and rows[0]["holm"] is False


def test_effect_intervals_cover_a_known_difference_in_the_metrics_units():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.1, 200), rng.normal(0.5, 0.1, 200)
    for statistic in ("mean", "median"):
        e = evidence.effect(a, b, statistic)
        assert e["low"] < 0.5 < e["high"] and e["high"] - e["low"] < 0.08, (statistic, e)
        assert e["low"] < e["diff"] < e["high"]
    assert evidence.effect([2.0, 2.0], [1.0, 1.0]) == {"diff": 1.0, "low": 1.0, "high": 1.0}  # no spread at all
    assert math.isnan(evidence.effect([2.0], [1.0, 1.5])["low"])  # one trial: no interval
    e = evidence.effect(rng.normal(0.3, 0.1, 100), None)  # one sample (paired differences)
    assert e["low"] < 0.3 < e["high"]


def test_the_detectable_difference_matches_the_power_tables():
    """Cohen's table: two groups of 20 detect d = 0.91 sd with 80 % power at 5 %; for large n the normal
    approximation (z_0.975 + z_0.8) * sd * sqrt(1/n1 + 1/n2) holds; n pairs: (z + z) * sd / sqrt(n)."""
    assert evidence.detectable(20, 1.0, 0.05, 20) == pytest.approx(0.909, abs=0.002)
    assert evidence.detectable(20, 2.5, 0.05, 20) == pytest.approx(2.5 * 0.909, abs=0.005)  # in the metric's units
    z = 1.959964 + 0.841621
    assert evidence.detectable(2000, 0.3, 0.05, 1000) == pytest.approx(z * 0.3 * math.sqrt(1 / 2000 + 1 / 1000), rel=0.002)
    assert evidence.detectable(2000, 0.3, 0.05) == pytest.approx(z * 0.3 / math.sqrt(2000), rel=0.002)
    assert evidence.detectable(10, 1.0, 0.05 / 8) > evidence.detectable(10, 1.0, 0.05)  # stricter alpha, larger
    assert math.isnan(evidence.detectable(1, 1.0, 0.05, 5))


def drawn(values, draws, variant, seeds=None):
    """Trials of one variant on given draws (lr, hidden, momentum, input noise), one value each."""
    return [Trial(path=f"{variant}/{i}", task="t", variant=variant, metric="nll", mode="min", value=float(y),
                  status="completed", lr=lr, hidden=h, momentum=m, input_noise=n, seed=0 if seeds is None else seeds[i])
            for i, (y, (lr, h, m, n)) in enumerate(zip(values, draws))]


def test_shared_draws_are_paired_and_wilcoxon_finds_a_shift_that_welch_misses():
    """The draw moves the metric by tens of nats, the variant by 0.5: unpaired, the spread hides the shift;
    paired, all 10 differences are positive, and the exact two-sided signed-rank p is 2 / 2^10."""
    rng = np.random.default_rng(0)
    draws = [(10 ** rng.uniform(-6, -2), int(rng.integers(20, 200)), 1 - 10 ** rng.uniform(-2, 0), rng.uniform(0, 1))
             for _ in range(10)]
    base = 10 + 40 * rng.uniform(size=10)
    v = drawn(base, draws, "v")
    by_variant = {"v": v, "nfg": drawn(base + 0.5 + 0.01 * rng.normal(size=10), draws, "nfg"),
                  "np": drawn(base + 0.01 * rng.normal(size=10), draws, "np"),
                  "cifg": drawn((base + 0.5)[:7], draws[:7], "cifg")}  # 3 draws never finished: 7 complete pairs
    rows = {r["variant"]: r for r in evidence.paired_compare_to(by_variant, "v")}
    assert [rows[n]["pairs"] for n in ("nfg", "np", "cifg")] == [10, 10, 7]
    assert (rows["nfg"]["below"], rows["nfg"]["above"]) == (0, 10) and (rows["cifg"]["below"], rows["cifg"]["above"]) == (0, 7)
    assert rows["np"]["below"] + rows["np"]["above"] == 10 and rows["np"]["below"] == int(np.sum(
        [a.value < b.value for a, b in zip(by_variant["np"], v)]))  # the pairs below v, counted here by hand
    assert rows["nfg"]["p"] == pytest.approx(2 / 2 ** 10) and rows["cifg"]["p"] == pytest.approx(2 / 2 ** 7)
    assert rows["nfg"]["holm"] and rows["cifg"]["holm"] and not rows["np"]["holm"]
    assert rows["nfg"]["holm_p"] == pytest.approx(3 * 2 / 2 ** 10)  # Holm's first step: the smallest p times m = 3
    assert rows["nfg"]["median"]["low"] < 0.5 < rows["nfg"]["median"]["high"]
    assert rows["nfg"]["detectable"] < 0.05  # differences spread by 0.01 nats: 10 pairs resolve a few hundredths
    welch = {r["variant"]: r for r in evidence.compare_to({k: [t.value for t in ts] for k, ts in by_variant.items()}, "v")}
    assert not welch["nfg"]["uncorrected"]
    # another seed is another draw: no pair; a draw held twice by one variant cannot be matched one to one
    assert evidence.pairs(drawn(base, draws, "gru", seeds=[1] * 10), v) == ([], 0)
    matched, duplicated = evidence.pairs(drawn(base[[0, 0, 1]], [draws[0], draws[0], draws[1]], "gru"), v)
    assert len(matched) == 1 and duplicated == 1


@pytest.mark.slow
def test_fanova_intervals_cover_the_share_of_the_hyperparameter_that_drives_the_metric():
    lrs, hiddens, noises, rng = random_space(60)
    trials = trials_from(-(np.log10(lrs) + 4) ** 2 + 0.05 * rng.normal(size=60), lrs, hiddens, noises)
    bounds, used = evidence.importance_intervals(trials, resamples=20)
    point, _ = evidence.importance(trials)
    assert used == 20 and set(bounds) == set(point)
    assert bounds["lr"][0] > 0.6 and bounds["lr"][0] <= point["lr"] <= bounds["lr"][1]
    assert bounds["hidden"][1] < 0.3 and bounds["input_noise"][1] < 0.3
    assert evidence.importance_intervals(trials, resamples=20) == (bounds, used)  # seeded: the same every time


CONFIG = {"cell": {"name": "v", "switches": {}, "forget_bias": 1.0}, "task": {"name": "jsb", "loss": "per_sequence"},
          "optimizer": {"name": "sgd", "momentum": 0.9, "one_minus_momentum": 0.1, "nesterov": True},
          "lr": 1e-3, "hidden": 64, "input_noise": 0.0, "seed": 0, "epochs": 150, "patience": 15, "batch_size": 1,
          "speed": {"dtype": "float32", "cpu_devices": 1}, "wandb": {"mode": "offline"}, "data_dir": "/data"}


def config(**changes):
    """CONFIG with dotted keys changed ("task.loss": ...), or removed (value evidence.ABSENT)."""
    out = json.loads(json.dumps(CONFIG))
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node[p]
        if value is evidence.ABSENT:
            del node[last]
        else:
            node[last] = value
    return out


def test_odd_settings_names_each_trial_whose_settings_are_not_the_majoritys_and_how():
    configs = {f"ok{i}": config(lr=10 ** -i, hidden=20 + i, seed=i, input_noise=i / 10, **{"optimizer.momentum": 0.5,
               "optimizer.one_minus_momentum": 0.5, "cell.name": "nig", "cell.switches": {"coupled": True},
               "wandb.mode": "disabled", "data_dir": f"/d{i}", "speed.cpu_devices": i}) for i in range(5)}
    configs |= {"batch": config(batch_size=16), "loss": config(**{"task.loss": "per_step"}),
                "old": config(**{"task.loss": evidence.ABSENT}), "adam": config(**{"optimizer.name": "adam"}),
                "bf16": config(**{"speed.dtype": "bfloat16"}), "long": config(epochs=400, patience=20)}
    odd = evidence.odd_settings(configs)
    assert odd["kept"] == 5 and not odd["tie"]  # searched hyperparameters, cell and bookkeeping differ freely
    assert {o["path"]: o["differences"] for o in odd["odd"]} == {
        "adam": [("optimizer.name", '"adam"', '"sgd"')],
        "batch": [("batch_size", "16", "1")],
        "bf16": [("speed.dtype", '"bfloat16"', '"float32"')],
        "long": [("epochs", "400", "150"), ("patience", "20", "15")],
        "loss": [("task.loss", '"per_step"', '"per_sequence"')],
        "old": [("task.loss", evidence.ABSENT, '"per_sequence"')]}
    tie = evidence.odd_settings({"a": config(), "b": config(batch_size=16)})
    assert tie["tie"] and tie["kept"] == 1 and [o["path"] for o in tie["odd"]] == ["b"]  # '{"batch_size": "1"' sorts first


def test_each_cells_own_keys_are_compared_only_among_that_cells_trials():
    """A minGRU's config has no recurrent_init and an LSTM's has a forget_bias: that is what tells the cells
    apart, not a setting that makes their trials unlike; an LSTM trial with another forget_bias is."""
    mingru = {"name": "mingru", "switches": {}, "kernel_init": "glorot_uniform"}
    configs = {f"np{i}": config(seed=i) for i in range(3)} | {f"mingru{i}": config(seed=i, cell=mingru) for i in range(2)}
    configs["np_odd"] = config(**{"cell.forget_bias": 0.0})
    odd = evidence.odd_settings(configs)
    assert odd["kept"] == 5 and not odd["tie"]
    assert odd["odd"] == [{"path": "np_odd", "differences": [("cell.forget_bias", "0.0", "1.0")]}]


def test_records_made_by_another_commit_are_left_out_as_another_setting_is(tmp_path):
    """A study resumed by newer code would pool two code versions: the commit each record names is compared
    as a setting; records written before commits were recorded carry none and compare equal."""
    for name, commit in (("a1", "aaa"), ("a2", "aaa"), ("b", "bbb"), ("old", None)):
        record = {"status": "completed", "config": config(lr=0.1)}
        if commit:
            record["provenance"] = {"commit": commit, "dirty": False}
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps(record))
    odd = evidence.odd_settings({name: report.config_of(tmp_path / name) for name in ("a1", "a2", "b", "old")})
    assert odd["kept"] == 2
    assert {o["path"]: o["differences"] for o in odd["odd"]} == {"b": [("code", '"bbb"', '"aaa"')],
                                                               "old": [("code", evidence.ABSENT, '"aaa"')]}


@pytest.mark.slow
def test_a_study_mixing_settings_reports_its_odd_trials_and_pairs_the_rest(tmp_path):
    """Three variants on the same 12 draws, nig worse by 0.01 in every draw; two more v trials run with
    another batch size and another patience: they are named and left out, never pooled."""
    rng = np.random.default_rng(0)
    draws = [(10 ** rng.uniform(-6, -2), int(rng.integers(20, 200)), 1 - 10 ** rng.uniform(-2, 0), rng.uniform(0, 1))
             for _ in range(12)]
    for cell, shift in (("v", 0.0), ("nig", -0.01), ("np", 0.0)):
        for i, (lr, hidden, momentum, noise) in enumerate(draws[: 11 if cell == "np" else 12]):  # np lacks a draw
            write_record(tmp_path / f"cell={cell}" / str(i), cell=cell, lr=lr, hidden=hidden, momentum=momentum,
                         noise=noise, value=accuracy(lr, shift, rng))
    for name, key, value in (("batch", "batch_size", 16), ("patience", "patience", 5)):
        write_record(tmp_path / "odd" / name, lr=draws[0][0], value=0.5)
        record = json.loads((tmp_path / "odd" / name / "result.json").read_text())
        record["config"][key] = value
        (tmp_path / "odd" / name / "result.json").write_text(json.dumps(record))
    report.write_report(tmp_path)
    mnist = section((tmp_path / "report" / "report.md").read_text(), "mnist")
    assert "35 trials of 3 variant(s). 2 more left out: their settings differ (below)." in mnist
    odd = section(mnist, "Trials left out: settings differ from the other trials'", "###")
    assert "`odd/batch` | batch_size = 16 (32) |" in odd
    assert "`odd/patience` | patience = 5 (absent) |" in odd  # write_record's config has no patience key
    assert "| v | 12 | " in section(mnist, "Summary per variant", "###")  # not 14: the odd two are out
    paired = section(mnist, "Paired comparison against v", "###")
    assert "Design: **paired**. 2 of 2 variants share draws" in paired
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in paired.splitlines() if line.startswith("| n")}
    assert rows["nig"][1] == "12" and rows["np"][1] == "11" and rows["nig"][7] == "yes" and rows["np"][7] == "no"
    below, above = map(int, rows["nig"][2].split(" / "))  # pairs with nig below / above v
    assert below + above == 12
    effects = section(mnist, "Effect sizes against v", "###")
    assert "| nig | 12 / 12 |" in effects and "| np | 11 / 12 |" in effects and "80 % power at p < 0.025" in effects


def test_the_report_says_when_there_is_nothing_to_pair_and_gives_every_new_section(sweep):
    md = (sweep / "report" / "report.md").read_text()
    mnist = section(md, "mnist")
    assert "Design: **unpaired**. No trial of another variant repeats a draw" in mnist  # every trial drew its own
    assert "All 120 trials share their settings" in mnist
    welch = section(mnist, "Welch's t-test against v", "###")
    assert "Holm: the step-down correction over the 2 testable comparisons" in welch
    effects = [line.split(" | ") for line in section(mnist, "Effect sizes against v", "###").splitlines()
               if line.startswith("| nig")]
    low, high = map(float, effects[0][2].split("[")[1].rstrip("]").split(", "))
    assert low < -0.03 + 0.01 and high > -0.03 - 0.01 and high < 0  # the 0.03 shift (plus the draws' spread)
    intervals = section(mnist, "Hyperparameter importance", "###").split("95 % bootstrap interval")[1]
    resamples, trees, shares = (SMALL_FORESTS[k] for k in ("FANOVA_RESAMPLES", "FANOVA_RESAMPLE_TREES", "TREES"))
    assert f"{resamples} resamples of the row's trials" in intervals  # the sizes the report used, named
    assert f"each forest refit with {trees} trees (the shares: {shares})" in intervals
    assert f"Resamples whose forest split: all variants {resamples}, v {resamples}, nig {resamples}, np {resamples}." in intervals


@pytest.mark.slow
def test_fanova_main_effects_agree_with_optunas_fanova_evaluator_on_one_synthetic_study(monkeypatch):
    """evidence.fanova_shares against optuna.importance.FanovaImportanceEvaluator on the same 200 trials of a
    known function of Greff's four hyperparameters, each on the scale it is analysed on (Optuna's evaluator reads
    a log-scale parameter on its raw scale, so the study holds the log10 values, and it averages over the
    distributions' bounds, so these are the observed ranges, the box evidence averages over).

    Tolerances, measured on this function over 8 draws of the trials x Optuna forest seeds 0 and 1: with the
    forests' leaves alike (min_samples_leaf 1, Optuna's) the main effects differ by at most 0.0096 of the
    variance (the forests' randomness: 1,024 trees here, 64 there), so 0.02; with evidence's own leaves (at
    least 5 trials, which smooth its forest: see evidence.leaf_size) by 0.037-0.077, so 0.1, and the ranking
    was the same every time."""
    import optuna
    from optuna.distributions import FloatDistribution

    rng = np.random.default_rng(0)
    names = ["lr", "hidden", "momentum", "input_noise"]  # log10 lr, log10 hidden, log10(1 - momentum), noise
    low, high = np.array([-6, math.log10(20), -2, 0.0]), np.array([-2, math.log10(200), 0, 1.0])
    X = low + (high - low) * rng.random((200, 4))
    u = (X - low) / (high - low)
    y = 3 * np.sin(3 * u[:, 0]) + 8 * (u[:, 1] - 0.5) ** 2 + 0.8 * u[:, 2] + 0.6 * u[:, 0] * u[:, 1] \
        + 0.1 * rng.standard_normal(200)
    study = optuna.create_study()
    box = {n: FloatDistribution(float(X[:, i].min()), float(X[:, i].max())) for i, n in enumerate(names)}
    study.add_trials([optuna.trial.create_trial(params=dict(zip(names, map(float, row))), distributions=box,
                                                value=float(v)) for row, v in zip(X, y)])
    theirs = optuna.importance.FanovaImportanceEvaluator(seed=0).evaluate(study)  # shares of the variance
    main_effects = [(i,) for i in range(4)]

    ours, _ = evidence.fanova_shares(X, y, main_effects)
    assert sorted(names, key=lambda n: -ours[(names.index(n),)]) == sorted(names, key=lambda n: -theirs[n]) \
        == ["lr", "hidden", "momentum", "input_noise"]
    assert all(ours[(i,)] == pytest.approx(theirs[n], abs=0.1) for i, n in enumerate(names))

    monkeypatch.setattr(evidence, "leaf_size", lambda n: 1)  # Optuna's forest: leaves of a single trial
    alike, _ = evidence.fanova_shares(X, y, main_effects)
    assert all(alike[(i,)] == pytest.approx(theirs[n], abs=0.02) for i, n in enumerate(names))


def test_no_single_record_stops_the_report_each_bad_one_is_listed_with_its_reason(tmp_path):
    """Valid JSON that is not a run record, a metric or hyperparameter that is not a number, a run with lr=0:
    the report is written, the records that cannot count are listed, and fANOVA names what it leaves out."""
    rng = np.random.default_rng(0)
    for i in range(12):
        lr = 10 ** rng.uniform(-6, -2)
        write_record(tmp_path / "ok" / str(i), lr=lr, value=accuracy(lr, 0.0, rng), momentum=None, seed=i)
    write_record(tmp_path / "zero_lr", lr=0.0, value=0.1, momentum=None)  # counts, but has no log10(lr)
    for name, content in (("null", "null"), ("list", "[1, 2]"), ("number", "0.5")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(content)
    write_record(tmp_path / "string_metric", value="0.9", momentum=None)
    write_record(tmp_path / "string_lr", lr="fast", momentum=None)
    write_record(tmp_path / "list_config", momentum=None)
    record = json.loads((tmp_path / "list_config" / "result.json").read_text())
    (tmp_path / "list_config" / "result.json").write_text(json.dumps({**record, "config": [1]}))
    write_record(tmp_path / "odd_lines", momentum=None)
    (tmp_path / "odd_lines" / "metrics.jsonl").write_text('[1]\n"x"\n{"epoch": 1, "epoch_seconds": "slow"}\n')

    with small_forests():  # what is written where, not the shares' precision
        report.write_report(tmp_path)
    md = (tmp_path / "report" / "report.md").read_text()
    problems = section(md, "Runs that do not count")
    assert "`null` | unreadable | result.json holds null, not a run record (a JSON object)" in problems
    assert "`list` | unreadable | result.json holds [1, 2], not a run record (a JSON object)" in problems
    assert "`number` | unreadable | result.json holds 0.5, not a run record" in problems
    assert "`string_metric` | completed | no finite test accuracy in result.json (got '0.9')" in problems
    assert "`string_lr` | completed | config.lr in result.json is 'fast', not a number" in problems
    assert "`list_config` | completed | result.json lacks" in problems
    assert "14 count as trials, 6 do not" in md  # odd_lines counts: its unreadable epoch lines are skipped
    fanova = section(md, "Hyperparameter importance (fANOVA)", "###")
    assert "Left out of fANOVA" in fanova and "`zero_lr` (lr=0.0)" in fanova
    assert "| all variants | 13 |" in fanova  # the 14 trials less the one left out


def test_the_end_of_sweep_table_lists_a_record_that_is_not_an_object_as_unreadable(tmp_path):
    from sweeps.callbacks import trial_rows

    write_record(tmp_path / "good", momentum=None)
    (tmp_path / "null").mkdir()
    (tmp_path / "null" / "result.json").write_text("null")
    write_record(tmp_path / "string_metric", value="0.9", momentum=None)
    assert trial_rows(tmp_path) == [("good", "completed", "test accuracy 0.9000"), ("null", "unreadable", ""),
                                    ("string_metric", "completed", "")]
