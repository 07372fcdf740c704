"""Offline replay of selection policies on full-information records (no models).

A record of one query is a matrix ``gammas[j][s]`` (``n_drafters x N``): for
greedy decoding the 0/1 matrix ``correct[j][s]`` (drafter ``j``'s
teacher-forced argmax equals committed token ``s``); for sampling the
acceptance probabilities ``1 - TV(p, q_j)`` at each committed position.

Greedy records (0/1) are replayed **exactly**: playing arm ``(j, g)`` at
position ``s`` accepts the run of 1s in ``correct[j][s:s+g]`` (a greedy
drafter's chain equals its teacher-forced predictions while it is accepted)
and commits ``accepted + 1`` tokens, capped at the ``N - s`` tokens left.

Sampling records (probabilities) cannot be replayed exactly (another arm
would have sampled other tokens).  ``simulate`` then draws each draft's
acceptance as Bernoulli(gamma) on the recorded sequence, so its rounds are one
Monte-Carlo approximation; report ``per_token_regret`` (expected lengths,
exact for both kinds) rather than round counts.  ``rounds_fixed``,
``best_fixed_arm``, ``worst_arm`` and thus stopping-time regret need 0/1
records and raise ``ValueError`` otherwise.

Updates go through ``specsel.learners.feedback.FeedbackRouter``, the object the engine
uses live, so replay and live runs update learners identically.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

from specsel.learners.feedback import CostModel, FeedbackRouter, arm_arrays, expected_lengths

Arm = tuple[int, int]


class Round(NamedTuple):
    arm: int         # index of the arm played
    start: int       # first position committed in the round
    committed: int   # tokens committed (accepted + 1, capped at the tokens left)


def _as_record(gammas) -> np.ndarray:
    g = np.asarray(gammas, dtype=float)
    if g.ndim != 2:
        raise ValueError(f"a record must be [n_drafters, N], got shape {g.shape}")
    if ((g < 0) | (g > 1)).any():
        raise ValueError("gammas must lie in [0, 1]")
    return g


def is_greedy_record(gammas) -> bool:
    """True when every gamma is 0 or 1 (exact replay possible)."""
    g = np.asarray(gammas)
    return bool(((g == 0) | (g == 1)).all())


def _require_greedy(g: np.ndarray) -> None:
    if not is_greedy_record(g):
        raise ValueError("exact round counts need a greedy 0/1 record; "
                         "for sampling records use per_token_regret")


def simulate(learner: Callable | object, correct, arms: Sequence[Arm], feedback: str | None = None,
             cost: CostModel | None = None, seed: int | None = 0) -> list[Round]:
    """Run one query with a policy; returns its rounds.

    ``learner``: a learner instance (used as is, e.g. shared across queries) or
    a zero-argument factory (a fresh learner for this query).  ``feedback``:
    ``"bandit"`` (learner sees the played arm's committed length) or ``"full"``
    (the router also gets the gammas of the committed positions); default:
    ``"full"`` if ``learner.full_information`` else ``"bandit"``.  ``seed``
    drives the Bernoulli acceptances of sampling records (unused for 0/1).
    """
    if not hasattr(learner, "select"):
        learner = learner()
    if feedback is None:
        feedback = "full" if learner.full_information else "bandit"
    if feedback not in ("bandit", "full"):
        raise ValueError(f"feedback must be 'bandit' or 'full', got {feedback!r}")
    g = _as_record(correct)
    n = g.shape[1]
    greedy = is_greedy_record(g)
    rng = np.random.default_rng(seed)
    router = FeedbackRouter(learner, arms, cost)
    rounds, s = [], 0
    while s < n:
        i = int(learner.select())
        j, k = router.arms[i]
        seg = g[j, s:s + k]
        ok = seg > 0.5 if greedy else rng.random(len(seg)) < seg
        accepted = len(ok) if ok.all() else int(np.argmin(ok))   # run of accepted drafts
        committed = min(accepted + 1, n - s)
        router.on_round(i, committed, g[:, s:s + committed] if feedback == "full" else None)
        rounds.append(Round(i, s, committed))
        s += committed
    router.flush()
    return rounds


def _run_lengths(row: np.ndarray) -> np.ndarray:
    """``run[s]`` = number of consecutive 1s starting at ``s``."""
    n = len(row)
    idx = np.arange(n)
    next_zero = np.minimum.accumulate(np.where(row > 0.5, n, idx)[::-1])[::-1]
    return next_zero - idx


def rounds_fixed(correct, arm: Arm) -> int:
    """Target rounds the fixed arm ``(j, g)`` needs for the whole query (exact, 0/1 records)."""
    g = _as_record(correct)
    _require_greedy(g)
    j, k = int(arm[0]), int(arm[1])
    run = _run_lengths(g[j]).tolist()
    n, s, rounds = g.shape[1], 0, 0
    while s < n:
        s += min(min(run[s], k) + 1, n - s)
        rounds += 1
    return rounds


def best_fixed_arm(correct, arms: Sequence[Arm]) -> tuple[int, int]:
    """Per-query oracle: ``(arm index, rounds)`` of the fixed arm needing fewest rounds (first on ties)."""
    r = [rounds_fixed(correct, a) for a in arms]
    i = int(np.argmin(r))
    return i, r[i]


def worst_arm(correct, arms: Sequence[Arm]) -> tuple[int, int]:
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


def arm_length_table(gammas, arms: Sequence[Arm]) -> np.ndarray:
    """``A_s(arm)`` for every position and arm, shape ``[N, n_arms]``
    (gammas past the end of the query count as 0)."""
    return expected_lengths(_as_record(gammas), *arm_arrays(arms))


def best_arm_in_hindsight(gammas, arms: Sequence[Arm]) -> int:
    """Arm maximising ``sum_s A_s(arm)`` over all positions (works for both record kinds)."""
    return int(np.argmax(arm_length_table(gammas, arms).sum(axis=0)))


def per_token_regret(gammas, arms: Sequence[Arm], rounds: Sequence[Round]) -> float:
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
