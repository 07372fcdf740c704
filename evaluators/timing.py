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


def time_split(per_repeat: Sequence[Iterable[dict]]) -> dict[str, dict[str, float]]:
    """Per run, where its wall time went over every repeat, as shares of it: the target
    prefill, the verify forwards, the draft calls, and the rest of each round (full-information
    scoring, the learner, bookkeeping). The rows of a batch step together, so a round's verify
    seconds are counted once per round index, and a draft call's once per round (its rows
    share them); each repeat's batches apart."""
    sums: dict[str, dict[str, float]] = {}
    for lines in per_repeat:
        batches: dict[tuple, list[dict]] = {}
        for line in lines:
            batches.setdefault((line["run"], line["bsz"], line["batch"]), []).append(line)
        for (run, *_), rows in batches.items():
            s = sums.setdefault(run, {"wall": 0.0, "prefill": 0.0, "verify": 0.0, "draft": 0.0})
            s["wall"] += rows[0]["batch_wall_s"]
            s["prefill"] += rows[0]["batch_prefill_s"]
            verify: dict[int, float] = {}
            calls: dict[int, set] = {}
            for rec in (r for line in rows for r in line["records"]):
                verify[rec["round"]] = rec["verify_s"]
                if rec["drafter"] is not None:
                    calls.setdefault(rec["round"], set()).add(rec["draft_s"])
            s["verify"] += sum(verify.values())
            s["draft"] += sum(sum(c) for c in calls.values())
    out = {}
    for run, s in sums.items():
        wall = s["wall"] or 1.0
        parts = {k: s[k] / wall for k in ("prefill", "verify", "draft")}
        out[run] = {**parts, "scoring_and_learner": max(1.0 - sum(parts.values()), 0.0)}
    return out
