"""A study's run records in one committable file, and the check that a study page's report is its records'.

    python -m sweeps.records pack multirun/greff_jsb docs/studies/greff_jsb/records.jsonl.gz
    python -m sweeps.report docs/studies/greff_jsb/records.jsonl.gz       # -> docs/studies/greff_jsb/report.md
    python -m sweeps.records check docs/studies/greff_jsb                 # report.md is what the records give?
    python -m sweeps.records unpack docs/studies/greff_jsb/records.jsonl.gz /tmp/greff_jsb   # the folder again
    python -m sweeps.records compare my_reruns docs/studies/greff_jsb/records.jsonl.gz    # did a rerun give the same run?
    python -m sweeps.records status multirun/greff_jsb                    # how far is a sweep, per variant?

records.jsonl.gz is gzip'd JSON lines. The first line is a header, {"format": "odyssey-records",
"version": 1, "sweep": <the folder as given to pack>, "records": <count>}; then one line per run
folder (every folder below the sweep holding a result.json or a metrics.jsonl, sorted by path):

    {"path": <the folder, relative to the sweep>, "result": <result.json's object>,
     "metrics": [<metrics.jsonl's lines, one object each>]}

A file that is not strict JSON (a result.json torn by a kill, a metrics line cut short, NaN) is kept
verbatim instead, as "result_text" or "metrics_text", so that the report finds the same problem in it;
a file the folder lacks is a key the line lacks. Checkpoints, .hydra/ and anything else are left out.
Packing is deterministic: the same records give the same bytes (sorted folders, compact JSON, gzip
with mtime 0 and no file name), so a re-pack of unchanged records is no change to commit.

sweeps.report reads such a file exactly as it reads the folder: it unpacks it into a temporary folder
and reads that, so trials, problems and report.md are the same (tests/test_records.py).
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path, PurePosixPath

FORMAT, VERSION = "odyssey-records", 1
SUFFIX = ".jsonl.gz"
FILES = (("result.json", "result"), ("metrics.jsonl", "metrics"))
WARN_BYTES = 20 * 2**20  # a study's records should stay well under this (GitHub warns at 50 MB per file)


def is_packed(path) -> bool:
    return str(path).endswith(SUFFIX) and Path(path).is_file()


def _strict(text: str):
    """The JSON value of `text`, refusing what RFC 8259 refuses (NaN, Infinity) so that it round-trips."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


def _entry(run_dir: Path, rel: str) -> dict:
    entry: dict = {"path": rel}
    result = run_dir / "result.json"
    if result.exists():
        text = result.read_text()
        try:
            entry["result"] = _strict(text)
        except ValueError:  # json.JSONDecodeError is a ValueError
            entry["result_text"] = text
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        text = metrics.read_text()
        try:
            lines = [_strict(line) for line in text.splitlines()]
            if text and not text.endswith("\n"):
                raise ValueError("no final newline")  # a line being written: keep the text as it is
            entry["metrics"] = lines
        except ValueError:
            entry["metrics_text"] = text
    return entry


def run_dirs(root: Path) -> list[Path]:
    """Every folder below `root` holding a run record (the folders sweeps.report.load reads), sorted."""
    return sorted({p.parent for name in ("result.json", "metrics.jsonl") for p in root.rglob(name)})


