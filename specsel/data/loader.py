"""Loading one split of one domain: validated records, then queries or training texts
(docs/design.md, "Data")."""

from __future__ import annotations

from pathlib import Path

from specsel.data.query import DataError, Query
from specsel.data.reader import line_of_record, local_path, read_hub, read_local
from specsel.data.registry import Source, source


def records(domain: str, split: str, data_dir, limit: int | None) -> tuple[Source, list[tuple[int, dict]]]:
    """Validated ``(index in file, record)`` pairs of one split, first ``limit`` only."""
    src = source(domain, split)
    if limit is not None and limit < 0:
        raise DataError(f"{domain}: limit must be >= 0, got {limit}")
    data_dir = Path(data_dir).expanduser() if data_dir is not None else None
    path = local_path(domain, src, data_dir)
    ds = read_local(path, src, domain) if path is not None else read_hub(src, domain)
    where = str(path) if path is not None else f"hub dataset {src.hub_id}"

    stop = len(ds) if src.stop is None else min(src.stop, len(ds))
    if limit is not None:
        stop = min(stop, src.start + limit)
    indices = range(src.start, stop)
    out = []
    for i, rec in zip(indices, ds.select(indices)):
        missing = next((f for f in src.required if rec.get(f) is None), None)
        problem = f"is missing field '{missing}'" if missing else (src.check and src.check(rec))
        if problem:
            line = line_of_record(path, i, bool(src.text_field)) if path is not None else None
            loc = f"record {i}" + (f" (line {line})" if line else "")
            raise DataError(f"{domain}: {where}: {loc} {problem}; fix or replace the file")
        out.append((i, rec))
    return src, out


def load_domain(domain: str, data_dir=None, limit: int | None = None,
                split: str = "eval") -> list[Query]:
    """Queries of one domain split.

    Args:
        domain: one of :data:`specsel.data.DOMAINS`.
        data_dir: folder laid out like ``shared/data`` (or one JSON-lines file);
            ``None`` loads the hub data set.
        limit: keep only the first ``limit`` queries of the split.
        split: ``"eval"`` (held-out benchmark) or ``"train"`` (drafter training;
            for ``humaneval`` these are MBPP problems; ``alpaca`` has none and
            raises :class:`DataError`).
    """
    src, recs = records(domain, split, data_dir, limit)
    return [src.to_query(rec, i, split) for i, rec in recs]


def training_texts(domain: str, data_dir=None, limit: int | None = None) -> list[str]:
    """Plain texts of the training split, disjoint from the eval split.

    MATH train: problem + solution; humaneval: MBPP text + code; MedQA
    (records after the first 300): question + options + answer; GSM8K train:
    question + worked answer; summarization: article + ``"Summary: "`` + summary.
    An eval-only domain (``alpaca``) raises :class:`DataError`.
    """
    src, recs = records(domain, "train", data_dir, limit)
    return [src.to_text(rec) for _, rec in recs]
