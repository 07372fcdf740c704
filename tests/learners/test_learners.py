"""Learners: formulas against hand computations, and regret behaviour on
synthetic speculative-decoding environments.  Every behavioural test also runs
a deliberately broken learner and shows that it violates the same check, so
the checks can fail."""
import math
import time

import numpy as np
import pytest

from specsel.learners import (
    LEARNERS,
    EpsilonGreedy,
    EXP3Spec,
    Fixed,
    HedgeSpec,
    RoundRobin,
    UCBSpec,
    make_learner,
    normalhedge_weights,
)


# ---------------------------------------------------------------- environments
class GeometricEnv:
    """Arm i drafts up to ``gammas[i]`` tokens, each accepted with probability
    ``alpha_i`` until the first rejection: accepted length incl. bonus is
    ``1 + min(Geometric, gamma_i)`` in ``[1, G+1]``.  ``alphas`` is ``[K]``
    (stationary) or ``[n_blocks, K]`` with the block changing every ``block``
    rounds (switching).  All arms share the round's uniforms, as counterfactual
    arms scored on the same verified tokens do."""

    def __init__(self, alphas, gammas, block=None):
        self.alphas = np.atleast_2d(np.asarray(alphas, dtype=float))
        self.gammas = np.asarray(gammas, dtype=int)
        self.block = block
        self.G = int(self.gammas.max())
        self.K = len(self.gammas)
        self.reward_range = (1.0, self.G + 1.0)

    def alpha(self, t):
        return self.alphas[0 if self.block is None else (t // self.block) % len(self.alphas)]

    def means(self, t):
        a = self.alpha(t)
        return (1 - a ** (self.gammas + 1)) / (1 - a)       # E[1 + min(Geom, g)]

    def draw(self, t, rng):
        ok = rng.random(self.G)[None, :] < self.alpha(t)[:, None]
        ok &= np.arange(self.G)[None, :] < self.gammas[:, None]
        return 1.0 + np.where(ok.all(axis=1), self.G, np.argmin(ok, axis=1))


def play(learner, env, T, seed):
    """Run ``T`` rounds; returns (cumulative pseudo-regret per round, total expected length)."""
    rng = np.random.default_rng(seed)
    regret, total = np.empty(T), 0.0
    for t in range(T):
        i = learner.select()
        y = env.draw(t, rng)
        m = env.means(t)
        regret[t] = m.max() - m[i]
        total += m[i]
        learner.update(i, y[i], all_rewards=y if learner.full_information else None)
    return np.cumsum(regret), total


def many_arm_env(n):
    """Two good arms (the best one last) plus ``n - 2`` random worse ones."""
    r = np.random.default_rng(123)
    return GeometricEnv(list(r.uniform(0.3, 0.75, n - 2)) + [0.7, 0.8], list(r.integers(1, 5, n - 2)) + [4, 4])


def switching_env(K=8, block=5):
    """The best arm alternates between two arms every ``block`` rounds."""
    r = np.random.default_rng(0)
    base = r.uniform(0.6, 0.8, K)
    best = r.choice(K, 2, replace=False)
    alphas = [base.copy(), base.copy()]
    alphas[0][best[0]] = alphas[1][best[1]] = 0.85
    return GeometricEnv(alphas, [4] * K, block=block)


# ------------------------------------------------------------ broken learners
class StuckUCB(UCBSpec):
    """Never explores: after the first pulls it keeps playing its worst arm."""

    def select(self):
        i = int(np.argmin(self.counts))
        return i if self.counts[i] == 0 else int(np.argmin(self.sums / self.counts))


class BanditFedHedge(HedgeSpec):
    """Throws the counterfactual rewards away (unplayed arms look perfect)."""

    def update(self, played, reward, all_rewards=None):
        r = np.full(self.n_arms, self.reward_range[1])
        r[played] = reward
        super().update(played, reward, all_rewards=r)


SEEDS = (0, 1, 2)


def mean_final_regret(cls, env, T, **kw):
    return float(np.mean([play(cls(env.K, env.reward_range, seed=s, **kw), env, T, s)[0][-1] for s in SEEDS]))


def mean_total(cls, env, T):
    return float(np.mean([play(cls(env.K, env.reward_range, seed=s), env, T, s)[1] for s in SEEDS]))


# --------------------------------------------------------- behavioural tests
def logarithmic(reg_1000, reg_4000):
    return bool(reg_4000 / reg_1000 < 2.5)    # linear growth would give 4


def test_ucbspec_regret_grows_logarithmically():
    env = GeometricEnv([0.95, 0.3, 0.2], [4, 4, 4])
    for cls, expect in ((UCBSpec, True), (StuckUCB, False)):
        curves = [play(cls(env.K, env.reward_range, seed=s), env, 4000, s)[0] for s in SEEDS]
        reg = np.mean(curves, axis=0)
        assert logarithmic(reg[999], reg[3999]) is expect, (cls.__name__, reg[999], reg[3999])
        if not expect:
            assert reg[3999] / reg[999] > 3.5     # the broken learner's regret is linear


def barely_changes(reg_2, reg_32, T):
    return bool(reg_32 - reg_2 < 0.01 * T)


def test_hedgespec_regret_barely_depends_on_number_of_arms():
    T = 2000
    env2, env32 = many_arm_env(2), many_arm_env(32)
    hedge = [mean_final_regret(HedgeSpec, e, T) for e in (env2, env32)]
    assert barely_changes(*hedge, T), hedge
    for cls in (UCBSpec, EXP3Spec):                   # bandit learners pay for every extra arm
        reg = [mean_final_regret(cls, e, T) for e in (env2, env32)]
        assert reg[1] > 4 * reg[0] and reg[1] > 10 * hedge[1], (cls.__name__, reg, hedge)
    broken = [mean_final_regret(BanditFedHedge, e, T) for e in (env2, env32)]
    assert not barely_changes(*broken, T), broken


def test_hedgespec_beats_ucbspec_when_best_arm_switches():
    T, env = 2000, switching_env()
    ucb = mean_total(UCBSpec, env, T)
    assert mean_total(HedgeSpec, env, T) > 1.03 * ucb
    assert not mean_total(BanditFedHedge, env, T) > 1.03 * ucb


# ------------------------------------------------------------ formula tests
def test_ucbspec_confidence_radius_by_hand():
    learner = UCBSpec(3, reward_range=(1, 5), delta=0.5)
    for arm, y in [(0, 3), (1, 2), (2, 5), (0, 4), (1, 1), (1, 2), (1, 3), (1, 4)]:
        learner.update(arm, y)
    t, K, L = 9, 3, 4
    for n, cr in zip((2, 5, 1), learner.confidence_radius()):
        hand = L / 2 * math.sqrt((1 + n) / n**2 * (1 + 2 * math.log(K * t**2 * math.sqrt(1 + n) / 0.5)))
        assert cr == pytest.approx(hand, rel=1e-12)
    ucb = learner.means + learner.confidence_radius()
    assert learner.select() == int(np.argmax(ucb)) == 2


def test_ucbspec_plays_every_arm_once_first():
    learner = UCBSpec(4, reward_range=(1, 5))
    played = []
    for _ in range(4):
        played.append(learner.select())
        learner.update(played[-1], 5.0)
    assert sorted(played) == [0, 1, 2, 3]


def test_exp3spec_probabilities_by_hand():
    learner = EXP3Spec(3, reward_range=(1, 5), seed=0)
    assert np.allclose(learner.probabilities(), 1 / 3)
    learner.update(0, 3.0)                       # z = (5-3)/4 = 0.5, p = 1/3  ->  S_0 = 1.5
    eta2 = math.sqrt(math.log(3) / (2 * 3))
    p2 = np.exp(-eta2 * np.array([1.5, 0, 0]))
    p2 /= p2.sum()
    assert np.allclose(learner.probabilities(), p2)
    learner.update(2, 2.0)                       # z = 0.75  ->  S_2 = 0.75 / p2[2]
    eta3 = math.sqrt(math.log(3) / (3 * 3))
    p3 = np.exp(-eta3 * np.array([1.5, 0, 0.75 / p2[2]]))
    assert np.allclose(learner.probabilities(), p3 / p3.sum(), rtol=1e-12)


def test_exp3spec_samples_from_its_probabilities():
    learner = EXP3Spec(3, reward_range=(1, 5), seed=1)
    learner.cum_loss[:] = [0.0, 3.0, 30.0]
    p = learner.probabilities()
    counts = np.bincount([learner.select() for _ in range(4000)], minlength=3) / 4000
    assert np.allclose(counts, p, atol=0.03)


def log_mean_exp(x):
    return x.max() + math.log(np.mean(np.exp(x - x.max())))


@pytest.mark.parametrize("regret", [[0.5, -1.0, 2.0, 0.1], [3.0, 3.0, -2.0], [1e9, 5e8, -1e9, 1.0], [1e-100, -1.0]])
def test_normalhedge_c_solves_its_equation(regret):
    R = np.array(regret)
    w, c, _ = normalhedge_weights(R)
    rp = np.maximum(R, 0)
    assert 0 < c < math.inf
    assert log_mean_exp(rp**2 / (2 * c)) == pytest.approx(1.0, abs=1e-10)   # mean exp([R]_+^2/(2c)) = e
    assert np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0)
    logw = np.log(rp[rp > 0] / c) + rp[rp > 0] ** 2 / (2 * c)               # w_i ∝ ([R_i]_+/c) exp(...)
    hand = np.zeros_like(R)
    hand[rp > 0] = np.exp(logw - logw.max())
    assert np.allclose(w, hand / hand.sum(), atol=1e-12)


def test_normalhedge_uniform_without_positive_regret():
    w, c, _ = normalhedge_weights(np.array([-1.0, 0.0, -3.0]))
    assert np.allclose(w, 1 / 3) and c == math.inf
    learner = HedgeSpec(3, reward_range=(1, 5))
    assert np.allclose(learner.weights(), 1 / 3)
    learner.update(0, 0.0, all_rewards=np.array([5.0, 1.0, 3.0]))   # losses 0, 0.8, 0.4; <p, loss> = 0.4
    assert np.allclose(learner.regret, [0.4, -0.4, 0.0])
    assert learner.select() == 0


def test_hedgespec_uniform_tie_goes_to_largest_regret():
    learner = HedgeSpec(3, reward_range=(1, 5))
    learner.regret[:] = [-2.0, -0.5, -1.0]            # no positive regret: uniform weights
    assert np.allclose(learner.weights(), 1 / 3)
    assert learner.select() == 1


def test_hedgespec_discounted_regret_by_hand():
    learner = HedgeSpec(2, reward_range=(1, 5), discount=0.5)
    learner.update(0, 0.0, all_rewards=np.array([5.0, 1.0]))   # losses 0, 0.8; p uniform: <p, loss> = 0.4
    assert np.allclose(learner.regret, [0.4, -0.4])
    p = learner.weights()                                       # all weight on arm 0
    learner.update(0, 0.0, all_rewards=np.array([1.0, 5.0]))   # losses 0.8, 0
    assert np.allclose(learner.regret, 0.5 * np.array([0.4, -0.4]) + (p.dot([0.8, 0.0]) - np.array([0.8, 0.0])))
    with pytest.raises(ValueError, match="discount"):
        HedgeSpec(2, reward_range=(1, 5), discount=0.0)


def test_hedgespec_sleeping_arms_by_hand():
    """A nan loss = no loss there (drafter not scored): instant regret 0, and the mix is taken
    over the arms that have a loss, their weights renormalised."""
    learner = HedgeSpec(3, reward_range=(1, 5), discount=0.5)
    learner.regret[:] = [1.0, 0.5, -1.0]
    p = learner.weights()
    learner.observe_acceptance([1.0, float("nan"), 0.0])        # losses 0, -, 1
    mix = (p[0] * 0.0 + p[2] * 1.0) / (p[0] + p[2])
    assert np.allclose(learner.regret, [0.5 + mix, 0.25, -0.5 + mix - 1.0])
    before = learner.regret.copy()
    learner.observe_acceptance([float("nan")] * 3)               # nobody scored: nothing learned
    assert np.array_equal(learner.regret, before)
    learner.update(0, float("nan"), all_rewards=np.array([np.nan, 5.0, 1.0]))
    assert learner.regret[0] == 0.5 * before[0] and np.isfinite(learner.regret).all()


def test_hedgespec_discount_tracks_a_switch_within_a_query():
    """Arm 0 is perfect for 40 steps (a copied passage), then arm 1 is: the discounted learner
    follows the switch within a few steps, plain NormalHedge only after its lead is spent."""
    def steps_to_follow(discount):
        learner = HedgeSpec(2, reward_range=(1, 5), discount=discount)
        for _ in range(40):
            learner.update(0, 0.0, all_rewards=np.array([5.0, 1.0]))
        for k in range(1, 200):
            learner.update(0, 0.0, all_rewards=np.array([1.0, 5.0]))
            if learner.select() == 1:
                return k
        return 200
    assert steps_to_follow(0.8) <= 5 < 30 < steps_to_follow(1.0)


def test_hedgespec_needs_all_rewards():
    with pytest.raises(ValueError, match="all_rewards"):
        HedgeSpec(3, reward_range=(1, 5)).update(0, 3.0)


def test_hedgespec_sample_option_spreads_plays():
    learner = HedgeSpec(3, reward_range=(1, 5), seed=0, sample=True)
    learner.regret[:] = [1.0, 1.0, -1.0]
    assert set(learner.select() for _ in range(200)) == {0, 1}


# ------------------------------------------------------------- baselines etc
def test_baselines():
    f = Fixed(4, reward_range=(1, 5), arm=2)
    rr = RoundRobin(3, reward_range=(1, 5))
    seq = []
    for _ in range(5):
        assert f.select() == 2
        seq.append(rr.select())
        rr.update(seq[-1], 1.0)
    assert seq == [0, 1, 2, 0, 1]
    eg = EpsilonGreedy(3, reward_range=(1, 5), seed=0, epsilon=0.0)
    for arm, y in [(0, 2.0), (1, 4.0), (2, 3.0)]:
        assert eg.select() == arm
        eg.update(arm, y)
    assert eg.select() == 1
    eg2 = EpsilonGreedy(3, reward_range=(1, 5), seed=0, epsilon=1.0)
    assert set(eg2.select() for _ in range(100)) == {0, 1, 2}


def test_make_learner_and_reset():
    assert set(LEARNERS) == {"ucbspec", "exp3spec", "hedgespec", "fixed", "round_robin", "epsilon_greedy", "router",
                             "router_hedgespec"}
    for name in LEARNERS:
        kw = {"prior": [0.1, 0.3, 0.2, 0.3, 0.1]} if name.startswith("router") else {}
        a = make_learner(name, 5, reward_range=(1, 5), seed=3, **kw)
        b = make_learner(name, 5, reward_range=(1, 5), seed=3, **kw)
        rewards = np.linspace(1, 5, 5)
        for _ in range(10):
            a.update(a.select(), 3.0, all_rewards=rewards)
        a.reset()
        assert [a.select() for _ in range(5)] == [b.select() for _ in range(5)]
    with pytest.raises(ValueError):
        make_learner("nope", 3, reward_range=(1, 5))
    with pytest.raises(ValueError):
        make_learner("ucbspec", 3, reward_range=(5, 1))


def test_updates_are_fast_with_32_arms():
    rewards = np.random.default_rng(0).uniform(1, 9, size=(500, 32))
    for name in LEARNERS:
        kw = {"prior": np.full(32, 1 / 32)} if name.startswith("router") else {}
        learner = make_learner(name, 32, reward_range=(1, 9), seed=0, **kw)
        start = time.perf_counter()
        for r in rewards:
            learner.update(learner.select(), r[0], all_rewards=r)
        per_round = (time.perf_counter() - start) / len(rewards)
        assert per_round < 200e-6, (name, per_round)   # ~25 us measured; loose for busy machines
