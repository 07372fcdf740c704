"""UCBSpec (BanditSpec, arXiv 2505.15141, Algorithm 4): UCB for stochastic rewards."""
from __future__ import annotations

import numpy as np

from .base import Learner


class UCBSpec(Learner):
    """Play each arm once, then ``argmax_i mu_i + cr_i``.

    The reward (accepted length incl. bonus) is used unnormalised; ``L`` is the
    width of the reward range (``high - low``, = max speculation length for
    lengths in ``[1, L+1]``).  ``t`` is the current round, 1-based
    (= number of updates so far + 1).
    """

    name = "ucbspec"

    def __init__(self, n_arms, reward_range, seed=None, delta: float = 0.5):
        super().__init__(n_arms, reward_range, seed)
        if not 0 < delta < 1:
            raise ValueError(f"delta must lie in (0, 1), got {delta}")
        self.delta = float(delta)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.counts = np.zeros(self.n_arms)   # n_i
        self.sums = np.zeros(self.n_arms)     # sum of rewards of arm i
        self.t = 0                            # rounds completed

    @property
    def means(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / self.counts    # mu_i (nan while unplayed)

    def confidence_radius(self, t: int | None = None) -> np.ndarray:
        """``cr_i`` for every arm at round ``t`` (default: the coming round); inf if unplayed."""
        t = self.t + 1 if t is None else t
        n, K = self.counts, self.n_arms
        L = self.reward_range[1] - self.reward_range[0]
        with np.errstate(invalid="ignore", divide="ignore"):
            # cr_i = (L/2) * sqrt((1 + n_i)/n_i^2 * (1 + 2 log(K t^2 sqrt(1 + n_i) / delta)))
            cr = (L / 2) * np.sqrt((1 + n) / n**2 * (1 + 2 * np.log(K * t * t * np.sqrt(1 + n) / self.delta)))
        return np.where(n > 0, cr, np.inf)

    def select(self) -> int:
        i = int(np.argmin(self.counts))
        if self.counts[i] == 0:               # initialisation: play each arm once
            return i
        return int(np.argmax(self.sums / self.counts + self.confidence_radius()))  # argmax mu_i + cr_i

    def update(self, played, reward, all_rewards=None) -> None:
        self.counts[played] += 1
        self.sums[played] += reward
        self.t += 1
