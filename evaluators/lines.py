"""Query lines of a study (OUT/queries.jsonl): complete batches, the per-run index, flat records.

A query line is one finished query of one run at one batch size::

    {"run": "drafter/hedgespec", "bsz": 4, "batch": 3, "batch_qids": [...], "index": 12,
     "qid": "math/test/algebra/1.json", "domain": "math", "tokens": [...],
     "batch_wall_s": 3.1, "batch_new_tokens": 256, "records": [RoundRecord as dict, ...]}
"""
from __future__ import annotations

from typing import Iterable


def complete_lines(lines: Iterable[dict]) -> list[dict]:
    """Lines of complete batches only (every query of the batch present); for a batch that was
    written twice (re-run after an interrupted write), the latest lines win."""
    batches: dict[tuple, dict[str, dict]] = {}
    for line in lines:
        batches.setdefault((line["run"], line["bsz"], line["batch"]), {})[line["qid"]] = line
    out = []
    for by_qid in batches.values():
        want = next(iter(by_qid.values()))["batch_qids"]
        if all(q in by_qid for q in want):
            out.extend(by_qid[q] for q in want)
    return out


def index_runs(lines: Iterable[dict]) -> dict[tuple[str, int], dict[str, dict]]:
    """(run, bsz) -> {qid: line}, complete batches only."""
    runs: dict[tuple[str, int], dict[str, dict]] = {}
    for line in complete_lines(lines):
        runs.setdefault((line["run"], int(line["bsz"])), {})[line["qid"]] = line
    return runs


def done_batches(lines: Iterable[dict]) -> set[tuple[str, int, int]]:
    """(run, bsz, batch) of every complete batch."""
    return {(l["run"], int(l["bsz"]), int(l["batch"])) for l in complete_lines(lines)}


def flat_records(lines: Iterable[dict]) -> list[dict]:
    """Per-round records with a `query` id (the evaluators.records layout), for replay. A line's
    `replay_exact` (full-information runs) is kept in each of its records."""
    out = []
    for line in lines:
        extra = {"replay_exact": line["replay_exact"]} if "replay_exact" in line else {}
        for rec in line["records"]:
            out.append({**rec, "query": line["qid"], "run": line["run"], "bsz": line["bsz"], **extra})
    return out
