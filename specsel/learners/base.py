"""The interface every selection policy implements.

A learner picks one of ``n_arms`` arms per round (``select``) and learns from
the round's outcome (``update``).  Bandit learners only use the played arm's
reward; full-information learners (``full_information = True``) need the
reward of every arm, passed as ``all_rewards``.  Rewards arrive in natural
units (accepted length incl. bonus in ``[1, L+1]``, or tokens per second in
``[0, high]``); ``reward_range=(low, high)`` tells each learner how to
normalise them as its paper does.

Learners are plain numpy objects: cheap to build (one per query is the
default), and they never import torch.
"""
from __future__ import annotations

import numpy as np


class Learner:
    """Base class: stores the arm count, the reward range and a seeded rng."""

    full_information: bool = False
    name: str = "learner"
    loss: str = "length"            # what a full-information learner learns from: "length" (A_s, via
                                    # update), "acceptance" (1 - gamma per position, via
                                    # observe_acceptance) or "auto" (acceptance where the router allows it)
    has_weights: bool = False       # True: weights() is a distribution over arms (lazy scoring reads it)

    def __init__(self, n_arms: int, reward_range: tuple[float, float], seed: int | None = None):
        n_arms = int(n_arms)
        if n_arms < 1:
            raise ValueError(f"n_arms must be >= 1, got {n_arms}")
        low, high = (float(x) for x in reward_range)
        if not high > low:
            raise ValueError(f"reward_range must satisfy low < high, got {reward_range}")
        self.n_arms = n_arms
        self.reward_range = (low, high)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def select(self) -> int:
        raise NotImplementedError

    def update(self, played: int, reward: float, all_rewards: np.ndarray | None = None) -> None:
        raise NotImplementedError

    def weights(self) -> np.ndarray:
        """The learner's current distribution over arms (learners with ``has_weights``)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no weights over arms")

    def observe_acceptance(self, gammas) -> None:
        """One committed position: ``gammas[i]`` = acceptance of arm i's drafter there
        (full-information learners whose ``loss`` allows it)."""
        raise NotImplementedError(f"{type(self).__name__} does not learn from per-position acceptance")

    def reset(self) -> None:
        """Forget everything (the rng restarts from ``seed`` too)."""
        self.rng = np.random.default_rng(self.seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_arms={self.n_arms}, reward_range={self.reward_range})"


def sample_index(rng: np.random.Generator, p: np.ndarray) -> int:
    """Draw an index with probabilities ``p`` (inverse CDF; faster than rng.choice)."""
    cdf = np.cumsum(p)
    i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(i, len(p) - 1)