def folder_entries(root: Path) -> list[dict]:
    """The entries (as a records file holds them) of every run record below the folder `root`."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of run records")
    entries = [_entry(d, d.relative_to(root).as_posix() or ".") for d in run_dirs(root)]
    if not entries:
        raise FileNotFoundError(f"No run records (result.json or metrics.jsonl) below {root}")
    return entries


def pack(root, out) -> dict:
    """Write every run record below the folder `root` into the gzip'd JSON lines file `out`; returns the
    header (with the compressed size added as "bytes")."""
    root, out = Path(root), Path(out)
    entries = folder_entries(root)
    header = {"format": FORMAT, "version": VERSION, "sweep": str(root), "records": len(entries)}
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        for line in [header, *entries]:
            gz.write((json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n").encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(raw.getvalue())
    os.replace(tmp, out)
    return {**header, "bytes": out.stat().st_size}


def read(path) -> tuple[dict, list[dict]]:
    """The header and the entries of a records file, checked: a known format, and every path relative
    and inside the sweep (an entry can never name a file outside the folder it is unpacked into)."""
    try:
        with gzip.open(path, "rt") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:  # not gzip, cut short, not JSON lines
        raise ValueError(f"{path} is not a readable {FORMAT} file: {e}") from None
    if not lines or not isinstance(lines[0], dict) or lines[0].get("format") != FORMAT:
        raise ValueError(f"{path} is not an {FORMAT} file (its first line is not the header sweeps.records writes)")
    if lines[0].get("version") != VERSION:
        raise ValueError(f"{path}: {FORMAT} version {lines[0].get('version')}; this code reads version {VERSION}")
    header, entries = lines[0], lines[1:]
    if header.get("records") != len(entries):
        raise ValueError(f"{path}: its header announces {header.get('records')} records, it holds {len(entries)}")
    for entry in entries:
        rel = PurePosixPath(entry.get("path") if isinstance(entry, dict) and isinstance(entry.get("path"), str) else "/")
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"{path}: a record's path {entry.get('path') if isinstance(entry, dict) else entry!r} "
                             "is not inside the sweep")
    return header, entries


def unpack(path, into) -> dict:
    """Write the records of `path` back as run folders below `into`; returns the header."""
    header, entries = read(path)
    into = Path(into)
    for entry in entries:
        run_dir = into / entry["path"]
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, key in FILES:
            if f"{key}_text" in entry:
                (run_dir / name).write_text(entry[f"{key}_text"])
            elif key == "result" and key in entry:
                (run_dir / name).write_text(json.dumps(entry[key], indent=2) + "\n")
            elif key == "metrics" and key in entry:
                (run_dir / name).write_text("".join(json.dumps(line) + "\n" for line in entry[key]))
    return header


def check(study, scratch=None) -> list[str]:
    """Regenerate <study>/report.md from <study>/records.jsonl.gz (into `scratch`, a temporary folder if
    None), against the reference variant the committed report names, and compare it with the committed one,
    byte for byte; the figures are not compared. Returns
    the differences as unified-diff lines (empty: the page's report is its records')."""
    from sweeps import report

    study = Path(study)
    committed = study / "report.md"
    if not committed.exists():
        return [f"{committed} is missing"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(scratch) if scratch else Path(tmp)
        reference = re.search(r"Reference variant: `([^`]+)`", committed.read_text())  # as the page was made
        fresh = report.write_report(study / f"records{SUFFIX}", out, **({"reference": reference.group(1)} if reference else {})).read_text()
    if fresh == committed.read_text():
        return []
    return list(difflib.unified_diff(committed.read_text().splitlines(), fresh.splitlines(),
                                     f"{committed} (committed)", f"{committed} (from records{SUFFIX})", lineterm=""))


# The columns of `status`, in order: what a trial's folder says of it (sweeps.report's statuses, and a folder a
# launcher made, with its .hydra/, for a trial it has not started yet).
STATES = ("completed", "diverged", "running", "interrupted", "failed", "no result.json", "unreadable", "not started")


def _variant(run_dir: Path, rel: str) -> str:
    """The run's variant as the report names it: from its result.json where readable, else its folder's cell=."""
    from sweeps import report

    try:
        return report.variant_name(json.loads((run_dir / "result.json").read_text())["config"]["cell"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        found = re.search(r"(?:^|[/,])cell=([^,/]+)", rel)
        return found.group(1) if found else "?"


def status(root) -> dict[str, dict[str, int]]:
    """{variant: {state: trials}} of a sweep folder, or of a records.jsonl.gz: how far a sweep has come while it
    runs. A run's state is the report's (sweeps.report.load: a `running` record may also be a killed run's);
    a folder with a .hydra/ and no record is a trial its launcher made and has not started."""
    from sweeps import report

    if is_packed(root):
        with tempfile.TemporaryDirectory() as tmp:
            unpack(root, tmp)
            return status(tmp)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a sweep folder or a records{SUFFIX}")
    trials, problems = report.load(root)
    recorded = {t.path for t in trials} | {p["path"] for p in problems}
    unstarted = {str(h.parent.relative_to(root)) for h in root.rglob(".hydra") if h.is_dir() and h.parent != root} - recorded
    states = ([(t.variant, t.status) for t in trials]
              + [(_variant(root / p["path"], p["path"]), p["status"] if p["status"] in STATES else "running") for p in problems]
              + [(_variant(root / path, path), "not started") for path in unstarted])
    counts: dict[str, dict[str, int]] = {}
    for variant, state in states:
        counts.setdefault(variant, {})[state] = counts.get(variant, {}).get(state, 0) + 1
    return dict(sorted(counts.items()))


def status_table(counts: dict[str, dict[str, int]]) -> str:
    """status() as a text table: a row per variant, a column per state that occurs, and the total."""
    shown = [s for s in STATES if any(s in row for row in counts.values())]
    header = ["variant", *shown, "total"]
    rows = [[v, *(str(row.get(s, 0)) for s in shown), str(sum(row.values()))] for v, row in counts.items()]
    rows.append(["all", *(str(sum(r.get(s, 0) for r in counts.values())) for s in shown),
                 str(sum(sum(r.values()) for r in counts.values()))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), *map(line, rows)])


EPOCH_PARTS = ("train", "valid", "test")  # an epoch's numbers; its seconds and speeds are not compared


def _records(source) -> dict[str, dict]:
    """{path: entry} of a records file or of a folder of run records."""
    entries = read(source)[1] if is_packed(source) else folder_entries(Path(source))
    return {e["path"]: e for e in entries}


def compare(reruns, *originals) -> list[dict]:
    """Each completed rerun in `reruns` beside the original record of the same run in `originals` (records
    files or folders; the same run: training.run.run_identity, so a lone rerun of a population's trial
    matches it): the first epoch whose train/valid/test numbers differ (None: every epoch both have is
    bit for bit the same), and each one's best epoch and test objective. A rerun with no original is listed
    with original None."""
    from training.run import run_identity

    def identity(entry):
        return json.dumps(run_identity(entry["result"]["config"]), sort_keys=True, default=str)

    def done(entry):
        return isinstance(entry.get("result"), dict) and "config" in entry["result"] and "metrics" in entry

    pool = {identity(e): (path, e) for source in originals for path, e in _records(source).items() if done(e)}
    rows = []
    for path, rerun in sorted(_records(reruns).items()):
        if not done(rerun):
            continue
        found, original = pool.get(identity(rerun), (None, None))
        row = {"rerun": path, "original": found, "first_difference": None}
        for key, entry in (("rerun", rerun), ("original", original)):
            result = (entry or {}).get("result", {})
            name = (result.get("objective") or {}).get("name")
            row[f"{key}_best_epoch"] = result.get("best_epoch")
            row[f"{key}_test"] = (result.get("test") or {}).get(name)
            row[f"{key}_epochs"] = len((entry or {}).get("metrics", []))
            row["objective"] = row.get("objective") or name  # the rerun's, or the original's when it names none
        if original is not None:
            pairs = zip(original["metrics"], rerun["metrics"])
            row["first_difference"] = next((a.get("epoch") for a, b in pairs
                                            if any(a.get(k) != b.get(k) for k in EPOCH_PARTS)), None)
        rows.append(row)
    return rows


def compare_table(rows: list[dict]) -> str:
    """compare()'s rows as a markdown table."""
    lines = ["| rerun | first epoch that differs | best epoch (original, rerun) | test objective (original, rerun) | rerun − original |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if r["original"] is None:
            lines.append(f"| `{r['rerun']}` | no original record of this run | | | |")
            continue
        o, n = r["original_test"], r["rerun_test"]
        first = (f"none in {min(r['original_epochs'], r['rerun_epochs'])} epochs" if r["first_difference"] is None
                 else str(r["first_difference"]))
        tests, delta = ("–", "–") if None in (o, n) else (f"{o:.4f}, {n:.4f} {r['objective']}", f"{n - o:+.4g}")
        lines.append(f"| `{r['rerun']}` | {first} | {r['original_best_epoch']}, {r['rerun_best_epoch']} | {tests} | {delta} |")
    return "\n".join(lines)


NUMBER = re.compile(r"(?<![\w.])[+\u2212-]?\d[\d,]*\.\d+")  # a figure with decimals: 8.485, 0.0014, 96.1, −0.010
NOT_FROM_REPORT = re.compile(r"<!--\s*not from the report:(.*?)-->", re.S)


def _figure(text: str) -> str:
    return text.replace(",", "").lstrip("+\u2212-")


def unquoted(page, report_md) -> list[str]:
    """The figures (numbers with decimals) in a study page's results (from its `## Status and results` or
    `## Results` heading on) that its report does not print, so no figure is typed by hand. A figure that
    rightly comes from elsewhere (the literature, another study, arithmetic on the design) is declared in
    the page, with its source, in an HTML comment: `<!-- not from the report: 8.5, 12.5 (Greff Fig. 4) -->`."""
    text = Path(page).read_text()
    start = min((text.find(h) for h in ("## Status and results", "## Results") if h in text), default=-1)
    if start < 0:
        return [f"{page}: no '## Status and results' or '## Results' heading"]
    results = text[start:]
    declared = {_figure(n) for comment in NOT_FROM_REPORT.findall(text) for n in NUMBER.findall(comment)}
    printed = {_figure(n) for n in NUMBER.findall(Path(report_md).read_text())}
    results = NOT_FROM_REPORT.sub("", results)
    return [f"{page}: {n} is not in {report_md}" for n in dict.fromkeys(NUMBER.findall(results))
            if _figure(n) not in printed | declared]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="a sweep folder's records into one records.jsonl.gz")
    p.add_argument("dir")
    p.add_argument("out")
    p = sub.add_parser("unpack", help="a records.jsonl.gz back into run folders")
    p.add_argument("records")
    p.add_argument("dir")
    p = sub.add_parser("check", help="does <study>/report.md equal the report of <study>/records.jsonl.gz, and does "
                                     "<study>.md quote only the report's figures?")
    p.add_argument("study", nargs="+", help="folders holding records.jsonl.gz and report.md")
    p = sub.add_parser("compare", help="reruns beside the original records of the same runs: the first epoch "
                                       "that differs, best epochs and test objectives")
    p.add_argument("reruns", help="a records.jsonl.gz or a folder of run records")
    p.add_argument("originals", nargs="+", help="records.jsonl.gz files or folders holding the original runs")
    p = sub.add_parser("status", help="how far a sweep has come: its trials per variant and state (completed, "
                                      "running, failed, not started, ...)")
    p.add_argument("dir", help="a sweep folder (or a records.jsonl.gz)")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            header = pack(args.dir, args.out)
            print(f"wrote {args.out}: {header['records']} records, {header['bytes'] / 2**20:.2f} MB")
            if header["bytes"] > WARN_BYTES:
                print(f"sweeps.records: {args.out} is over {WARN_BYTES // 2**20} MB; too large to commit beside a study page",
                      file=sys.stderr)
        elif args.command == "status":
            counts = status(args.dir)
            if not counts:
                raise ValueError(f"no trial folders below {args.dir} (no result.json, metrics.jsonl or .hydra/)")
            print(status_table(counts))
        elif args.command == "compare":
            print(compare_table(compare(args.reruns, *args.originals)))
        elif args.command == "unpack":
            header = unpack(args.records, args.dir)
            print(f"wrote {header['records']} run folders of {header['sweep']} below {args.dir}")
        else:
            failed = False
            for study in args.study:
                diff = check(study)
                print(f"{study}: " + ("report.md is its records' report" if not diff else "report.md differs:"))
                print("\n".join(diff[:200])) if diff else None
                page = Path(study).parent / f"{Path(study).name}.md"
                typed = unquoted(page, Path(study) / "report.md") if page.exists() else []
                print("\n".join(typed) if typed else f"{page}: every figure it quotes is the report's")
                failed |= bool(diff) or bool(typed)
            sys.exit(1 if failed else 0)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"sweeps.records: {e}")


if __name__ == "__main__":
    main()
