"""Every fixed arm on every query of a full-information run, and the per-query oracle.

One run per batch size decodes with full-information feedback: its records give every
drafter's acceptance at every committed position, from which, for greedy decoding, every fixed
arm's round count on every query is exact (``specsel.replay.fixed``) as long as each drafter's
draft chain equals its teacher-forced predictions (n-gram, model and early-exit drafters; not
EAGLE heads or LoRA experts, whose live chains differ: their replays are estimates). Which
drafters are replay-exact is read as ``evaluators.records.replay_exact_of`` rules it.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

from specsel.core.arms import Arm
from specsel.core.costs import setting_cost
from specsel.core.seeds import query_seed
from specsel.replay.fixed import is_greedy_record, rounds_fixed, sampled_rounds_fixed


def fully_scored(records: Sequence[dict]) -> bool:
    """Every round of one query has every drafter's acceptance (not lazily scored)."""
    first = records[0].get("position_acceptance") if records else None
    return bool(first) and all(set(r.get("position_acceptance") or ()) == set(first) for r in records)


def acceptance_matrix(records: Sequence[dict], drafters: Sequence[str]) -> np.ndarray:
    """[n_drafters, N] acceptance at every generated position of ONE query (full-information records)."""
    rounds = sorted(records, key=lambda r: r["round"])
    if any(r.get("position_acceptance") is None for r in rounds):
        raise ValueError("these records have no counterfactual acceptance: run with feedback='full'")
    missing = [d for d in drafters if d not in rounds[0]["position_acceptance"]]
    if missing:
        raise ValueError(f"no acceptance recorded for drafter(s) {', '.join(missing)}; "
                         f"recorded: {', '.join(rounds[0]['position_acceptance'])}")
    if not fully_scored(rounds):
        raise ValueError("some rounds lack some drafters' acceptance (a lazily scored run, e.g. the joint "
                         "setting's HedgeSpec): replay from the study's full-information run instead")
    return np.array([sum((r["position_acceptance"][d] for r in rounds), []) for d in drafters], dtype=float)


def replay_exact_of(items: Sequence[dict], drafters: Sequence[str],
                    told: Mapping[str, bool] | None = None) -> dict[str, bool]:
    """{drafter: whether greedy replays of its full-information records are exact}.

    The rule: what the caller is told (`told`, e.g. a study's config.json ``replay_exact``,
    built from the pool's capabilities) decides for the drafters it names. Otherwise the
    records decide: a drafter is exact when every item (query line or round record) carries a
    ``replay_exact`` mapping that says True for it. A drafter nobody vouches for (no field, or
    an item without it: records written before the field existed) is NOT known exact, so rows
    built on it are labelled estimates rather than claimed exact.
    """
    marks = [item.get("replay_exact") for item in items]
    out = {}
    for d in drafters:
        if told is not None and d in told:
            out[d] = bool(told[d])
        else:
            out[d] = bool(marks) and all(isinstance(m, dict) and m.get(d) is True for m in marks)
    return out


class FullInfo:
    """Per-query acceptance matrices of one full-information run; fixed arms and oracles from them.

    `replay_exact` ({drafter: bool}) says which drafters replay exactly when the caller knows
    (the study passes its config.json's); without it the lines' own ``replay_exact`` fields
    decide, and a drafter nobody vouches for is not replay-exact (its rows are estimates).
    """

    def __init__(self, lines: Iterable[dict], drafters: Sequence[str], seed: int = 0,
                 replay_exact: Mapping[str, bool] | None = None):
        self.lines = sorted(lines, key=lambda l: l["index"])
        self.drafters = list(drafters)
        self.seed = seed
        self.replay_exact = replay_exact_of(self.lines, self.drafters, replay_exact)
        self.matrices = {l["qid"]: acceptance_matrix(l["records"], self.drafters) for l in self.lines}
        self.index = {l["qid"]: l["index"] for l in self.lines}
        self.tokens = {l["qid"]: len(l["tokens"]) for l in self.lines}
        self.greedy = all(is_greedy_record(m) for m in self.matrices.values())

    @property
    def qids(self) -> list[str]:
        return [l["qid"] for l in self.lines]

    def pair(self, drafter: str | None, gamma: int) -> tuple[int, int]:
        """The arm as (drafter index, gamma); the autoregressive arm is (0, 0) (one token a round)."""
        return (0, 0) if drafter is None else (self.drafters.index(drafter), int(gamma))

    def fixed_rounds(self, qid: str, drafter: str, gamma: int) -> int:
        """Rounds of the fixed arm on this query: exact for greedy records, one Monte-Carlo draw
        (seeded by the query's stream position) of the acceptances otherwise."""
        m = self.matrices[qid]
        if m.shape[1] == 0:
            return 0
        if self.greedy:
            return rounds_fixed(m, self.pair(drafter, gamma))
        return sampled_rounds_fixed(m, self.pair(drafter, gamma), seed=query_seed(self.seed, self.index[qid]))

    def exact_for(self, arms: Sequence[str]) -> bool:
        """True when replays of these arms are exact: greedy records, replay-exact drafters."""
        drafters = {Arm.parse(a).drafter for a in arms} - {None}   # the autoregressive arm replays exactly
        return self.greedy and all(self.replay_exact[d] for d in drafters)


class SettingEval:
    """Every fixed arm of a setting on every query of a full-information run."""

    def __init__(self, fullinfo: FullInfo, arms: Sequence[str], cost):
        self.fi, self.arms, self.cost = fullinfo, list(arms), cost
        self.qids = fullinfo.qids
        parsed = [Arm.parse(a) for a in self.arms]
        self.rounds = np.array([[fullinfo.fixed_rounds(q, a.drafter, a.gamma) for a in parsed] for q in self.qids],
                               dtype=float)
        self.unit_cost = np.array([cost.relative(a.drafter, a.gamma) for a in parsed])
        self.costs = self.rounds * self.unit_cost[None, :]
        best = self.costs.argmin(axis=1) if len(self.qids) else np.zeros(0, dtype=int)
        self.oracle_arm = {q: self.arms[i] for q, i in zip(self.qids, best)}
        self.oracle_cost = {q: float(self.costs[k, i]) for k, (q, i) in enumerate(zip(self.qids, best))}
        self.oracle_rounds = {q: float(self.rounds[k, i]) for k, (q, i) in enumerate(zip(self.qids, best))}
        self.total = self.costs.sum(axis=0)
        self.ranking = [self.arms[i] for i in np.argsort(self.total, kind="stable")]

    @property
    def exact(self) -> bool:
        """True when every fixed arm's cost on every query is exact (greedy records, round costs,
        drafters whose chains equal their teacher-forced predictions)."""
        return not self.cost.estimated and self.fi.exact_for(self.arms)

    def candidates(self, k: int) -> list[str]:
        """The k fixed arms of lowest total cost over the stream (all when k <= 0)."""
        return list(self.ranking) if k <= 0 else self.ranking[:k]

    def live_candidates(self, fixed_candidates: int) -> list[str]:
        """The fixed arms to run live: the best arm alone when the ranking is exact, else the
        `fixed_candidates` best by estimate (every arm when fixed_candidates <= 0)."""
        return self.candidates(1 if self.exact and fixed_candidates > 0 else fixed_candidates)


def fixed_arms_to_run(fullinfo: FullInfo, settings: dict, fixed_candidates: int) -> dict[str, list[str]]:
    """Fixed arms each setting runs live (SettingEval.live_candidates)."""
    return {setting: SettingEval(fullinfo, spec["arms"], setting_cost(setting, fullinfo.lines))
            .live_candidates(fixed_candidates) for setting, spec in settings.items()}

