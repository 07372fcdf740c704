"""Tokens per second from interleaved, repeated runs: totals per run, and ratios between runs
taken within each repeat, reported as their median and spread (this machine drifts by ~15%, so
only ratios of runs timed side by side are compared)."""
from __future__ import annotations

import statistics
from typing import Iterable, Sequence


def run_totals(lines: Iterable[dict]) -> dict[str, dict]:
    """Per run: new tokens, wall and decode seconds (each batch once), target rounds."""
    out: dict[str, dict] = {}
    for line in lines:
        t = out.setdefault(line["run"], {"tokens": 0, "wall": 0.0, "decode": 0.0, "rounds": 0})
        if line["row"] == 0:
            t["wall"] += line["batch_wall_s"]
            t["decode"] += line["batch_wall_s"] - line["batch_prefill_s"]
        t["tokens"] += len(line["tokens"])
        t["rounds"] += len(line["records"])
    return out


def tokens_per_s(totals: dict, run: str) -> float:
    return totals[run]["tokens"] / totals[run]["wall"]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of per-repeat values."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratio(per_repeat: Sequence[dict], run: str, reference: str | Sequence[str]) -> dict[str, float]:
    """tokens/s of `run` over `reference`'s, within each repeat; with several references, over the
    fastest of them in that repeat (the strongest baseline). Median and spread over the repeats."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    return spread([tokens_per_s(t, run) / max(tokens_per_s(t, r) for r in refs) for t in per_repeat])


def best_run(per_repeat: Sequence[dict], runs: Sequence[str]) -> str:
    """The run of highest median tokens/s over the repeats."""
    return max(runs, key=lambda r: statistics.median(tokens_per_s(t, r) for t in per_repeat))
