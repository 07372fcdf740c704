"""Baseline policies with the learner interface: fixed arm, round robin, epsilon-greedy.

(The per-query best and worst arms in hindsight are oracles computed from
full-information records: see ``specsel.replay.fixed``.)
"""
from __future__ import annotations

import numpy as np

from .base import Learner


class Fixed(Learner):
    """Always plays ``arm``."""

    name = "fixed"

    def __init__(self, n_arms, reward_range, seed=None, arm: int = 0):
        super().__init__(n_arms, reward_range, seed)
        if not 0 <= int(arm) < self.n_arms:
            raise ValueError(f"arm {arm} out of range for {self.n_arms} arms")
        self.arm = int(arm)

    def select(self) -> int:
        return self.arm

    def update(self, played, reward, all_rewards=None) -> None:
        pass


class RoundRobin(Learner):
    """Plays arms 0, 1, ..., K-1, 0, ... (advances once per update, i.e. per round)."""

    name = "round_robin"

    def __init__(self, n_arms, reward_range, seed=None):
        super().__init__(n_arms, reward_range, seed)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.t = 0

    def select(self) -> int:
        return self.t % self.n_arms

    def update(self, played, reward, all_rewards=None) -> None:
        self.t += 1


class EpsilonGreedy(Learner):
    """With probability ``epsilon`` a uniform arm, else the best empirical mean.

    Unplayed arms count as best (each is tried once first, in index order).
    """

    name = "epsilon_greedy"

    def __init__(self, n_arms, reward_range, seed=None, epsilon: float = 0.1):
        super().__init__(n_arms, reward_range, seed)
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
        self.epsilon = float(epsilon)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.counts = np.zeros(self.n_arms)
        self.sums = np.zeros(self.n_arms)

    def select(self) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_arms))
        i = int(np.argmin(self.counts))
        if self.counts[i] == 0:
            return i
        return int(np.argmax(self.sums / self.counts))

    def update(self, played, reward, all_rewards=None) -> None:
        self.counts[played] += 1
        self.sums[played] += reward
