"""Speed from stored lines: per-batch tokens/s, ratios of runs timed side by side, where time went.

Every speed ratio is taken within a batch, between runs the executor decoded one after the other
on that batch (and in the same repeat), then aggregated over batches and repeats as the median
with its spread (`spread`). Machine drift between batches, and a disturbance that hit one batch,
then move a ratio's spread, not its median; `evaluators.reliability` judges whether a ratio can
be trusted at all.

A batch's tokens/s is its new tokens over its wall seconds, prefill included. The lines of a batch
all carry its totals (``batch_new_tokens``, ``batch_wall_s``), so each batch counts once.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Sequence

from specsel.core.runs import repeat_run


@dataclass(frozen=True)
class BatchTime:
    tokens: int
    wall_s: float
    prefill_s: float
    machine: dict | None          # the executor's MachineMeter reading (None in older lines)

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.wall_s if self.wall_s > 0 else None


def batch_times(lines: Iterable[dict]) -> dict[tuple[str, int, int], BatchTime]:
    """(run, bsz, batch) -> its BatchTime, one per batch."""
    out = {}
    for l in lines:
        key = (l["run"], int(l["bsz"]), int(l["batch"]))
        if key not in out:
            out[key] = BatchTime(l["batch_new_tokens"], l["batch_wall_s"], l.get("batch_prefill_s", 0.0),
                                 l.get("batch_machine"))
    return out


@dataclass(frozen=True)
class Pair:
    """One ratio of two runs' tokens/s on one batch in one repeat (k, from 0)."""
    batch: int
    repeat: int
    ratio: float
    keys: tuple            # the (run, bsz, batch) keys it was taken from


def paired_ratios(times: dict, run: str, reference: str | Sequence[str], bsz: int, repeats: int = 1,
                  batches: Iterable[int] | None = None) -> list[Pair]:
    """tokens/s of `run` over `reference`'s, batch by batch within each repeat (repeat k: the runs
    named ``<run>#k+1``); with several references, over the fastest of them on that batch. Batches
    where either side is missing are left out; `batches` limits them."""
    refs = [reference] if isinstance(reference, str) else list(reference)
    wanted = None if batches is None else set(batches)
    out = []
    for k in range(repeats):
        mine = {b: t for (r, z, b), t in times.items() if r == repeat_run(run, k) and z == bsz}
        for b, t in sorted(mine.items()):
            if wanted is not None and b not in wanted:
                continue
            theirs = [(times[key], key) for key in ((repeat_run(x, k), bsz, b) for x in refs) if key in times]
            if not theirs or t.tokens_per_s is None:
                continue
            best, key = max(theirs, key=lambda tk: tk[0].tokens_per_s or 0.0)
            if best.tokens_per_s:
                out.append(Pair(b, k, t.tokens_per_s / best.tokens_per_s, ((repeat_run(run, k), bsz, b), key)))
    return out


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and count of values (per-batch ratios, per-repeat figures)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def ratio_summary(pairs: Sequence[Pair]) -> dict[str, float] | None:
    """The median of the per-batch ratios with their spread; None without any."""
    return spread([p.ratio for p in pairs]) if pairs else None


def run_tokens_per_s(times: dict, run: str, bsz: int, repeats: int = 1) -> float | None:
    """The run's tokens/s over the whole stream (all its batches), the median over repeats."""
    per_repeat = []
    for k in range(repeats):
        ts = [t for (r, z, _), t in times.items() if r == repeat_run(run, k) and z == bsz]
        wall = sum(t.wall_s for t in ts)
        if ts and wall > 0:
            per_repeat.append(sum(t.tokens for t in ts) / wall)
    return statistics.median(per_repeat) if per_repeat else None


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
            verify: dict = {}
            calls: dict = {}
            for rec in (r for line in rows for r in line["records"]):
                # a round: its end time (rows joining a running batch count rounds from 0), else its number
                key = rec.get("time_s") if rec.get("time_s") is not None else rec["round"]
                verify[key] = rec["verify_s"]
                if rec["drafter"] is not None:
                    calls.setdefault(key, set()).add(rec["draft_s"])
            s["verify"] += sum(verify.values())
            s["draft"] += sum(sum(c) for c in calls.values())
    out = {}
    for run, s in sums.items():
        wall = s["wall"] or 1.0
        parts = {k: s[k] / wall for k in ("prefill", "verify", "draft")}
        out[run] = {**parts, "scoring_and_learner": max(1.0 - sum(parts.values()), 0.0)}
    return out
