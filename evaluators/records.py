"""Round records on disk (JSONL, one object per round) and the per-query views replay needs.

A record is the engine's RoundRecord as a plain dict plus `query` (a stable query id), so
learners can be replayed offline without models (evaluators.replay). Writes append whole
lines and flush, so an interrupted run keeps every query it finished.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


def to_dict(record, query: str | None = None) -> dict:
    d = record if isinstance(record, dict) else dataclasses.asdict(record)
    if query is not None:
        d = {**d, "query": query}
    return d


def append_records(path: str | Path, records: Iterable, query: str | None = None) -> None:
    """Append records (RoundRecord or dict) to a JSONL file, one line each."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(to_dict(r, query)) + "\n" for r in records)
    with path.open("a") as f:
        f.write(lines)
        f.flush()


def read_records(path: str | Path) -> list[dict]:
    """All records of a JSONL file; a truncated last line (interrupted write) is ignored."""
    out = []
    lines = Path(path).read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break                       # the write that was interrupted
            raise ValueError(f"{path}: line {i + 1} is not valid JSON; the records file is damaged")
    return out


def fully_scored(records: Sequence[dict]) -> bool:
    """Every round of one query has every drafter's acceptance (not lazily scored)."""
    first = records[0].get("position_acceptance") if records else None
    return bool(first) and all(set(r.get("position_acceptance") or ()) == set(first) for r in records)


def acceptance_matrix(records: Sequence[dict], drafters: Sequence[str]) -> np.ndarray:
    """[n_drafters, N] acceptance at every generated position of ONE query (full-information records)."""
    rounds = sorted(records, key=lambda r: r["round"])
    if any(r.get("position_acceptance") is None for r in rounds):
        raise ValueError("these records have no counterfactual acceptance: run with feedback='full'")
    missing = [d for d in drafters if d not in rounds[0]["position_acceptance"]]
    if missing:
        raise ValueError(f"no acceptance recorded for drafter(s) {', '.join(missing)}; "
                         f"recorded: {', '.join(rounds[0]['position_acceptance'])}")
    if not fully_scored(rounds):
        raise ValueError("some rounds lack some drafters' acceptance (a lazily scored run, e.g. the joint "
                         "setting's HedgeSpec): replay from the study's full-information run instead")
    return np.array([sum((r["position_acceptance"][d] for r in rounds), []) for d in drafters], dtype=float)


def by_query(records: Iterable[dict], key: str = "query") -> dict:
    """Group records by query id (falls back to `row` when no query id was stored)."""
    groups: dict = {}
    for r in records:
        groups.setdefault(r.get(key, r["row"]), []).append(r)
    return groups
