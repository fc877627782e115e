"""A study's records packed into one records.jsonl.gz read exactly as the folder they came from, and each
committed study page's report.md is the report of its committed records (sweeps.records)."""

from __future__ import annotations

import gzip
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from sweeps import records, report
from test_report import write_record

STUDIES = Path(__file__).resolve().parents[1] / "docs" / "studies"


def small_sweep(root: Path) -> Path:
    """Two variants on the same 4 draws (a paired design; too few trials for fANOVA, which keeps these tests
    fast), a second task, and every kind of broken record."""
    rng = np.random.default_rng(0)
    draws = [(10 ** rng.uniform(-6, -2), int(rng.integers(20, 200)), 1 - 10 ** rng.uniform(-2, 0)) for _ in range(4)]
    for cell, shift in (("v", 0.0), ("nfg", -0.02)):
        for i, (lr, hidden, momentum) in enumerate(draws):
            write_record(root / "multirun" / f"cell={cell}" / str(i), cell=cell, lr=lr, hidden=hidden, momentum=momentum,
                         value=0.95 - 0.02 * (math.log10(lr) + 4) ** 2 + shift + 0.002 * rng.normal(), wandb=i % 2 == 0)
    for i in range(2):
        write_record(root / "population" / f"member_{i}", task="adding", objective=("mse", "min"), value=0.1 + 0.05 * i,
                     momentum=None, seed=i)
    broken = root / "multirun" / "broken"
    write_record(broken / "failed", status="failed", error="ValueError: lr must be positive")
    write_record(broken / "running", status="running")
    write_record(broken / "nan", status="diverged")
    (broken / "nan" / "result.json").write_text((broken / "nan" / "result.json").read_text().replace('"accuracy": 0.9', '"accuracy": NaN'))
    (broken / "torn").mkdir()
    (broken / "torn" / "result.json").write_text('{"status": "compl')
    (broken / "cut").mkdir()
    (broken / "cut" / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo')  # killed mid-line, no result.json
    (broken / "empty").mkdir()
    (broken / "empty" / "metrics.jsonl").write_text("")
    (root / "multirun" / "cell=v" / "0" / "checkpoints").mkdir()
    (root / "multirun" / "cell=v" / "0" / "checkpoints" / "state").write_text("CHECKPOINT BYTES")
    return root


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = small_sweep(tmp_path_factory.mktemp("sweep") / "multirun_study")
    out = tmp_path_factory.mktemp("packed") / "records.jsonl.gz"
    records.pack(root, out)
    return root, out


def test_a_packed_sweep_gives_the_same_trials_problems_and_report_as_its_folder(packed, tmp_path):
    root, out = packed
    records.unpack(out, tmp_path / "unpacked")
    assert report.load(tmp_path / "unpacked") == report.load(root)  # every trial and every problem, field for field
    statuses = {p["path"]: p["status"] for p in report.load(root)[1]}
    assert statuses == {"multirun/broken/failed": "failed", "multirun/broken/running": "running",
                        "multirun/broken/nan": "diverged", "multirun/broken/torn": "unreadable",
                        "multirun/broken/cut": "no result.json", "multirun/broken/empty": "no result.json"}
    from_folder = report.write_report(root, tmp_path / "folder").read_bytes()
    from_file = report.write_report(out, tmp_path / "file").read_bytes()
    assert from_file == from_folder
    assert from_file.startswith(f"# Sweep report: `{root}`".encode())  # the title names the folder it was packed from
    assert "Design: **paired**" in from_file.decode()
    assert sorted(p.name for p in (tmp_path / "file").glob("*.png")) == sorted(p.name for p in (tmp_path / "folder").glob("*.png"))


def test_packing_is_deterministic_one_line_per_record_and_leaves_checkpoints_out(packed, tmp_path):
    root, out = packed
    again = tmp_path / "elsewhere" / "other_name.jsonl.gz"
    assert records.pack(root, again)["records"] == 16
    assert again.read_bytes() == out.read_bytes()  # same records, same bytes, whatever the file's name
    raw = out.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    text = gzip.decompress(raw).decode()
    assert "CHECKPOINT BYTES" not in text
    header, *lines = [json.loads(line) for line in text.splitlines()]
    assert header == {"format": "odyssey-records", "version": 1, "sweep": str(root), "records": 16}
    assert [line["path"] for line in lines] == sorted(line["path"] for line in lines)
    entry = next(line for line in lines if line["path"] == "multirun/cell=v/3")
    assert entry["result"] == json.loads((root / "multirun/cell=v/3/result.json").read_text())
    assert entry["metrics"] == [json.loads(x) for x in (root / "multirun/cell=v/3/metrics.jsonl").read_text().splitlines()]
    by_path = {line["path"]: line for line in lines}
    assert by_path["multirun/broken/torn"] == {"path": "multirun/broken/torn", "result_text": '{"status": "compl'}
    assert by_path["multirun/broken/cut"] == {"path": "multirun/broken/cut", "metrics_text": '{"epoch": 1}\n{"epo'}
    assert "result_text" in by_path["multirun/broken/nan"]  # NaN is not JSON: kept verbatim, read as the folder's
    assert by_path["multirun/broken/empty"] == {"path": "multirun/broken/empty", "metrics": []}


def test_a_records_file_never_writes_outside_its_folder_and_must_be_one(tmp_path, capsys):
    def gz(lines, name):
        path = tmp_path / name
        path.write_bytes(gzip.compress("".join(json.dumps(x) + "\n" for x in lines).encode()))
        return path

    header = {"format": "odyssey-records", "version": 1, "sweep": "s", "records": 1}
    for bad in ("../escape", "/etc/escape", "a/../../escape"):
        with pytest.raises(ValueError, match="is not inside the sweep"):
            records.unpack(gz([header, {"path": bad, "result": {}}], "bad.jsonl.gz"), tmp_path / "into")
    assert not (tmp_path / "escape").exists()
    with pytest.raises(ValueError, match="version 2"):
        records.read(gz([{**header, "version": 2}], "v2.jsonl.gz"))
    with pytest.raises(ValueError, match="announces 1 records, it holds 0"):
        records.read(gz([header], "short.jsonl.gz"))
    with pytest.raises(SystemExit, match="is not an odyssey-records file"):
        report.main([str(gz([{"path": "a"}], "nohead.jsonl.gz"))])
    (tmp_path / "plain.jsonl.gz").write_text('{"format": "odyssey-records"}\n')  # not gzip'd
    with pytest.raises(SystemExit, match="is not a readable odyssey-records file"):
        report.main([str(tmp_path / "plain.jsonl.gz")])


def test_the_command_lines_pack_and_report_a_study_beside_its_page(packed, tmp_path, capsys):
    root, _ = packed
    study = tmp_path / "docs" / "studies" / "small"
    records.main(["pack", str(root), str(study / "records.jsonl.gz")])
    assert "16 records" in capsys.readouterr().out
    report.main([str(study / "records.jsonl.gz")])  # default: the report beside the records
    assert (study / "report.md").exists() and (study / "report.html").exists() and (study / "mnist_box.png").exists()
    with pytest.raises(SystemExit, match="is not a folder"):
        records.main(["pack", str(tmp_path / "missing"), str(tmp_path / "x.jsonl.gz")])


def test_status_counts_each_variants_trials_by_state_in_a_folder_and_in_its_packed_records(packed, tmp_path, capsys):
    root, out = packed
    queued = tmp_path / "sweep"  # the same sweep, plus a trial its launcher made and has not started
    records.unpack(out, queued)
    (queued / "multirun" / "cell=nig,trial_007" / ".hydra").mkdir(parents=True)
    expected = {"v": {"completed": 6, "diverged": 1, "running": 1, "failed": 1},  # 4 draws + 2 population members
                "nfg": {"completed": 4},
                "?": {"unreadable": 1, "no result.json": 2},  # a torn result.json; metrics cut or empty, no result.json
                }
    assert records.status(root) == records.status(out) == dict(sorted(expected.items()))
    assert records.status(queued) == dict(sorted({**expected, "nig": {"not started": 1}}.items()))
    records.main(["status", str(queued)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["variant", "completed", "diverged", "running", "failed", "no", "result.json",
                                "unreadable", "not", "started", "total"]
    assert lines[-1].split() == ["all", "10", "1", "1", "1", "2", "1", "1", "17"]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SystemExit, match="no trial folders below .*nothing"):
        records.main(["status", str(tmp_path / "nothing")])


@pytest.mark.slow
def test_a_study_page_whose_report_is_not_its_records_is_caught(packed, tmp_path, capsys):
    """The check every committed study gets (test_each_committed_study_report_is_its_records_report), on a
    synthetic study: it passes as written, and fails on one changed figure, naming the line."""
    root, out = packed
    study = tmp_path / "studies" / "small"
    study.mkdir(parents=True)
    (study / "records.jsonl.gz").write_bytes(out.read_bytes())
    report.write_report(study / "records.jsonl.gz")
    assert records.check(study) == []
    page = (study / "report.md").read_text()
    line = next(x for x in page.splitlines() if x.startswith("| nfg | 4 | "))
    (study / "report.md").write_text(page.replace(line, line.replace("| nfg | 4 | ", "| nfg | 5 | ")))
    diff = records.check(study)
    assert f"-{line.replace('| nfg | 4 | ', '| nfg | 5 | ')}" in diff and f"+{line}" in diff
    with pytest.raises(SystemExit) as exit_:
        records.main(["check", str(study)])
    assert exit_.value.code == 1 and "report.md differs" in capsys.readouterr().out
    (study / "report.md").unlink()
    assert records.check(study) == [f"{study / 'report.md'} is missing"]


COMMITTED = sorted(STUDIES.glob("*/records.jsonl.gz"))


@pytest.mark.parametrize("records_file", [pytest.param(p, id=p.parent.name, marks=pytest.mark.slow) for p in COMMITTED] or [
    pytest.param(None, id="none", marks=pytest.mark.skip(
        reason="no docs/studies/*/records.jsonl.gz is committed yet: pack a study's records with "
               "`python -m sweeps.records pack multirun/<study> docs/studies/<study>/records.jsonl.gz` "
               "and report them with `python -m sweeps.report docs/studies/<study>/records.jsonl.gz`"))])
def test_each_committed_study_report_is_its_records_report(records_file, tmp_path):
    """docs/studies/<study>/report.md, the page the study's .md quotes, is regenerated from the committed
    records.jsonl.gz beside it and must equal it byte for byte (the figures are not compared)."""
    diff = records.check(records_file.parent, tmp_path)
    assert not diff, "\n".join([f"{records_file.parent / 'report.md'} is not its records' report; regenerate it with "
                                f"`python -m sweeps.report {records_file}`:", *diff[:80]])


def test_a_figure_typed_into_a_study_page_is_caught_unless_its_source_is_declared(tmp_path):
    (tmp_path / "report.md").write_text("| v | 20 | 9.934 ± 1.082 | 8.485 |\nWilcoxon p = 0.0014\n")
    page = tmp_path / "study.md"
    page.write_text("Setup: lr 1.5e-3 and 0.25 momentum (not results).\n\n## Status and results\n\n"
                    "V's best 8.485, mean 9.93, p = 0.0014, 12,158.5 nats; Greff's band 8.5–12.5.\n"
                    "<!-- not from the report: 8.5, 12.5 (Greff et al. 2017, Fig. 4) -->\n")
    assert records.unquoted(page, tmp_path / "report.md") == [
        f"{page}: 9.93 is not in {tmp_path / 'report.md'}",  # rounded by hand: the report prints 9.934
        f"{page}: 12,158.5 is not in {tmp_path / 'report.md'}"]
    page.write_text("no results heading, 9.93\n")
    assert records.unquoted(page, tmp_path / "report.md") == [f"{page}: no '## Status and results' or '## Results' heading"]


@pytest.mark.parametrize("records_file", [pytest.param(p, id=p.parent.name) for p in COMMITTED])
def test_each_committed_study_page_quotes_only_its_reports_figures(records_file):
    """No figure in a study page's results is typed by hand: each is printed by the report beside it, or its
    other source is declared in the page (sweeps.records.unquoted)."""
    study = records_file.parent
    assert not records.unquoted(study.parent / f"{study.name}.md", study / "report.md")


EXAMPLE = STUDIES.parent / "sweep_example"  # the README's "An example": its records, report and figures


@pytest.mark.slow
def test_the_readme_examples_report_is_its_committed_records_report(tmp_path):
    diff = records.check(EXAMPLE, tmp_path)
    assert not diff, "\n".join([f"regenerate it: python -m sweeps.report {EXAMPLE / 'records.jsonl.gz'}", *diff[:80]])


def test_the_readme_example_quotes_only_its_reports_figures(tmp_path):
    """The README's example paragraph, checked as a study page is (sweeps.records.unquoted)."""
    readme = (STUDIES.parents[1] / "README.md").read_text()
    example = readme.split("**An example**", 1)[1].split("\n## ", 1)[0]
    (tmp_path / "example.md").write_text("## Results\n" + example)
    assert not records.unquoted(tmp_path / "example.md", EXAMPLE / "report.md")


def test_compare_finds_each_reruns_original_and_the_first_epoch_that_differs(tmp_path):
    """A lone rerun of a population's trial is the same run (same settings, another launch): compare says
    whether it gave the same numbers, bit for bit, and if not from which epoch on."""
    for i, lr in enumerate((1e-3, 1e-2)):
        write_record(tmp_path / "study" / f"trial{i}", lr=lr, value=0.9)
        write_record(tmp_path / "reruns" / "study" / f"trial{i}", lr=lr, value=0.9)
    drifted = tmp_path / "reruns" / "study" / "trial1"
    lines = [json.loads(line) for line in (drifted / "metrics.jsonl").read_text().splitlines()]
    lines[1]["valid"]["loss"] += 1e-7  # epoch 2's validation loss, one rounding step away
    (drifted / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = json.loads((drifted / "result.json").read_text())
    result["test"]["accuracy"], result["best_epoch"] = 0.875, 2
    (drifted / "result.json").write_text(json.dumps(result))
    write_record(tmp_path / "reruns" / "study" / "other_seed", seed=7)
    records.pack(tmp_path / "study", tmp_path / "study.jsonl.gz")

    rows = {r["rerun"]: r for r in records.compare(tmp_path / "reruns", tmp_path / "study.jsonl.gz")}
    assert rows["study/trial0"]["original"] == "trial0" and rows["study/trial0"]["first_difference"] is None
    assert rows["study/trial1"]["original"] == "trial1" and rows["study/trial1"]["first_difference"] == 2
    assert (rows["study/trial1"]["original_best_epoch"], rows["study/trial1"]["rerun_best_epoch"]) == (3, 2)
    assert rows["study/other_seed"]["original"] is None
    table = records.compare_table(list(rows.values()))
    assert "| `study/trial0` | none in 3 epochs | 3, 3 | 0.9000, 0.9000 accuracy | +0 |" in table
    assert "| `study/trial1` | 2 | 3, 2 | 0.9000, 0.8750 accuracy | -0.025 |" in table
    assert "| `study/other_seed` | no original record of this run |" in table


def test_the_lone_reruns_page_shows_what_compare_gives_from_the_committed_records():
    """docs/studies/lone_reruns.md's table is `sweeps.records compare` on the committed records, verbatim."""
    table = records.compare_table(records.compare(STUDIES / "lone_reruns" / "records.jsonl.gz",
                                                  *(STUDIES / s / "records.jsonl.gz" for s in ("greff_jsb", "jsb_seeds"))))
    assert table.count("\n") == 11  # header, rule, ten reruns: every rerun found its original
    assert "no original record" not in table
    assert table in (STUDIES / "lone_reruns.md").read_text()


def studies_bullets() -> list[str]:
    """The README's Studies section, one string per bullet, with the section's declared figures appended to each."""
    readme = (STUDIES.parents[1] / "README.md").read_text()
    section = readme.split("\n## Studies\n", 1)[1].split("\n## ", 1)[0]
    declared = "".join(records.NOT_FROM_REPORT.findall(section))
    bullets = re.split(r"\n(?=- )", section.split("\n- ", 1)[1].split("\n\n", 1)[0])
    return [b + f"\n<!-- not from the report:{declared}-->" for b in bullets]


@pytest.mark.parametrize("bullet", studies_bullets(), ids=lambda b: re.search(r"docs/studies/(\w+)\.md", b).group(1))
def test_each_readme_studies_bullet_quotes_only_its_studies_reports(bullet, tmp_path):
    """A figure the README gives for a study is its report's (the reports of every study the bullet links that has
    records), or the README declares its source beside the list, as a study page does."""
    linked = [STUDIES / name for name in re.findall(r"docs/studies/(\w+)\.md", bullet) if (STUDIES / name / "report.md").exists()]
    (tmp_path / "bullet.md").write_text("## Results\n" + bullet)
    (tmp_path / "reports.md").write_text("\n".join((study / "report.md").read_text() for study in linked))
    assert not records.unquoted(tmp_path / "bullet.md", tmp_path / "reports.md")


def test_every_study_page_has_its_records_and_report_beside_it():
    """A page under docs/studies/ is evidence only with its trials' records committed beside it (issue 29): a page
    whose records are missing fails here instead of standing as a dated note."""
    pages = sorted(STUDIES.glob("*.md"))
    assert pages
    missing = [page.name for page in pages
               if not (STUDIES / page.stem / f"records{records.SUFFIX}").exists() or not (STUDIES / page.stem / "report.md").exists()]
    assert not missing, f"study pages without {'records' + records.SUFFIX} and report.md beside them: {missing}"
