"""Loading one split of one domain: validated records, then queries or training texts
(docs/design.md, "Data")."""

from __future__ import annotations

from pathlib import Path

from specsel.data.query import DataError, Query
from specsel.data.reader import check_needs, line_of_record, local_path, read_hub, read_local
from specsel.data.registry import Source, source


def records(domain: str, split: str, data_dir, limit: int | None) -> tuple[Source, list[tuple[int, dict]]]:
    """Validated ``(index in file, record)`` pairs of one split, first ``limit`` only."""
    src = source(domain, split)
    if limit is not None and limit < 0:
        raise DataError(f"{domain}: limit must be >= 0, got {limit}")
    path, ds = read_source(domain, src, data_dir)
    out = []
    for i, rec in split_records(src, ds, path, limit):
        missing = next((f for f in src.required if rec.get(f) is None), None)
        problem = f"is missing field '{missing}'" if missing else (src.check and src.check(rec))
        if problem:
            where = str(path) if path is not None else f"hub dataset {src.hub_id}"
            loc = record_location(src, path, i, rec)
            raise DataError(f"{domain}: {where}: {loc} {problem}; fix or replace the file")
        out.append((i, rec))
    return src, out


def read_source(domain: str, src: Source, data_dir) -> tuple[Path | None, object]:
    """The local path (None: hub) and the whole file of one source, as a ``datasets.Dataset``;
    a user domain's source reads its own file or hub split (a list of records), whatever data_dir."""
    if src.read is not None:
        return None, src.read()
    data_dir = Path(data_dir).expanduser() if data_dir is not None else None
    path = local_path(domain, src, data_dir)
    check_needs(domain, src, path)
    return path, read_local(path, src, domain) if path is not None else read_hub(src, domain)


def split_records(src: Source, ds, path: Path | None, limit: int | None) -> list[tuple[int, dict]]:
    """The split's ``(index in file, record)`` pairs, first ``limit`` only: those ``src.select``
    picks from the whole file, else the ``start:stop`` slice."""
    if src.select is not None:
        pairs = list(src.select(ds, path))
        return pairs if limit is None else pairs[:limit]
    stop = len(ds) if src.stop is None else min(src.stop, len(ds))
    if limit is not None:
        stop = min(stop, src.start + limit)
    indices = range(src.start, stop)
    return list(zip(indices, ds.select(indices)))


def record_location(src: Source, path: Path | None, i: int, rec: dict) -> str:
    """``record <i>`` plus its line in a line-per-record file, or its key in a keyed file."""
    if src.key_field:
        return f"record {i} ({src.key_field} {rec.get(src.key_field)!r})"
    line = line_of_record(path, i, bool(src.text_field)) if path is not None else None
    return f"record {i}" + (f" (line {line})" if line else "")


def load_domain(domain: str, data_dir=None, limit: int | None = None,
                split: str = "eval") -> list[Query]:
    """Queries of one domain split.

    Args:
        domain: one of :data:`specsel.data.DOMAINS`, or a user domain registered by
            :func:`specsel.data.resolve_domains` (its own file; ``data_dir`` does not apply).
        data_dir: folder laid out like ``shared/data`` (or one JSON-lines file);
            ``None`` loads the hub data set.
        limit: keep only the first ``limit`` queries of the split.
        split: ``"eval"`` (held-out benchmark) or ``"train"`` (drafter training;
            for ``humaneval`` these are MBPP problems; ``alpaca`` has none and
            raises :class:`DataError`; ``sql`` and ``pubmedqa`` need ``data_dir``).
    """
    src, recs = records(domain, split, data_dir, limit)
    return [src.to_query(rec, i, split) for i, rec in recs]


def training_texts(domain: str, data_dir=None, limit: int | None = None) -> list[str]:
    """Plain texts of the training split, disjoint from the eval split.

    MATH train: problem + solution; humaneval: MBPP text + code; MedQA
    (records after the first 300): question + options + answer; GSM8K train:
    question + worked answer; summarization: article + ``"Summary: "`` + summary;
    sql (dev questions on databases the eval part never uses): schema + question +
    ``"SQL: "`` + query; code_instruct: instruction (+ input) + answer; pubmedqa
    (the non-test ids): contexts + question + ``"Answer: "`` + decision + long answer.
    A user domain: the prompt (or its messages' contents), then the reference if any.
    An eval-only domain (``alpaca``) raises :class:`DataError`.
    """
    src, recs = records(domain, "train", data_dir, limit)
    return [src.to_text(rec) for _, rec in recs]
