"""Are two studies' results identical? The check behind "results unchanged" for a refactor.

    specsel eval --data-dir ../shared/data --limit 3 --settings drafter --out results/before   # old code
    specsel eval --data-dir ../shared/data --limit 3 --settings drafter --out results/after    # new code
    python recipes/compare_studies.py results/before results/after

Compares, run by run and query by query, the generated tokens and the per-round choices
(drafter, gamma, drafted, accepted, committed, per-position acceptance) of every query line,
then every summary row's MAT, regret and % of oracle (the `drafter` setting by default, whose
numbers do not depend on timing) and the best fixed arms. Timings are never compared.
Prints one line per difference (at most --show) and a closing verdict; exits 1 when anything
differs, so it can gate a change.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from evaluators.records import read_records
from specsel.flags import add_flags, flag_parser, parse_flags

ROUND_FIELDS = ("round", "row", "drafter", "gamma", "drafted", "accepted", "committed", "position_acceptance")
ROW_FIELDS = ("mat", "regret", "pct_oracle", "arm", "rounds", "new_tokens", "exact", "lossless")
ROW_KEY = ("setting", "domain", "bsz", "learner")


def query_lines(folder: Path) -> dict[tuple, dict]:
    """(run, bsz, qid) -> query line; the latest write of a query wins, as the study reads it."""
    path = folder / "queries.jsonl"
    if not path.is_file():
        raise SystemExit(f"compare_studies: {path} not found: pass folders written by `specsel eval --out`")
    return {(line["run"], line["bsz"], line["qid"]): line for line in read_records(path)}


def summary_rows(folder: Path, settings: set[str]) -> tuple[dict[tuple, dict], dict]:
    path = folder / "summary.json"
    if not path.is_file():
        raise SystemExit(f"compare_studies: {path} not found: the study in {folder} did not finish its report")
    summary = json.loads(path.read_text())
    rows = {tuple(r[k] for k in ROW_KEY): r for r in summary["rows"] if r["setting"] in settings}
    best = {k: v for k, v in summary.get("best_fixed", {}).items() if k.split("/")[0] in settings}
    return rows, best


def compare(before: Path, after: Path, settings: set[str]) -> list[str]:
    """Every difference between the two studies, one line each."""
    diffs = []
    old, new = query_lines(before), query_lines(after)
    for key in sorted(set(old) | set(new), key=str):
        if key not in old or key not in new:
            diffs.append(f"query {key}: only in {'after' if key in new else 'before'}")
            continue
        a, b = old[key], new[key]
        if a["tokens"] != b["tokens"]:
            diffs.append(f"query {key}: tokens differ")
        ra = [{f: r.get(f) for f in ROUND_FIELDS} for r in a["records"]]
        rb = [{f: r.get(f) for f in ROUND_FIELDS} for r in b["records"]]
        if ra != rb:
            diffs.append(f"query {key}: round records differ")
    rows_a, best_a = summary_rows(before, settings)
    rows_b, best_b = summary_rows(after, settings)
    for key in sorted(set(rows_a) | set(rows_b), key=str):
        if key not in rows_a or key not in rows_b:
            diffs.append(f"row {key}: only in {'after' if key in rows_b else 'before'}")
            continue
        for f in ROW_FIELDS:
            if rows_a[key].get(f) != rows_b[key].get(f):
                diffs.append(f"row {key}: {f} {rows_a[key].get(f)!r} -> {rows_b[key].get(f)!r}")
    if best_a != best_b:
        diffs.append(f"best fixed arms differ: {best_a} -> {best_b}")
    return diffs


def main(argv=None) -> int:
    ap = flag_parser("compare_studies", "Compare two study output folders (tokens, rounds, MAT, regret, % oracle).")
    ap.add_argument("before")
    ap.add_argument("after")
    add_flags(ap, "settings", settings="drafter")    # the joint setting's numbers rest on timings
    ap.add_argument("--show", type=int, default=20, help="print at most this many differences")
    args = parse_flags(ap, argv)
    before, after = Path(args.before), Path(args.after)
    settings = {s.strip() for s in args.settings.split(",") if s.strip()}
    diffs = compare(before, after, settings)
    queries = len(query_lines(before))
    rows = len(summary_rows(before, settings)[0])
    for line in diffs[: args.show]:
        print(line)
    if diffs:
        print(f"DIFFERENT: {len(diffs)} difference(s) between {before} and {after}")
        return 1
    print(f"IDENTICAL: {queries} query lines (tokens and round records) and {rows} summary rows "
          f"({', '.join(sorted(settings))}: MAT, regret, % oracle, best fixed arm) match between {before} and {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
