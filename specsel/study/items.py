"""The study's query stream: queries of every domain, interleaved and encoded for the target."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from specsel.study.config import StudyError, warn_stderr


@dataclass
class StudyItem:
    """One query of the stream: its id, its domain, its prompt token ids and its user text (what a
    prompt router reads, specsel.router)."""
    qid: str
    domain: str
    prompt: list[int]
    text: str = ""


def load_items(tokenizer, domains: Sequence[str], data_dir=None, limit: int | None = None,
               seed: int = 0, skip: int = 0, split: str = "eval",
               warn: Callable[[str], None] = warn_stderr) -> list[StudyItem]:
    """Queries of every domain's `split` (`limit` of each after the first `skip`), interleaved
    into one seeded stream, encoded with the target's chat template (load_stream, then encode_items)."""
    return encode_items(tokenizer, load_stream(domains, data_dir, limit, seed, skip, split, warn))


def load_stream(domains: Sequence[str], data_dir=None, limit: int | None = None, seed: int = 0, skip: int = 0,
                split: str = "eval", warn: Callable[[str], None] = warn_stderr) -> list:
    """The queries of load_items, not yet encoded (no tokenizer needed: the command line reads the
    data before the model loads). A domain with fewer than `limit` queries left is used whole,
    with one line to `warn`; one with none left is refused."""
    from specsel.data import load_domain, mixed_stream

    by_domain = {d: load_domain(d, data_dir, limit=None if limit is None else skip + limit, split=split)[skip:]
                 for d in domains}
    after = f" after --skip {skip}" if skip else ""
    for d, queries in by_domain.items():
        if not queries:
            fix = "lower --skip" if skip else "check its data"
            raise StudyError(f"{d} has no {split} queries{after}; {fix}, or drop {d} from --domains")
        if limit is not None and len(queries) < limit:
            warn(f"{d} has only {len(queries)} {split} queries{after}; using {len(queries)} (--limit {limit})")
    return mixed_stream(by_domain, seed) if len(domains) > 1 else by_domain[domains[0]]


def encode_items(tokenizer, stream: Sequence) -> list[StudyItem]:
    """The study items of a query stream: each query's prompt encoded with the target's chat template."""
    from specsel.data import encode_prompts

    prompts = encode_prompts(tokenizer, stream)
    return [StudyItem(q.qid, q.domain, p, q.user_text) for q, p in zip(stream, prompts)]
