"""What the load study runs: its load points, the runs at each, and the baselines tuned on tuning queries.

A load point is closed loop (`c4`: 4 requests in flight, a new one as soon as one ends, as vLLM's
benchmark_serving --max-concurrency) or open loop (`r0.5`: Poisson arrivals at 0.5 requests per
second, seeded, at most --max-batch running). Every policy decodes the same request stream, cut
into chunks the executor treats as batches, at every point; a run's name is the point's, a slash,
and the policy's (`c4/joint/hedgespec`).

The static baselines: plain decoding, every fixed arm, dynamic_gamma, vLLM's rule (speculate with
arm X while at most B requests run, else not) and a batch-size -> gamma table. The rule and the
table are chosen from a sweep of the fixed arms on tuning queries (`choose_baselines`), never on
the evaluated ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from specsel.core.arms import Arm
from specsel.study.executor import RunSpec

AR = "autoregressive"


@dataclass(frozen=True)
class LoadPoint:
    """One load: `concurrency` requests in flight (closed loop) or Poisson arrivals at `rate` per
    second (open loop), with at most `max_batch` running."""
    concurrency: int | None = None
    rate: float | None = None
    max_batch: int = 64

    @property
    def name(self) -> str:
        return f"c{self.concurrency}" if self.concurrency is not None else f"r{self.rate:g}"

    @property
    def cap(self) -> int:
        return self.concurrency if self.concurrency is not None else self.max_batch

    def arrivals(self, n: int, seed: int) -> list[float]:
        """Arrival seconds of n requests: all at once (closed loop: the cap keeps `concurrency` in
        flight), or a seeded Poisson process starting at 0 (open loop)."""
        if self.concurrency is not None:
            return [0.0] * n
        gaps = np.random.default_rng(seed).exponential(1.0 / self.rate, n)
        return np.concatenate([[0.0], np.cumsum(gaps[:-1])]).tolist()


def load_points(concurrencies: Sequence[int], rates: Sequence[float], max_batch: int) -> list[LoadPoint]:
    return [LoadPoint(concurrency=c) for c in concurrencies] + [LoadPoint(rate=r, max_batch=max_batch) for r in rates]


@dataclass(frozen=True)
class Baselines:
    """The tuned static baselines: vLLM's rule (arm X while at most B run) and the gamma table."""
    rule_arm: str
    rule_rows: int
    table_drafter: str
    table: dict[int, int]

    def to_dict(self) -> dict:
        return {"rule": {"arm": self.rule_arm, "max_rows": self.rule_rows},
                "table": {"drafter": self.table_drafter, "gammas": {str(k): v for k, v in self.table.items()}}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Baselines":
        return cls(d["rule"]["arm"], int(d["rule"]["max_rows"]), d["table"]["drafter"],
                   {int(k): int(v) for k, v in d["table"]["gammas"].items()})


def point_runs(point: LoadPoint, drafters: Sequence[str], gammas: Sequence[int], fixed: Sequence[str],
               baselines: Baselines | None, learners: Sequence[str]) -> list[RunSpec]:
    """Every run at one point: plain decoding, the fixed arms, dynamic_gamma, the rule and the table
    (when tuned), and the learners (the factored HedgeSpec, UCBSpec over the joint arms)."""
    p = point.name
    joint_arms = tuple(f"{d}@{g}" for d in drafters for g in sorted(set(gammas), reverse=True)) + (AR,)
    runs = [RunSpec(f"{p}/{AR}", "autoregressive", arm=AR)]
    runs += [RunSpec(f"{p}/fixed/{a}", "fixed", arm=a) for a in fixed]
    if baselines is not None:
        runs += [RunSpec(f"{p}/joint/dynamic_gamma", "dynamic_gamma", arm=Arm.parse(baselines.rule_arm).drafter,
                         setting="joint", learner="dynamic_gamma", options=(("max_gamma", max(gammas)),)),
                 RunSpec(f"{p}/joint/rule", "rule", arm=baselines.rule_arm, setting="joint",
                         options=(("max_rows", baselines.rule_rows),)),
                 RunSpec(f"{p}/joint/table", "table", arm=baselines.table_drafter, setting="joint",
                         options=(("table", tuple(sorted(baselines.table.items()))),))]
    for learner in learners:
        kind = "factored" if learner in ("hedgespec", "router_hedgespec") else "learner"
        runs.append(RunSpec(f"{p}/joint/{learner}", kind, setting="joint", learner=learner, arms=joint_arms,
                            gammas=tuple(gammas)))
    return runs


def static_run(point: LoadPoint, arm: str) -> RunSpec:
    """`arm` in static batches of the point's concurrency, one after another (no refill): what
    continuous batching is compared with."""
    return RunSpec(f"{point.name}/static/{arm}", "fixed", arm=arm, options=(("static", point.cap),))


def choose_baselines(speedups: Mapping[str, Mapping[int, float]]) -> Baselines:
    """The rule and the table from a tuning sweep: `speedups[arm][c]` is the fixed arm's tokens/s over
    plain decoding at concurrency c (medians of per-batch ratios). The rule's arm X is the arm that
    gains most where it pays (the largest sum of log speedups over the loads where it is > 1); B is
    the largest concurrency up to which X pays at every concurrency (0: never). The table gives, for
    X's drafter at each concurrency, the gamma of its best arm there when that pays, else 0."""
    if not speedups:
        raise ValueError("no fixed arm was measured on the tuning queries")
    arm = max(speedups, key=lambda a: sum(math.log(v) for v in speedups[a].values() if v > 1.0))
    rows = 0
    for c in sorted(speedups[arm]):
        if speedups[arm][c] <= 1.0:
            break
        rows = c
    drafter = Arm.parse(arm).drafter
    table = {}
    for c in sorted({c for v in speedups.values() for c in v}):
        own = {a: v[c] for a, v in speedups.items() if Arm.parse(a).drafter == drafter and c in v}
        best = max(own, key=own.get) if own else None
        table[c] = Arm.parse(best).gamma if best is not None and own[best] > 1.0 else 0
    return Baselines(arm, rows, drafter, table)
