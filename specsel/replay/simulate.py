"""Offline replay of a learner on one query's full-information record (no models).

The record is the ``[n_drafters, N]`` acceptance matrix of ``specsel.core.acceptance``.
Greedy records (0/1) are replayed **exactly**: playing arm ``(j, g)`` at position ``s``
accepts the run of 1s in ``correct[j][s:s+g]`` (a greedy drafter's chain equals its
teacher-forced predictions while it is accepted) and commits ``accepted + 1`` tokens, capped
at the ``N - s`` tokens left. Sampling records (probabilities) cannot be replayed exactly
(another arm would have sampled other tokens): each draft's acceptance is drawn as
Bernoulli(gamma) on the recorded sequence, so the rounds are one Monte-Carlo approximation.

Updates go through ``specsel.learners.feedback.FeedbackRouter``, the object the engine uses
live, so replay and live runs update learners identically. ``score_every=k`` replays deferred
scoring (``generate(score_every=k)``, greedy full information): the learner hears of its rounds k
at a time, so it chooses up to k - 1 rounds on stale weights, as it did live. Records-only measures of the
rounds (fixed arms, oracles, regrets) are in ``specsel.replay.fixed``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from specsel.core.acceptance import Round, as_record, is_greedy_record, replay_round
from specsel.core.arms import ArmPair
from specsel.core.costs import CostModel
from specsel.learners.feedback import FeedbackRouter

__all__ = ["Round", "simulate"]


def simulate(learner: Callable | object, correct, arms: Sequence[ArmPair], feedback: str | None = None,
             cost: CostModel | None = None, seed: int | None = 0, score_every: int = 1) -> list[Round]:
    """Run one query with a policy; returns its rounds.

    ``learner``: a learner instance (used as is, e.g. shared across queries) or
    a zero-argument factory (a fresh learner for this query).  ``feedback``:
    ``"bandit"`` (learner sees the played arm's committed length) or ``"full"``
    (the router also gets the gammas of the committed positions); default:
    ``"full"`` if ``learner.full_information`` else ``"bandit"``.  ``seed``
    drives the Bernoulli acceptances of sampling records (unused for 0/1). ``score_every``
    (full feedback, greedy records): rounds are delivered to the learner in groups of this many,
    the last group when the query ends (module docstring); bandit feedback and sampling records
    are never deferred, as live.
    """
    if not hasattr(learner, "select"):
        learner = learner()
    if feedback is None:
        feedback = "full" if learner.full_information else "bandit"
    if feedback not in ("bandit", "full"):
        raise ValueError(f"feedback must be 'bandit' or 'full', got {feedback!r}")
    if not isinstance(score_every, int) or score_every < 1:
        raise ValueError(f"score_every must be an integer >= 1 (got {score_every!r}); 1 delivers every round at once")
    g = as_record(correct)
    n = g.shape[1]
    greedy = is_greedy_record(g)
    hold = score_every if feedback == "full" and greedy else 1     # as live: only greedy scoring is deferred
    rng = np.random.default_rng(seed)
    router = FeedbackRouter(learner, arms, cost)
    rounds, s, pending = [], 0, []
    while s < n:
        i = int(learner.select())
        j, k = router.arms[i]
        committed = replay_round(g, j, k, s, greedy, rng)
        pending.append((i, committed, g[:, s:s + committed] if feedback == "full" else None))
        if len(pending) >= hold:
            for args in pending:
                router.on_round(*args)
            pending = []
        rounds.append(Round(i, s, committed))
        s += committed
    for args in pending:
        router.on_round(*args)
    router.flush()
    return rounds
