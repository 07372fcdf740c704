"""Round records on disk (JSONL, one object per round) and the per-query views replay needs.

A record is the engine's RoundRecord as a plain dict plus `query` (a stable query id), so
learners can be replayed offline without models (specsel.replay.simulate, specsel.replay.fixed).
Writes append whole lines and flush, so an interrupted run keeps every query it finished.

Replay exactness travels with the records. A greedy replay of full-information records is
exact only for drafters whose draft chain equals their teacher-forced predictions
(``Capabilities.replay_exact``: n-gram, model, early-exit drafters; not EAGLE heads or LoRA
experts). Writers say so in a ``"replay_exact": {drafter: bool}`` field: the study in each
query line of its full-information run, ``append_records(..., replay_exact=...)`` in each
round record. ``replay_exact_of`` is the one rule every reader applies.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence


def to_dict(record, query: str | None = None) -> dict:
    d = record if isinstance(record, dict) else dataclasses.asdict(record)
    if query is not None:
        d = {**d, "query": query}
    return d


def append_records(path: str | Path, records: Iterable, query: str | None = None,
                   replay_exact: Mapping[str, bool] | None = None) -> None:
    """Append records (RoundRecord or dict) to a JSONL file, one line each.

    `replay_exact` ({drafter: bool}, e.g. ``{d: pool[d].capabilities.replay_exact}``) is written
    into every record, so readers know which drafters' replays are exact (``replay_exact_of``);
    records written without it leave their drafters' replays marked as estimates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {} if replay_exact is None else {"replay_exact": {str(d): bool(v) for d, v in replay_exact.items()}}
    lines = "".join(json.dumps({**to_dict(r, query), **extra}) + "\n" for r in records)
    with path.open("a") as f:
        f.write(lines)
        f.flush()


# what replay reads from every query line of a study and from every round record
QUERY_LINE_FIELDS = ("run", "bsz", "batch", "batch_qids", "index", "qid", "tokens", "records")
RECORD_FIELDS = ("round", "gamma", "committed")
_JSON_LINES = "a records file holds one JSON object a line (JSON lines)"


def _torn(line: str, text: str) -> bool:
    """The last line of `text` cut off by an interrupted write: writers append whole lines that
    start with '{' and end with a newline, so a torn one starts with '{' and has no newline."""
    return line.lstrip().startswith("{") and not text.endswith("\n")


def read_records(path: str | Path) -> list[dict]:
    """All records of a JSONL file (one JSON object a line); a truncated last line (interrupted
    write) is ignored. A file that is not JSON lines, or a line that is JSON but not an object,
    raises a one-line ValueError naming the file and the line."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file; {_JSON_LINES}") from None
    out = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1 and _torn(line, text):
                break                       # the write that was interrupted
            what = "the file is not JSON lines" if not out else "the records file is damaged"
            raise ValueError(f"{path}: line {i + 1} is not valid JSON ({_show(line)}): {what}; {_JSON_LINES}, "
                             "as `specsel eval` (queries.jsonl) and append_records write") from None
        if not isinstance(item, dict):
            raise ValueError(f"{path}: line {i + 1} is JSON but not an object (a {_json_type(item)}); "
                             f"{_JSON_LINES}")
        out.append(item)
    return out


def _show(line: str, width: int = 40) -> str:
    line = line.strip()
    return repr(line if len(line) <= width else line[:width] + "...")


def _json_type(item) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(item), "null")


def check_fields(items: Sequence[dict], fields: Sequence[str], path, what: str = "record") -> None:
    """A one-line ValueError naming the first item (1-based, in file order) that lacks one of
    `fields`, or whose `records` (query lines) is not a list of objects with RECORD_FIELDS."""
    for i, item in enumerate(items):
        missing = [f for f in fields if f not in item]
        if missing:
            raise ValueError(f"{path}: {what} {i + 1} has no {', '.join(repr(f) for f in missing)}; is it the "
                             "queries.jsonl of `specsel eval`, or round records written by append_records?")
        if "records" in fields:
            recs = item["records"]
            if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
                raise ValueError(f"{path}: {what} {i + 1}: 'records' is not a list of round records (objects)")
            check_fields(recs, RECORD_FIELDS, path, f"{what} {i + 1}, round record")


def by_query(records: Iterable[dict], key: str = "query") -> dict:
    """Group records by query id (falls back to `row` when no query id was stored)."""
    groups: dict = {}
    for r in records:
        groups.setdefault(r.get(key, r["row"]), []).append(r)
    return groups


def read_config(out: str | Path) -> dict | None:
    """OUT/config.json as a dict, None when OUT has none; a damaged one is a one-line StudyError."""
    path = Path(out) / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a study's config.json (invalid JSON); restore it, or move the study's "
                         "records to a folder of their own")
    return config
