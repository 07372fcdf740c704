"""Learners replayed offline on a full-information run (no models): the regret-vs-arms curve
of the study's report and the rows of ``specsel replay``.

Each learner is rebuilt per query as ``specsel.learners.policy.LearnerPolicy`` builds it live
(seeded by the query's stream position) and replayed with ``specsel.learners.replay.simulate``;
for greedy records of replay-exact drafters a replay equals the live run it stands for. The
round counts go to ``evaluators.offline``, which builds the rows and curves.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from evaluators.fullinfo import FullInfo
from evaluators.offline import curve_sizes, interleaved_arms, regret_curve, replayed_queries, replayed_rows
from specsel.core.arms import Arm
from specsel.core.seeds import query_seed
from specsel.learners import make_learner
from specsel.learners.replay import simulate


def replay_learner(fullinfo: FullInfo, learner: str, pairs: Sequence[tuple[int, int]], seed: int = 0,
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


def _pairs(fullinfo: FullInfo, arms: Sequence[str]) -> list[tuple[int, int]]:
    parsed = [Arm.parse(a) for a in arms]
    return [fullinfo.pair(a.drafter, a.gamma) for a in parsed]


def regret_vs_arms(fullinfo: FullInfo, arms: Sequence[str], learners: Sequence[str], seed: int = 0,
                   sizes: Sequence[int] | None = None, score_every: int = 1) -> dict:
    """Cumulative stopping-time regret (rounds, summed over the stream) of each learner replayed
    offline on pools of the first K arms (interleaved order), against the per-query oracle over
    those K arms (evaluators.offline.regret_curve)."""
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
    for best_fixed, oracle and every learner (evaluators.offline.replayed_rows). Exact for
    greedy records of replay-exact drafters; estimates otherwise (the rows say so)."""
    pairs = _pairs(fullinfo, arms)
    rounds = {l: replay_learner(fullinfo, l, pairs, seed, score_every=score_every) for l in learners}
    return replayed_rows(fullinfo, arms, rounds, setting=setting, bsz=bsz)
