"""From queries to what the engine consumes: one interleaved multi-domain stream, and
prompt token ids (docs/design.md, "Data")."""

from __future__ import annotations

import random
from typing import Sequence

from specsel.data.query import DataError, Query


def mixed_stream(queries_by_domain: dict[str, list[Query]], seed: int) -> list[Query]:
    """Interleave several domains into one deterministic stream.

    Each domain keeps its own order; the k-th of a domain's n queries is placed
    at the random position key ``(k + u) / n`` with ``u ~ U[0, 1)`` drawn from
    ``random.Random(seed)``. Domains are therefore spread evenly over the whole
    stream (any prefix holds every domain in proportion) while the exact
    interleaving is shuffled. Every query appears exactly once.
    """
    rng = random.Random(seed)
    keyed = []
    for d_idx, domain in enumerate(sorted(queries_by_domain)):
        queries = queries_by_domain[domain]
        for k, q in enumerate(queries):
            keyed.append(((k + rng.random()) / len(queries), d_idx, k, q))
    keyed.sort(key=lambda t: t[:3])
    return [t[3] for t in keyed]


def encode_prompts(tokenizer, queries: Sequence[Query], max_prompt_tokens: int | None = None,
                   truncate: bool = False) -> list[list[int]]:
    """Token ids of each query's prompt, ready for generation.

    Uses the tokenizer's chat template with ``add_generation_prompt=True`` (the
    template adds its own special tokens); without a chat template the plain
    user text is tokenized with the tokenizer's usual special tokens. A prompt
    longer than ``max_prompt_tokens`` raises :class:`DataError`, or with
    ``truncate=True`` keeps its last ``max_prompt_tokens`` tokens.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    out = []
    for q in queries:
        if has_template:
            text = tokenizer.apply_chat_template(q.messages, tokenize=False,
                                                 add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(q.user_text)["input_ids"]
        ids = list(ids)
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            if not truncate:
                raise DataError(f"{q.qid}: prompt has {len(ids)} tokens, more than "
                                f"max_prompt_tokens={max_prompt_tokens}; raise the limit or "
                                f"truncate (truncate=True keeps the last tokens)")
            ids = ids[-max_prompt_tokens:]
        out.append(ids)
    return out
