"""Metrics from round records (names follow vLLM's spec-decode metrics so results compare).

Records are the engine's RoundRecord objects or plain dicts with the same fields: evaluators
read records, never models.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable


def _get(rec: Any, name: str):
    return rec[name] if isinstance(rec, dict) else getattr(rec, name)


def mean_acceptance_length(records: Iterable) -> float:
    """Committed tokens per target forward, bonus included (autoregressive decoding = 1.0)."""
    records = list(records)
    return sum(_get(r, "committed") for r in records) / len(records) if records else float("nan")


def draft_acceptance_rate(records: Iterable) -> float:
    """Accepted draft tokens / drafted tokens."""
    records = list(records)
    drafted = sum(_get(r, "drafted") for r in records)
    return sum(_get(r, "accepted") for r in records) / drafted if drafted else float("nan")


def acceptance_per_pos(records: Iterable) -> list[float]:
    """P(draft k accepted | k tokens drafted), for k = 1..longest draft."""
    records = list(records)
    longest = max((_get(r, "drafted") for r in records), default=0)
    rates = []
    for k in range(1, longest + 1):
        tried = [r for r in records if _get(r, "drafted") >= k]
        rates.append(sum(_get(r, "accepted") >= k for r in tried) / len(tried))
    return rates


def acceptance_histogram(records: Iterable) -> dict[int, int]:
    """Number of rounds that accepted exactly k drafts."""
    return dict(sorted(Counter(_get(r, "accepted") for r in records).items()))


def summarize(records: Iterable, wall_s: float | None = None, new_tokens: int | None = None) -> dict:
    """All record metrics in one dict; tokens_per_s when the wall time is known."""
    records = list(records)
    out = {
        "rounds": len(records),
        "committed_tokens": sum(_get(r, "committed") for r in records),
        "mean_acceptance_length": mean_acceptance_length(records),
        "draft_acceptance_rate": draft_acceptance_rate(records),
        "acceptance_per_pos": acceptance_per_pos(records),
        "acceptance_histogram": acceptance_histogram(records),
    }
    if wall_s:
        tokens = out["committed_tokens"] if new_tokens is None else new_tokens
        out["tokens_per_s"] = tokens / wall_s
    return out
