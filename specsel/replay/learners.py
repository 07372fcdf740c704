"""Learners replayed offline on a full-information run (no models): the regret-vs-arms curve
of the study's report and the rows of ``specsel replay``.

Each learner is rebuilt per query as ``specsel.learners.policy.LearnerPolicy`` builds it live
(seeded by the query's stream position) and replayed with ``specsel.replay.simulate``; for greedy
records of replay-exact drafters a replay equals the live run it stands for. Each learner's round
count per query then becomes table rows and the regret-vs-arms curve, against the fixed arms and
the per-query oracle of ``specsel.replay.fullinfo``.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from specsel.core.arms import Arm, ArmPair
from specsel.core.costs import RoundCost
from specsel.core.seeds import query_seed
from specsel.learners import make_learner
from specsel.replay.fullinfo import FullInfo, SettingEval
from specsel.replay.simulate import simulate


def replay_learner(fullinfo: FullInfo, learner: str, pairs: Sequence[ArmPair], seed: int = 0,
                   n_arms: int | None = None, priors: Mapping[str, np.ndarray] | None = None,
                   score_every: int = 1) -> dict[str, int]:
    """{qid: rounds} of `learner` (a fresh one per query, seeded by stream position) on the arms
    `pairs` ((drafter index, gamma)) of every replayed query, length objective; `priors` ({qid:
    a prior over the arms}) for the router learners (specsel.learners.routed); `score_every`: a
    full-information learner hears of its rounds this many at a time, as under the live run's
    deferred scoring (simulate defers greedy records only; study_score_every)."""
    high = max(g for _, g in pairs) + 1.0
    n_arms = len(pairs) if n_arms is None else n_arms
    out = {}
    for q in replayed_queries(fullinfo):
        kw = {} if priors is None else {"prior": priors[q]}
        lrn = make_learner(learner, n_arms, reward_range=(1.0, high), seed=query_seed(seed, fullinfo.index[q]), **kw)
        out[q] = len(simulate(lrn, fullinfo.matrices[q], pairs, seed=query_seed(seed, fullinfo.index[q]),
                              score_every=score_every))
    return out


def study_score_every(config: Mapping | None) -> int:
    """How many rounds a study's full-information learners heard of at a time: its score_every
    under greedy decoding (deferred scoring), else 1; 1 without a config."""
    config = config or {}
    k, temperature = config.get("score_every", 1), config.get("temperature", 0.0)
    return k if isinstance(k, int) and k >= 1 and temperature == 0 else 1


def _pairs(fullinfo: FullInfo, arms: Sequence[str]) -> list[ArmPair]:
    parsed = [Arm.parse(a) for a in arms]
    return [fullinfo.pair(a.drafter, a.gamma) for a in parsed]


def regret_vs_arms(fullinfo: FullInfo, arms: Sequence[str], learners: Sequence[str], seed: int = 0,
                   sizes: Sequence[int] | None = None, score_every: int = 1) -> dict:
    """Cumulative stopping-time regret (rounds, summed over the stream) of each learner replayed
    offline on pools of the first K arms (interleaved order), against the per-query oracle over
    those K arms (specsel.replay.learners.regret_curve)."""
    order = interleaved_arms(arms)
    if sizes is None:
        sizes = curve_sizes(len(order))
    pairs_all = _pairs(fullinfo, order)
    rounds = {l: [replay_learner(fullinfo, l, pairs_all[:k], seed, n_arms=k, score_every=score_every) for k in sizes]
              for l in learners}
    return regret_curve(fullinfo, order, sizes, rounds)


def replay_rows(fullinfo: FullInfo, arms: Sequence[str], learners: Sequence[str], seed: int = 0,
                setting: str = "replay", bsz: int | None = None, score_every: int = 1) -> list[dict]:
    """Re-run learners offline on full-information records (length objective): one row each
    for best_fixed, oracle and every learner (specsel.replay.learners.replayed_rows). Exact for
    greedy records of replay-exact drafters; estimates otherwise (the rows say so)."""
    pairs = _pairs(fullinfo, arms)
    rounds = {l: replay_learner(fullinfo, l, pairs, seed, score_every=score_every) for l in learners}
    return replayed_rows(fullinfo, arms, rounds, setting=setting, bsz=bsz)


QueryRounds = Mapping[str, int]     # qid -> rounds one learner needed on that query


def interleaved_arms(arms: Sequence[str]) -> list[str]:
    """Arms reordered so every prefix mixes drafters: (d0, g0), (d1, g0), ..., (d0, g1), ..."""
    parsed = [Arm.parse(a) for a in arms]
    drafters = list(dict.fromkeys(a.drafter for a in parsed))
    by_drafter = {d: [a for a, p in zip(arms, parsed) if p.drafter == d] for d in drafters}
    out, k = [], 0
    while len(out) < len(arms):
        out += [by_drafter[d][k] for d in drafters if k < len(by_drafter[d])]
        k += 1
    return out


def curve_sizes(n_arms: int) -> list[int]:
    """Pool sizes K of the regret curve: every K up to 16 arms, else eight evenly spaced."""
    return list(range(1, n_arms + 1)) if n_arms <= 16 else sorted({max(1, round(n_arms * f / 8)) for f in range(1, 9)})


def replayed_queries(fullinfo: FullInfo) -> list[str]:
    """The queries a replay covers: those with at least one generated token, in stream order."""
    return [q for q in fullinfo.qids if fullinfo.matrices[q].shape[1] > 0]


def regret_curve(fullinfo: FullInfo, order: Sequence[str], sizes: Sequence[int],
                 learner_rounds: Mapping[str, Sequence[QueryRounds]]) -> dict:
    """Cumulative stopping-time regret (rounds, summed over the stream) of each learner on pools
    of the first K arms of `order`, against the per-query oracle over those K arms.

    `learner_rounds[learner][i]` holds the learner's rounds per query on the pool of the first
    `sizes[i]` arms (every query of ``replayed_queries``)."""
    parsed = [Arm.parse(a) for a in order]
    rounds = {q: [fullinfo.fixed_rounds(q, a.drafter, a.gamma) for a in parsed] for q in fullinfo.qids}
    queries = replayed_queries(fullinfo)
    out = {"arms": list(order), "sizes": list(sizes), "regret": {l: [] for l in learner_rounds}, "oracle_rounds": []}
    for i, k in enumerate(sizes):
        oracle = {q: min(rounds[q][:k]) for q in fullinfo.qids}
        out["oracle_rounds"].append(float(sum(oracle.values())))
        for learner, per_size in learner_rounds.items():
            total = 0.0
            for q in queries:
                total += per_size[i][q] - oracle[q]
            out["regret"][learner].append(total)
    return out


def replayed_rows(fullinfo: FullInfo, arms: Sequence[str], learner_rounds: Mapping[str, QueryRounds],
                  setting: str = "replay", bsz: int | None = None) -> list[dict]:
    """Rows of a replay under the length objective: best_fixed, oracle and every learner of
    `learner_rounds`, with MAT, stopping-time regret (rounds, vs the per-query oracle) and % of
    oracle. Exact for greedy records of replay-exact drafters; otherwise ``exact`` is False and
    the regret unit says why: one Monte-Carlo draw (sampling) or estimated (drafters whose
    live draft chains differ from their teacher-forced predictions)."""
    ev = SettingEval(fullinfo, arms, RoundCost())
    qids = replayed_queries(fullinfo)
    tokens = sum(fullinfo.tokens[q] for q in qids)
    oracle = np.array([ev.oracle_rounds[q] for q in qids])
    exact = fullinfo.exact_for(ev.arms)
    unit = "rounds" if exact else "rounds (Monte-Carlo)" if not fullinfo.greedy else "rounds (estimated)"

    def row(learner, rounds, arm=""):
        rounds = np.asarray(rounds, dtype=float)
        return dict(setting=setting, domain="mixed", bsz=bsz, learner=learner, arm=arm,
                    mat=tokens / rounds.sum() if rounds.sum() else None,
                    regret=float((rounds - oracle).mean()) if len(qids) else None,
                    pct_oracle=100.0 * oracle.sum() / rounds.sum() if rounds.sum() else None,
                    queries=len(qids), new_tokens=tokens, rounds=int(rounds.sum()), regret_unit=unit, exact=exact)

    best = ev.ranking[0]
    k = ev.arms.index(best)
    index = {q: i for i, q in enumerate(ev.qids)}
    out = [row("best_fixed", [ev.rounds[index[q], k] for q in qids], best),
           row("oracle", oracle, "per-query")]
    for learner, per_query in learner_rounds.items():
        out.append(row(learner, [per_query[q] for q in qids]))
    return out
