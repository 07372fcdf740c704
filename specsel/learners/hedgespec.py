"""HedgeSpec (Not-a-Bandit, arXiv 2510.20064): NormalHedge on full-information losses.

NormalHedge (Chaudhuri, Freund, Hsu 2009) is parameter free.  With regret
``R_i = sum_t (ell_t(p) - ell_{t,i})`` and ``ell_t(p) = <p_t, ell_t>``, the
weights are ``w_i ∝ ([R_i]_+ / c) * exp([R_i]_+^2 / (2c))`` where ``c > 0``
solves ``mean_i exp([R_i]_+^2 / (2c)) = e``; uniform while no ``R_i > 0``.

The weights are invariant to scaling all losses by a positive constant, so the
loss normalisation ``1 - r/high`` only fixes the units of ``R`` and ``c``.
"""
from __future__ import annotations

import math

import numpy as np

from .base import Learner, sample_index


def normalhedge_weights(regret: np.ndarray, v0: float | None = None, tol: float = 1e-13,
                        max_iter: int = 100) -> tuple[np.ndarray, float, float]:
    """NormalHedge weights for a regret vector.

    Returns ``(w, c, v)`` with ``v = s^2 / (2c)``, ``s = max_i [R_i]_+``.  Writing
    ``b_i = [R_i]_+ / s`` turns the equation for ``c`` into the scale-free
    ``log mean_i exp(v b_i^2) = 1`` with ``v`` in ``[1, 1 + log K]``, solved by
    Newton's method (the left side is convex and increasing in ``v``, so Newton
    converges from any start; ``v0`` warm-starts it).  Every exponent is at most
    0 after shifting, so nothing overflows however large ``R`` grows.
    ``c`` is ``inf`` (and ``w`` uniform) when no ``R_i > 0``; it underflows to
    0 only for ``max R < ~1e-154``, which leaves ``w`` unaffected.
    """
    K = regret.shape[0]
    rp = np.maximum(regret, 0.0)                    # [R_i]_+
    s = rp.max()
    if not s > 0:
        return np.full(K, 1.0 / K), math.inf, math.nan   # uniform while no R_i > 0
    b = rp / s
    b2 = b * b
    log_k = math.log(K)
    lo, hi = 1.0, 1.0 + log_k                      # h(lo) <= 0 <= h(hi)
    v = hi if v0 is None or not lo <= v0 <= hi else v0
    for _ in range(max_iter):
        e = np.exp(v * (b2 - 1.0))                  # exp(v b_i^2 - v), largest term = 1
        tot = e.sum()
        h = v + math.log(tot) - log_k - 1.0         # log mean_i exp([R_i]_+^2/(2c)) - 1  (= 0 at the solution)
        step = h / (e.dot(b2) / tot)                # Newton: h / h'
        v_new = min(max(v - step, lo), hi)
        if abs(v_new - v) <= tol * v:
            v = v_new
            break
        v = v_new
    e = np.exp(v * (b2 - 1.0))
    w = b * e                                       # w_i ∝ ([R_i]_+/c) exp([R_i]_+^2/(2c))
    return w / w.sum(), s * s / (2.0 * v), v


class HedgeSpec(Learner):
    """NormalHedge over the loss vector ``ell_i = 1 - r_i/high`` of all arms.

    ``select()`` plays the arm of largest weight (deterministic, as the
    Not-a-Bandit system does); ``sample=True`` samples from the weights instead.
    ``update`` ignores ``reward`` and needs ``all_rewards``.
    """

    name = "hedgespec"
    full_information = True

    def __init__(self, n_arms, reward_range, seed=None, sample: bool = False):
        super().__init__(n_arms, reward_range, seed)
        if not self.reward_range[1] > 0:
            raise ValueError("HedgeSpec needs reward_range high > 0 (loss = 1 - r/high)")
        self.sample = bool(sample)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.regret = np.zeros(self.n_arms)   # R_i
        self.t = 0
        self._w = None
        self._v = None
        self.c = math.inf

    def weights(self) -> np.ndarray:
        """The distribution ``p_t`` for the coming round."""
        if self._w is None:
            self._w, self.c, v = normalhedge_weights(self.regret, self._v)
            if v == v:                        # keep the last finite solution as warm start
                self._v = v
        return self._w

    def select(self) -> int:
        w = self.weights()
        return sample_index(self.rng, w) if self.sample else int(np.argmax(w))

    def update(self, played, reward, all_rewards=None) -> None:
        if all_rewards is None:
            raise ValueError("HedgeSpec is a full-information learner: update() needs all_rewards "
                             "(the reward of every arm); use feedback='full'")
        r = np.asarray(all_rewards, dtype=float)
        if r.shape != (self.n_arms,):
            raise ValueError(f"all_rewards must have shape ({self.n_arms},), got {r.shape}")
        loss = 1.0 - r / self.reward_range[1]      # ell_{t,i} = 1 - r_{t,i}/high
        p = self.weights()
        self.regret += p.dot(loss) - loss          # R_i += ell_t(p) - ell_{t,i},  ell_t(p) = <p_t, ell_t>
        self._w = None
        self.t += 1
