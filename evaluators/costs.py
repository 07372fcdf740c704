"""Cost models of a setting: what one target round of an arm costs.

* ``drafter`` setting: every round costs 1 (:class:`RoundCost`): a query's cost is its
  number of target rounds (its stopping time).
* ``joint`` setting: a round of arm ``(j, g)`` costs ``t_verify(g) + g * t_draft(j)``, in units
  of one autoregressive forward, with the step times fitted on the full-information run's own
  round timings (:class:`StepCost`): an estimate.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np


class RoundCost:
    """Every target round costs 1 (the `drafter` setting: cost = stopping time)."""
    unit = "rounds"
    estimated = False

    def relative(self, drafter: str | None, gamma: int) -> float:
        return 1.0

    def to_dict(self) -> dict:
        return {"unit": self.unit}


@dataclass
class StepCost:
    """Seconds per round of arm (j, g): ``t_verify(f_j g) + g * t_draft(j)``, fitted from records.

    ``t_verify(w) = verify0 + slope * w`` is a least-squares line through the (widest draft in
    the round, verify seconds) pairs of the rounds; ``t_draft(j)`` = drafter j's proposal
    seconds per draft step; ``f_j`` = the fraction of its gamma that drafter j actually
    drafted (an n-gram drafter often finds no match and drafts nothing, which makes its
    verify window narrower). ``relative`` divides by ``verify0``: the cost in autoregressive
    forwards, the unit of specsel.learners.policy.RelativeCostModel.
    """
    verify0: float
    slope: float
    draft_step: dict[str, float] = field(default_factory=dict)
    fill: dict[str, float] = field(default_factory=dict)
    unit = "ar_forwards"
    estimated = True

    @classmethod
    def fit(cls, lines: Iterable[dict]) -> "StepCost":
        rounds: dict[tuple, dict] = {}
        drafted: Counter = Counter()
        nominal: Counter = Counter()
        steps: dict[str, list[float]] = {}
        groups: dict[tuple, list[dict]] = {}
        for line in lines:
            for rec in line["records"]:
                key = (line["run"], line["bsz"], line["batch"], rec["round"])
                r = rounds.setdefault(key, {"w": 0, "t": rec["verify_s"]})
                r["w"] = max(r["w"], rec["drafted"])
                if rec["drafter"] is not None:
                    drafted[rec["drafter"]] += rec["drafted"]
                    nominal[rec["drafter"]] += rec["gamma"]
                    groups.setdefault(key + (rec["drafter"],), []).append(rec)
        for (*_, name), recs in groups.items():
            g = max(r["gamma"] for r in recs)
            if g > 0:
                steps.setdefault(name, []).append(recs[0]["draft_s"] / g)
        if not rounds:
            raise ValueError("no rounds to fit step costs on")
        w = np.array([r["w"] for r in rounds.values()], dtype=float)
        t = np.array([r["t"] for r in rounds.values()], dtype=float)
        if len(np.unique(w)) >= 2:
            slope, verify0 = np.polyfit(w, t, 1)
        else:
            slope, verify0 = 0.0, float(t.mean())
        slope = max(float(slope), 0.0)
        if not verify0 > 0:
            verify0 = float(t[w == w.min()].mean())
        return cls(float(verify0), slope, {k: float(np.mean(v)) for k, v in steps.items()},
                   {k: drafted[k] / nominal[k] for k in nominal if nominal[k]})

    def seconds(self, drafter: str | None, gamma: int) -> float:
        if drafter is None or gamma == 0:
            return self.verify0
        f = self.fill.get(drafter, 1.0)
        return self.verify0 + self.slope * f * gamma + gamma * self.draft_step.get(drafter, 0.0)

    def relative(self, drafter: str | None, gamma: int) -> float:
        return self.seconds(drafter, gamma) / self.verify0

    def to_dict(self) -> dict:
        return {"unit": self.unit, "verify0_s": self.verify0, "verify_slope_s_per_token": self.slope,
                "draft_step_s": self.draft_step, "fill": self.fill}


def run_cost(line: dict, cost) -> float:
    """Cost of one query's live rounds under `cost` (rounds, or AR-forward equivalents)."""
    return float(sum(cost.relative(r["drafter"], r["gamma"]) for r in line["records"]))


def setting_cost(setting: str, fullinfo_lines: Sequence[dict]):
    """The cost model of `setting`, fitted on the full-information run's lines when it needs timings."""
    return StepCost.fit(fullinfo_lines) if setting == "joint" else RoundCost()
