"""Acceptance records of one query and the arithmetic on them, shared by the learners' feedback
and the evaluators (numpy only).

A record of one query is a matrix ``gammas[j][s]`` (``n_drafters x N``): for greedy decoding the
0/1 matrix ``correct[j][s]`` (drafter ``j``'s teacher-forced argmax equals committed token ``s``);
for sampling the acceptance probabilities ``1 - TV(p, q_j)`` at each committed position. An arm
is ``(j, g)``: drafter index ``j``, speculation length ``g``. The expected accepted length (bonus
included) of arm ``(j, g)`` started at ``s`` is::

    A_s(j, g) = 1 + gamma_s + gamma_s*gamma_{s+1} + ... + prod_{k<g} gamma_{s+k}   in [1, g+1]

``replay_round`` is one round of an offline replay: the one place that decides how many tokens
an arm commits, so a learner's replay and a fixed arm's replay draw the same random numbers.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from specsel.core.arms import ArmPair


class Round(NamedTuple):
    """One round of an offline replay."""
    arm: int         # index of the arm played
    start: int       # first position committed in the round
    committed: int   # tokens committed (accepted + 1, capped at the tokens left)


def as_record(gammas) -> np.ndarray:
    """The record as a float ``[n_drafters, N]`` array; refuses other shapes and values outside [0, 1]."""
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


def replay_round(g: np.ndarray, drafter: int, gamma: int, start: int, greedy: bool,
                 rng: np.random.Generator) -> int:
    """Tokens arm ``(drafter, gamma)`` commits when played at position ``start`` of record ``g``.

    Greedy (0/1) records: the run of 1s in ``g[drafter, start:start+gamma]``, plus one (exact;
    no random number is drawn). Sampling records: each draft is accepted with probability
    ``gamma_s`` (one ``rng.random`` draw per draft position of the window), so the count is one
    Monte-Carlo draw. Capped at the tokens left.
    """
    seg = g[drafter, start:start + gamma]
    ok = seg > 0.5 if greedy else rng.random(len(seg)) < seg
    accepted = len(ok) if ok.all() else int(np.argmin(ok))   # run of accepted drafts
    return min(accepted + 1, g.shape[1] - start)


def arm_arrays(arms: Sequence[ArmPair]) -> tuple[np.ndarray, np.ndarray]:
    """``arms`` as two int arrays ``(drafter index, gamma)``."""
    if len(arms) == 0:
        raise ValueError("need at least one arm")
    a = np.asarray([(int(j), int(g)) for j, g in arms], dtype=np.int64)
    if (a < 0).any():
        raise ValueError(f"arm drafter indices and gammas must be >= 0: {arms}")
    return a[:, 0], a[:, 1]


def expected_lengths(gammas: np.ndarray, arm_drafter: np.ndarray, arm_gamma: np.ndarray,
                     start: int = 0, count: int | None = None) -> np.ndarray:
    """``A_s`` of every arm for ``s = start .. start+count-1``, shape ``[count, n_arms]``.

    ``gammas`` has shape ``[n_drafters, N]`` (positions ``0..N-1``); gammas past
    ``N`` count as 0 (no tokens there), which shortens ``A_s`` near the end.
    """
    g = np.asarray(gammas, dtype=float)
    if g.ndim != 2:
        raise ValueError(f"gammas must be [n_drafters, positions], got shape {g.shape}")
    n_d, n = g.shape
    count = n - start if count is None else count
    G = int(arm_gamma.max())
    if G == 0:
        return np.ones((count, len(arm_gamma)))
    padded = np.concatenate([g, np.zeros((n_d, G))], axis=1)
    win = sliding_window_view(padded, G, axis=1)[:, start:start + count]   # [n_d, count, G]
    table = np.ones((n_d, count, G + 1))
    # A_s(j, g) = 1 + sum_{i<g} prod_{k<=i} gamma_{s+k}
    table[:, :, 1:] += np.cumsum(np.cumprod(win, axis=2), axis=2)
    return table[arm_drafter, :, arm_gamma].T
