"""HedgeSpec (Not-a-Bandit, arXiv 2510.20064): NormalHedge on full-information losses.

NormalHedge (Chaudhuri, Freund, Hsu 2009) is parameter free.  With regret
``R_i = sum_t (ell_t(p) - ell_{t,i})`` and ``ell_t(p) = <p_t, ell_t>``, the
weights are ``w_i ∝ ([R_i]_+ / c) * exp([R_i]_+^2 / (2c))`` where ``c > 0``
solves ``mean_i exp([R_i]_+^2 / (2c)) = e``; uniform while no ``R_i > 0``.

The weights are invariant to scaling all losses by a positive constant, so the
loss normalisation ``1 - r/high`` only fixes the units of ``R`` and ``c``.

``loss`` says what a position's loss is: ``"length"``, ``1 - A_s/high`` from the arms'
expected accepted lengths (fed with a delay of up to ``g`` positions); ``"acceptance"``,
``1 - gamma_s`` of each arm's drafter, fed as soon as the position is committed
(``observe_acceptance``; arms of one gamma, no cost model); ``"auto"`` (default), acceptance
where the router allows it, else length (specsel.learners.feedback).

``discount`` < 1 discounts past regret, ``R_i <- discount * R_i + (ell_t(p) - ell_{t,i})``
(discounted regret, Cesa-Bianchi & Lugosi 2006, Sec. 2.11), so the learner tracks a best
arm that shifts within a query: an answer that first copies its prompt (n-gram lookup
wins) and then writes new text (a trained head wins). ``discount = 1`` is plain
NormalHedge as in the paper.

Sleeping arms. A loss of ``nan`` means the arm has no loss at this position (its drafter was
not scored: lazy scoring, specsel.learners.policy). As with sleeping experts (Freund, Schapire, Singer,
Warmuth 1997), such an arm's instant regret is 0, and ``ell_t(p)`` is the mix over the arms
that have a loss, with their weights renormalised.
"""
from __future__ import annotations

import math

import numpy as np

from .base import Learner, sample_index

LOSSES = ("auto", "acceptance", "length")
DEFAULT_DISCOUNT = 0.5   # chosen by recipes/tune_hedge.py on eval queries the study never uses


