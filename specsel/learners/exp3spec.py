"""EXP3Spec (BanditSpec, arXiv 2505.15141, Algorithm 5): EXP3 for adversarial rewards."""
from __future__ import annotations

import math

import numpy as np

from .base import Learner, sample_index


class EXP3Spec(Learner):
    """Exponential weights on importance-weighted losses, anytime learning rate.

    Loss ``z = (high - Y)/(high - low)`` (= ``(L+1-Y)/L`` for accepted lengths in
    ``[1, L+1]``), clipped to [0, 1].  ``t`` is the current round, 1-based.
    Sampling uses the learner's own ``np.random.Generator(seed)``.
    """

    name = "exp3spec"

    def __init__(self, n_arms, reward_range, seed=None):
        super().__init__(n_arms, reward_range, seed)
        self._log_k = math.log(self.n_arms)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.cum_loss = np.zeros(self.n_arms)   # cumulative importance-weighted loss per arm
        self.t = 0                              # rounds completed

    def probabilities(self) -> np.ndarray:
        """The distribution ``p_t`` used in the coming round."""
        t = self.t + 1
        eta = math.sqrt(self._log_k / (t * self.n_arms))            # eta_t = sqrt(log K / (t K))
        w = np.exp(-eta * (self.cum_loss - self.cum_loss.min()))    # p_i ∝ exp(-eta_t * S_i) (min subtracted)
        return w / w.sum()

    def select(self) -> int:
        return sample_index(self.rng, self.probabilities())

    def update(self, played, reward, all_rewards=None) -> None:
        low, high = self.reward_range
        p = self.probabilities()                                     # same p_t as in select()
        z = min(max((high - reward) / (high - low), 0.0), 1.0)      # z = (L + 1 - Y) / L
        p_played = max(p[played], 1e-300)                           # an arm EXP3 sampled has p > 0
        self.cum_loss[played] += z / p_played                       # importance weighting z / p_I
        self.t += 1
