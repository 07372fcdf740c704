"""Offline measures on full-information records of one query (records in, no models, no learners).

A record of one query is a matrix ``gammas[j][s]`` (``n_drafters x N``): for
greedy decoding the 0/1 matrix ``correct[j][s]`` (drafter ``j``'s
teacher-forced argmax equals committed token ``s``); for sampling the
acceptance probabilities ``1 - TV(p, q_j)`` at each committed position
(``specsel.core.acceptance``).

Greedy records (0/1) give every fixed arm's round count **exactly**: playing
arm ``(j, g)`` at position ``s`` accepts the run of 1s in ``correct[j][s:s+g]``
(a greedy drafter's chain equals its teacher-forced predictions while it is
accepted) and commits ``accepted + 1`` tokens, capped at the ``N - s`` tokens left.

Sampling records (probabilities) cannot be replayed exactly (another arm
would have sampled other tokens).  ``sampled_rounds_fixed`` then draws each
draft's acceptance as Bernoulli(gamma) on the recorded sequence, so its count is
one Monte-Carlo draw; report ``per_token_regret`` (expected lengths, exact for
both kinds) rather than round counts.  ``rounds_fixed``, ``best_fixed_arm``,
``worst_arm`` and thus stopping-time regret need 0/1 records and raise
``ValueError`` otherwise.

Learners are replayed by ``specsel.replay.simulate.simulate``; its rounds
(``Round``) are what ``per_token_regret`` and ``stopping_time_regret`` measure.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from specsel.core.acceptance import Round, arm_arrays, as_record, expected_lengths, is_greedy_record, replay_round
from specsel.core.arms import ArmPair

__all__ = ["Round", "is_greedy_record", "rounds_fixed", "sampled_rounds_fixed", "best_fixed_arm", "worst_arm",
           "stopping_time_regret", "arm_length_table", "best_arm_in_hindsight", "per_token_regret"]


def _require_greedy(g: np.ndarray) -> None:
    if not is_greedy_record(g):
        raise ValueError("exact round counts need a greedy 0/1 record; "
                         "for sampling records use per_token_regret")


def sampled_rounds_fixed(gammas, arm: ArmPair, seed: int | None = 0) -> int:
    """Rounds of the fixed arm ``(j, g)`` on the query, drawn as ``specsel.replay.simulate.simulate``
    draws them for a fixed learner with bandit feedback and the same ``seed``: one rng seeded by
    ``seed``, one ``replay_round`` per round (so the same random numbers, and the same count).
    Exact (no draws) when the record is 0/1."""
    g = as_record(gammas)
    n = g.shape[1]
    greedy = is_greedy_record(g)
    rng = np.random.default_rng(seed)
    j, k = int(arm[0]), int(arm[1])
    rounds, s = 0, 0
    while s < n:
        s += replay_round(g, j, k, s, greedy, rng)
        rounds += 1
    return rounds


def _run_lengths(row: np.ndarray) -> np.ndarray:
    """``run[s]`` = number of consecutive 1s starting at ``s``."""
    n = len(row)
    idx = np.arange(n)
    next_zero = np.minimum.accumulate(np.where(row > 0.5, n, idx)[::-1])[::-1]
    return next_zero - idx


def rounds_fixed(correct, arm: ArmPair) -> int:
    """Target rounds the fixed arm ``(j, g)`` needs for the whole query (exact, 0/1 records)."""
    g = as_record(correct)
    _require_greedy(g)
    j, k = int(arm[0]), int(arm[1])
    run = _run_lengths(g[j]).tolist()
    n, s, rounds = g.shape[1], 0, 0
    while s < n:
        s += min(min(run[s], k) + 1, n - s)
        rounds += 1
    return rounds


def best_fixed_arm(correct, arms: Sequence[ArmPair]) -> tuple[int, int]:
    """Per-query oracle: ``(arm index, rounds)`` of the fixed arm needing fewest rounds (first on ties)."""
    r = [rounds_fixed(correct, a) for a in arms]
    i = int(np.argmin(r))
    return i, r[i]


def worst_arm(correct, arms: Sequence[ArmPair]) -> tuple[int, int]:
    """``(arm index, rounds)`` of the fixed arm needing most rounds (first on ties)."""
    r = [rounds_fixed(correct, a) for a in arms]
    i = int(np.argmax(r))
    return i, r[i]


def _count(rounds) -> int:
    return rounds if isinstance(rounds, (int, np.integer)) else len(rounds)


def stopping_time_regret(policy_rounds, best_rounds) -> int:
    """BanditSpec's stopping-time regret: rounds(policy) - rounds(best fixed arm) on the
    same query.  Either argument is a count or a list of rounds."""
    return _count(policy_rounds) - _count(best_rounds)


def arm_length_table(gammas, arms: Sequence[ArmPair]) -> np.ndarray:
    """``A_s(arm)`` for every position and arm, shape ``[N, n_arms]``
    (gammas past the end of the query count as 0)."""
    return expected_lengths(as_record(gammas), *arm_arrays(arms))


def best_arm_in_hindsight(gammas, arms: Sequence[ArmPair]) -> int:
    """Arm maximising ``sum_s A_s(arm)`` over all positions (works for both record kinds)."""
    return int(np.argmax(arm_length_table(gammas, arms).sum(axis=0)))


def per_token_regret(gammas, arms: Sequence[ArmPair], rounds: Sequence[Round]) -> float:
    """Per-position expected-length regret against the best arm in hindsight.

    Every position ``s`` is charged to the arm of the round that committed it,
    ``a(s)``; with ``A_s`` from ``arm_length_table``::

        regret = max_i sum_s A_s(i) - sum_s A_s(a(s))

    This is the loss the per-position full-information learner competes on
    (Not-a-Bandit).  It is 0 for the best arm in hindsight played throughout,
    can be negative for an adaptive policy, and uses expected lengths, so it is
    meaningful for sampling records too.
    """
    table = arm_length_table(gammas, arms)
    n = table.shape[0]
    played = np.repeat([r.arm for r in rounds], [r.committed for r in rounds])
    if len(played) != n:
        raise ValueError(f"rounds cover {len(played)} positions, the record has {n}")
    return float(table.sum(axis=0).max() - table[np.arange(n), played].sum())