def normalhedge_weights(regret: np.ndarray, v0: float | None = None, tol: float = 1e-13,
                        max_iter: int = 100, prior: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """NormalHedge weights for a regret vector, uniform or with prior weights ``prior``.

    Returns ``(w, c, v)`` with ``v = s^2 / (2c)``, ``s = max_i [R_i]_+``.  Writing
    ``b_i = [R_i]_+ / s`` turns the equation for ``c`` into the scale-free
    ``log mean_i exp(v b_i^2) = 1`` with ``v`` in ``[1, 1 + log K]``, solved by
    Newton's method (the left side is convex and increasing in ``v``, so Newton
    converges from any start; ``v0`` warm-starts it).  Every exponent is at most
    0 after shifting, so nothing overflows however large ``R`` grows.
    ``c`` is ``inf`` (and ``w`` uniform) when no ``R_i > 0``; it underflows to
    0 only for ``max R < ~1e-154``, which leaves ``w`` unaffected.

    With a prior ``pi`` (positive, summing to 1) the potential is the prior's mix (AdaNormalHedge,
    Luo & Schapire 2015, eq. 3 with a prior): ``c`` solves ``sum_i pi_i exp([R_i]_+^2/(2c)) = e``
    and ``w_i ∝ pi_i ([R_i]_+/c) exp([R_i]_+^2/(2c))``; ``v`` then lies in ``[1, 1 - log min_i pi_i]``
    and, while no ``R_i > 0``, ``w = pi``. ``prior=None`` is the uniform prior, computed as before.
    """
    K = regret.shape[0]
    rp = np.maximum(regret, 0.0)                    # [R_i]_+
    s = rp.max()
    if not s > 0:                                   # no R_i > 0: the prior (uniform without one)
        return (np.full(K, 1.0 / K) if prior is None else prior.copy()), math.inf, math.nan
    b = rp / s
    b2 = b * b
    log_norm = math.log(K) if prior is None else 0.0   # mean_i (uniform) or sum_i pi_i
    lo = 1.0                                           # h(lo) <= 0 <= h(hi)
    hi = 1.0 + math.log(K) if prior is None else 1.0 - math.log(prior.min())
    v = hi if v0 is None or not lo <= v0 <= hi else v0
    for _ in range(max_iter):
        e = np.exp(v * (b2 - 1.0))                  # exp(v b_i^2 - v), largest term = 1
        if prior is not None:
            e = prior * e
        tot = e.sum()
        h = v + math.log(tot) - log_norm - 1.0      # log mean_i exp([R_i]_+^2/(2c)) - 1  (= 0 at the solution)
        step = h / (e.dot(b2) / tot)                # Newton: h / h'
        v_new = min(max(v - step, lo), hi)
        if abs(v_new - v) <= tol * v:
            v = v_new
            break
        v = v_new
    e = np.exp(v * (b2 - 1.0))
    w = b * e                                       # w_i ∝ ([R_i]_+/c) exp([R_i]_+^2/(2c))
    if prior is not None:
        w = prior * w                               # ... times pi_i
    return w / w.sum(), s * s / (2.0 * v), v


def check_prior(prior, n_arms: int) -> np.ndarray:
    """A prior over the arms as a float vector summing to 1; every weight must be positive (a zero
    would exclude an arm for good, and NormalHedge's bound grows with log(1/pi_i))."""
    p = np.asarray(prior, dtype=float)
    if p.shape != (n_arms,):
        raise ValueError(f"prior must hold one weight per arm ({n_arms}), got shape {p.shape}")
    if not np.all(np.isfinite(p)) or not np.all(p > 0):
        raise ValueError("prior weights must be finite and > 0 (mix a router's probabilities with a uniform floor)")
    return p / p.sum()


class HedgeSpec(Learner):
    """NormalHedge over the loss vector ``ell_i = 1 - r_i/high`` of all arms.

    ``select()`` plays the arm of largest weight (deterministic, as the
    Not-a-Bandit system does; ties, e.g. the uniform start, go to the largest
    regret, then the lowest index); ``sample=True`` samples from the weights
    instead. ``discount`` in (0, 1] weighs past regret (module docstring). ``prior`` (one
    positive weight per arm) replaces the uniform prior of the potential (normalhedge_weights):
    the first round plays the prior's favourite, and the prior scales every later weight.
    ``update`` ignores ``reward`` and needs ``all_rewards``.
    """

    name = "hedgespec"
    full_information = True
    has_weights = True

    def __init__(self, n_arms, reward_range, seed=None, sample: bool = False, discount: float = DEFAULT_DISCOUNT,
                 loss: str = "auto", prior=None):
        super().__init__(n_arms, reward_range, seed)
        self.prior = None if prior is None else check_prior(prior, self.n_arms)
        if not self.reward_range[1] > 0:
            raise ValueError("HedgeSpec needs reward_range high > 0 (loss = 1 - r/high)")
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"HedgeSpec discount must lie in (0, 1] (got {discount}); 1 = plain NormalHedge")
        if loss not in LOSSES:
            raise ValueError(f"HedgeSpec loss must be one of {', '.join(LOSSES)} (got {loss!r})")
        self.sample = bool(sample)
        self.discount = float(discount)
        self.loss = loss
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
            self._w, self.c, v = normalhedge_weights(self.regret, self._v, prior=self.prior)
            if v == v:                        # keep the last finite solution as warm start
                self._v = v
        return self._w

    def select(self) -> int:
        w = self.weights()
        if self.sample:
            return sample_index(self.rng, w)
        top = np.flatnonzero(w >= w.max())
        return int(top[np.argmax(self.regret[top])])

    def update(self, played, reward, all_rewards=None) -> None:
        if all_rewards is None:
            raise ValueError("HedgeSpec is a full-information learner: update() needs all_rewards "
                             "(the reward of every arm); use feedback='full'")
        r = np.asarray(all_rewards, dtype=float)
        if r.shape != (self.n_arms,):
            raise ValueError(f"all_rewards must have shape ({self.n_arms},), got {r.shape}")
        self._step(1.0 - r / self.reward_range[1])      # ell_{t,i} = 1 - r_{t,i}/high

    def observe_acceptance(self, gammas) -> None:
        """One committed position: ``gammas[i]`` = acceptance of arm i's drafter there (loss 1 - gamma)."""
        g = np.asarray(gammas, dtype=float)
        if g.shape != (self.n_arms,):
            raise ValueError(f"gammas must have shape ({self.n_arms},), got {g.shape}")
        self._step(1.0 - g)

    def _step(self, loss: np.ndarray) -> None:
        awake = ~np.isnan(loss)
        if not awake.any():
            return
        p = self.weights()
        if awake.all():
            mix = p.dot(loss)
        else:
            p = p[awake]
            mix = p.dot(loss[awake]) / p.sum() if p.sum() > 0 else loss[awake].mean()
        # R_i <- discount * R_i + ell_t(p) - ell_{t,i},  ell_t(p) = <p_t, ell_t>; sleeping arms: 0
        instant = np.zeros_like(loss)
        instant[awake] = mix - loss[awake]
        self.regret = self.discount * self.regret + instant
        self._w = None
        self.t += 1
