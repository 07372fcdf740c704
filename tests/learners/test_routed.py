"""Router learners: NormalHedge with a prior, the routing baseline, live runs that replay exactly,
and HedgeSpec from a right and from a wrong prior."""
import math

import numpy as np
import pytest

from drafters import ModelDrafter, NgramDrafter
from evaluators.records import append_records, by_query, read_records
from specsel import Arm, SpecEngine, arm_grid
from specsel.core.arms import arm_pairs
from specsel.core.seeds import query_seed
from specsel.learners import HedgeSpec, make_learner, normalhedge_weights
from specsel.learners.policy import LearnerPolicy
from specsel.replay.fullinfo import acceptance_matrix
from specsel.replay.simulate import simulate
from specsel.testing import random_prompts

from conftest import drafter_models, hf_greedy, target_model

POOL = ["noisy", "other", "ngram"]
MAX_NEW = 40


def test_a_uniform_prior_gives_plain_normalhedge():
    rng = np.random.default_rng(0)
    for _ in range(20):
        regret = rng.normal(size=5)
        w0, c0, _ = normalhedge_weights(regret)
        w1, c1, _ = normalhedge_weights(regret, prior=np.full(5, 0.2))
        assert np.allclose(w0, w1, atol=1e-12) and (c0 == c1 == math.inf or abs(c0 - c1) <= 1e-9 * c0)


def test_the_prior_weighs_the_potential_and_the_weights():
    prior = np.array([0.7, 0.2, 0.1])
    w, c, _ = normalhedge_weights(np.array([-1.0, -0.5, 0.0]), prior=prior)
    assert np.array_equal(w, prior) and c == math.inf            # no positive regret: the prior itself
    regret = np.array([0.4, 1.0, 0.9])
    w, c, _ = normalhedge_weights(regret, prior=prior)
    potential = float(prior @ np.exp(np.maximum(regret, 0) ** 2 / (2 * c)))
    assert potential == pytest.approx(math.e, rel=1e-9)          # sum_i pi_i exp([R_i]_+^2/(2c)) = e
    expect = prior * regret / c * np.exp(regret ** 2 / (2 * c))
    assert np.allclose(w, expect / expect.sum())


def test_priors_must_be_positive_and_one_per_arm():
    for bad in ([1.0, 0.0, 0.0], [0.5, 0.5], [np.nan, 1, 1]):
        with pytest.raises(ValueError, match="prior"):
            make_learner("router_hedgespec", 3, reward_range=(1, 5), prior=bad)
    with pytest.raises(ValueError, match="--router"):
        make_learner("router", 3, reward_range=(1, 5))


def test_router_plays_its_arm_whatever_happens():
    lrn = make_learner("router", 3, reward_range=(1, 5), prior=[0.1, 0.7, 0.2])
    for _ in range(5):
        assert lrn.select() == 1
        lrn.update(1, 1.0, np.array([5.0, 1.0, 5.0]))
    assert make_learner("router_hedgespec", 3, reward_range=(1, 5), prior=[0.1, 0.2, 0.7]).select() == 2


def stream(best: int, n_queries=12, length=60, k=3, seed=0):
    """Greedy acceptance matrices where drafter `best` accepts 90% of positions and the others 30%."""
    rng = np.random.default_rng(seed)
    rates = np.full(k, 0.3)
    rates[best] = 0.9
    return [(rng.random((k, length)) < rates[:, None]).astype(float) for _ in range(n_queries)]


def rounds(name, matrices, prior=None, k=3, gamma=4):
    pairs = [(j, gamma) for j in range(k)]
    total = 0
    for q, m in enumerate(matrices):
        kw = {} if prior is None else {"prior": prior}
        lrn = make_learner(name, k, reward_range=(1.0, gamma + 1.0), seed=query_seed(0, q), **kw)
        total += len(simulate(lrn, m, pairs))
    return total


@pytest.mark.parametrize("best,seed", [(0, 0), (2, 1)])
def test_a_right_prior_saves_rounds_and_a_wrong_one_is_overruled(best, seed):
    matrices = stream(best=best, seed=seed)
    right, wrong = np.full(3, 0.05), np.full(3, 0.05)
    right[best], wrong[(best + 1) % 3] = 0.9, 0.9
    plain = rounds("hedgespec", matrices)
    assert rounds("router_hedgespec", matrices, right) < plain          # a right router helps HedgeSpec ...
    with_wrong = rounds("router_hedgespec", matrices, wrong)
    assert with_wrong < 0.6 * rounds("router", matrices, wrong)          # ... a wrong one is overruled:
    assert with_wrong <= 1.1 * plain                                      # within 10% of no prior at all


def engine():
    models = drafter_models("llama")
    pool = {"noisy": ModelDrafter(models["noisy"]), "other": ModelDrafter(models["other"]), "ngram": NgramDrafter()}
    return SpecEngine(target_model("llama"), pool, eos_token_id=1)


@pytest.mark.parametrize("learner", ["router", "router_hedgespec"])
def test_router_learners_run_live_losslessly_and_replay_exactly(learner, tmp_path):
    arms = arm_grid(POOL, [1, 3])
    table = np.random.default_rng(3).dirichlet(np.ones(len(arms)), size=4) * 0.9 + 0.1 / len(arms)
    policy = LearnerPolicy(learner, arms, POOL, seed=5, priors=lambda q: table[q])
    ps = [p + p[:5] for p in random_prompts(4, min_len=3, max_len=12, seed=21)]
    result = engine().generate(ps, policy, max_new_tokens=MAX_NEW, feedback="full")
    for i, p in enumerate(ps):
        assert result.tokens[i] == hf_greedy(target_model("llama"), p, MAX_NEW)
    append_records(tmp_path / "records.jsonl", result.records)
    stored = by_query(read_records(tmp_path / "records.jsonl"))
    for row in range(len(ps)):
        live = [r for r in sorted(result.records, key=lambda r: r.round) if r.row == row]
        fresh = make_learner(learner, len(arms), reward_range=policy.reward_range, seed=query_seed(5, row),
                             prior=table[row])
        replayed = simulate(fresh, acceptance_matrix(stored[row], POOL), arm_pairs(arms, POOL), feedback="full")
        assert [arms[r.arm] for r in replayed] == [Arm(r.drafter, r.gamma) for r in live]
        assert [r.committed for r in replayed] == [r.committed for r in live]
        assert Arm(live[0].drafter, live[0].gamma) == arms[int(np.argmax(table[row]))]   # opens on the router's arm


def test_hedgespec_keeps_its_results_without_a_prior():
    lrn, ref = HedgeSpec(4, (1, 5), prior=None), HedgeSpec(4, (1, 5))
    rng = np.random.default_rng(1)
    for _ in range(30):
        r = rng.uniform(1, 5, size=4)
        assert lrn.select() == ref.select()
        lrn.update(0, 0, r)
        ref.update(0, 0, r)
    assert np.array_equal(lrn.weights(), ref.weights())
