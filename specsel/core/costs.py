"""What one target round of an arm costs (docs/design.md, "Learners", eq. 7), in one place for
the live learners and the offline study.

The model: a round of arm (j, g) takes ``t_verify(w) + g * t_draft(j)`` seconds, where ``w`` is
the verify window's draft width; in units of one autoregressive forward it costs
``c(j, g) = (t_verify(w) + g * t_draft(j)) / t_verify(0)``. Two estimators of it:

* :class:`CostModel` (live, ``specsel.learners``): running means per verify width and per
  drafter, updated round by round (``observe_round``), optimistic before any observation;
  :class:`RelativeCostModel` reports it in autoregressive forwards.
In a batch of B rows one round costs ``t_verify(W) + sum_u t_call(u) * g_u``: W the widest draft
of any row, u a draft call and ``g_u`` the longest draft of its rows. Each drafter proposes for its
rows in one call, and drafters of one family (the LoRA experts of one EAGLE head) in one call
together (``calls``), so a row that joins a call already made adds only its extra steps.
A row's arm is therefore costed in its round (:class:`BatchRound`, design eq. 18): the
batch's tokens per second had this row played arm a and the others what they played,
``(A(a) + S) / (B * T(a | others))``, which is ``A / c(j, g)`` when B = 1.

* :class:`StepCost` (offline, ``evaluators``): fitted once on a full-information run's stored
  rounds, with a least-squares verify line and each drafter's fill (the share of its gamma it
  really drafts). The joint setting's oracle and regret rest on it: an estimate.

:class:`RoundCost` is the ``drafter`` setting's cost: every round costs 1 (stopping time).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np


def _field_getter(records: Sequence):
    """get(record, name) for RoundRecords or their stored dicts (live and resumed runs feed the same)."""
    return (lambda r, k: r[k]) if records and isinstance(records[0], dict) else getattr


@dataclass(frozen=True)
class BatchRound:
    """The other rows of one round, in which a row's arm is costed (design eq. 18).

    rows: active rows in the round (B); other_tokens: tokens the other rows committed (S);
    other_width: the widest draft among the other rows; other_drafts: (drafter index, longest
    draft) of each drafter the other rows played.
    """
    rows: int
    other_tokens: int
    other_width: int
    other_drafts: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, row: int, records: Sequence, drafters: Sequence[str]) -> "BatchRound":
        """The context of `row` in a round given by its RoundRecords (or their dicts)."""
        get = _field_getter(records)
        others = [r for r in records if get(r, "row") != row]
        longest: dict[int, int] = {}
        for r in others:
            if get(r, "drafter") is not None and get(r, "drafted"):
                j = drafters.index(get(r, "drafter"))
                longest[j] = max(longest.get(j, 0), get(r, "drafted"))
        return cls(len(records), sum(get(r, "committed") for r in others),
                   max((get(r, "drafted") for r in others), default=0), tuple(sorted(longest.items())))


class CostModel:
    """Running-mean step times, for the tokens-per-second objective.

    The engine calls ``observe_verify(g, seconds)`` after each target forward
    that verified ``g`` draft tokens and ``observe_draft(j, seconds_per_token)``
    after drafter ``j`` proposed.  Defaults before any observation:

    * ``t_draft(j)`` of an unobserved drafter is 0 (optimistic: drafting free);
    * ``t_verify(g)`` of an unobserved ``g`` is interpolated between the observed
      widths around it, or the nearest observed width's time beyond them (optimistic:
      verify time never falls as the window widens); if no verify time has been
      observed at all it is ``default_verify`` (1 s), so before any measurement
      the reward is just the expected length (neutral).

    Optimism makes full-information learners try the arms whose cost is unknown.
    """

    def __init__(self, n_drafters: int, max_gamma: int, default_verify: float = 1.0,
                 calls: Sequence[int] | None = None):
        self.default_verify = float(default_verify)
        self.verify_sum = np.zeros(int(max_gamma) + 1)
        self.verify_n = np.zeros(int(max_gamma) + 1)
        # the draft call of each drafter: drafters with one call index propose in one call (a family)
        self.calls = np.arange(int(n_drafters)) if calls is None else np.asarray(calls, dtype=int)
        if len(self.calls) != int(n_drafters):
            raise ValueError(f"calls gives {len(self.calls)} drafters' calls for {n_drafters} drafters")
        self.draft_sum = np.zeros(int(self.calls.max()) + 1 if len(self.calls) else 0)
        self.draft_n = np.zeros_like(self.draft_sum)
        self.by_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}    # batch size -> (verify sums, counts)

    def observe_verify(self, g: int, seconds: float, rows: int | None = None) -> None:
        """A target forward that verified `g` draft tokens took `seconds`; with `rows`, the number of
        requests in it, the time is also kept for that batch size (a forward over more rows costs more)."""
        self.verify_sum[g] += seconds
        self.verify_n[g] += 1
        if rows is not None:
            if rows not in self.by_rows:
                self.by_rows[rows] = (np.zeros_like(self.verify_sum), np.zeros_like(self.verify_n))
            total, n = self.by_rows[rows]
            total[g] += seconds
            n[g] += 1

    def observe_draft(self, j: int, seconds_per_token: float) -> None:
        """One call of drafter j's took `seconds_per_token` per draft step."""
        self.draft_sum[self.calls[j]] += seconds_per_token
        self.draft_n[self.calls[j]] += 1

    def observe_round(self, records: Sequence, drafters: Sequence[str]) -> None:
        """Feed one round: its verify time at the widest draft, and each draft call's seconds per
        step (its rows' draft_s over their longest draft; drafter index in `drafters`). `records`
        are the round's RoundRecords (or their dicts), in row order: the live policy and a
        resumed study feed the same."""
        get = _field_getter(records)
        self.observe_verify(max(get(r, "drafted") for r in records), get(records[0], "verify_s"), len(records))
        calls: dict[int, tuple[int, float, int]] = {}      # call -> (a drafter of it, its seconds, longest draft)
        for r in records:
            if get(r, "drafter") is not None and get(r, "drafted"):
                j = drafters.index(get(r, "drafter"))
                _, seconds, longest = calls.get(self.calls[j], (j, 0.0, 0))
                calls[self.calls[j]] = (j, max(seconds, get(r, "draft_s")), max(longest, get(r, "drafted")))
        for j, seconds, longest in calls.values():
            self.observe_draft(j, seconds / longest)

    def t_verify(self, g: int | np.ndarray | None = None, rows: int | None = None) -> np.ndarray | float:
        """Running mean verify time per ``g`` (all ``g`` when ``g`` is None). A width not yet
        observed lies on the line between the observed widths around it, or, beyond the widest
        (narrowest) observed, at that width's time: verify time does not fall as the window
        widens, so this is the most optimistic guess consistent with what was measured. With
        `rows` (a forward over more requests costs more: the batch's composition under continuous
        batching), the widths measured at that batch size (or the nearest one measured) keep their
        own times, and the others follow every forward's curve scaled to them."""
        t = self._curve(self.verify_sum, self.verify_n)
        if rows is not None and self.by_rows and t is not None:
            total, n = self.by_rows[min(self.by_rows, key=lambda b: (abs(b - rows), b))]
            seen = np.flatnonzero(n > 0)
            own = total[seen] / n[seen]
            t = t * float(np.mean(own / np.maximum(t[seen], 1e-12)))
            t[seen] = own
        if t is None:
            return np.full(len(self.verify_n), self.default_verify) if g is None else self.default_verify
        return t if g is None else t[g]

    @staticmethod
    def _curve(total: np.ndarray, n: np.ndarray) -> np.ndarray | None:
        """Mean time per width, interpolated between measured widths (None before any)."""
        seen = np.flatnonzero(n > 0)
        return None if not len(seen) else np.interp(np.arange(len(n)), seen, total[seen] / n[seen])

    def t_draft(self, j: int | np.ndarray | None = None) -> np.ndarray | float:
        """Running mean seconds per draft step of each drafter's call (0 while unobserved)."""
        t = self._t_call()[self.calls]
        return t if j is None else t[j]

    def _t_call(self) -> np.ndarray:
        """Running mean seconds per draft step of each draft call (0 while unobserved)."""
        t = np.zeros(len(self.draft_n))
        np.divide(self.draft_sum, self.draft_n, out=t, where=self.draft_n > 0)
        return t

    def unit(self, rows: int | None = None) -> float:
        """Seconds per unit of cost (1: costs in seconds)."""
        return 1.0

    def seconds(self, arm_drafter, arm_gamma, batch: BatchRound | None = None) -> np.ndarray:
        """Expected cost of one round per arm: ``t_verify(g) + g * t_draft(j)`` alone; in a batch,
        the round's ``t_verify(max(g, W')) + sum_u t_call(u) g_u`` with this row's arm added to
        the others' (W', g_u: their widest draft and each draft call's longest; design eq. 18),
        verify times of that many rows."""
        rows = None if batch is None else batch.rows
        t_v, t_call = self.t_verify(rows=rows), self._t_call()
        arm_gamma = np.asarray(arm_gamma)
        if batch is None:
            return (t_v[arm_gamma] + arm_gamma * t_call[self.calls[arm_drafter]]) / self.unit()
        other_g = np.zeros(len(t_call))          # per call: the others' longest draft in it
        for j, g in batch.other_drafts:
            other_g[self.calls[j]] = max(other_g[self.calls[j]], g)
        others = float(other_g.dot(t_call))
        u = self.calls[arm_drafter]
        extra = (np.maximum(arm_gamma, other_g[u]) - other_g[u]) * t_call[u]
        return (t_v[np.maximum(arm_gamma, batch.other_width)] + others + extra) / self.unit(rows)

    def throughput(self, lengths, arm_drafter, arm_gamma, batch: BatchRound | None = None) -> np.ndarray:
        """Tokens per unit of cost: ``A / (t_verify(g) + g * t_draft(j))`` alone; in a batch, the
        batch's mean tokens per row, ``(A + S) / (B * T(arm | others))`` (design eq. 18)."""
        lengths = np.asarray(lengths, dtype=float)
        if batch is None:
            return lengths / self.seconds(arm_drafter, arm_gamma)
        return (lengths + batch.other_tokens) / (batch.rows * self.seconds(arm_drafter, arm_gamma, batch))


class RelativeCostModel(CostModel):
    """Step times in units of one autoregressive target forward.

    The throughput reward A / (t_verify(g) + g t_draft(j)) then reads as an estimated
    speedup over autoregressive decoding and lies in [0, L + 1] like the length reward.
    """

    def unit(self, rows: int | None = None) -> float:
        """One plain forward: over `rows` requests when given (costs relative to plain decoding at that load)."""
        return max(float(self.t_verify(0, rows)), 1e-9)


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
    forwards, the unit of RelativeCostModel.
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
