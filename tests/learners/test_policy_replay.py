"""Learners drive the live engine; offline replay of its records reproduces the run exactly (greedy)."""
import pytest

from drafters import ModelDrafter, NgramDrafter
from evaluators.records import append_records, by_query, read_records, to_dict
from specsel import Arm, SpecEngine, arm_grid
from specsel.core.arms import arm_pairs
from specsel.core.seeds import query_seed
from specsel.learners import make_learner
from specsel.learners.policy import LearnerPolicy
from specsel.replay.fullinfo import acceptance_matrix
from specsel.replay.simulate import simulate
from specsel.testing import random_prompts

from conftest import drafter_models, hf_greedy, target_model

POOL = ["noisy", "other", "ngram"]
MAX_NEW = 40


def engine(arch="llama"):
    models = drafter_models(arch)
    pool = {"noisy": ModelDrafter(models["noisy"]), "other": ModelDrafter(models["other"]), "ngram": NgramDrafter()}
    return SpecEngine(target_model(arch), pool, eos_token_id=1)


def prompts(n=4):
    return [p + p[:5] for p in random_prompts(n, min_len=3, max_len=12, seed=21)]




@pytest.mark.parametrize("learner", ["ucbspec", "exp3spec", "hedgespec", "epsilon_greedy", "round_robin"])
def test_replay_reproduces_the_live_run(learner, tmp_path):
    arms = arm_grid(POOL, [1, 3, 6])
    policy = LearnerPolicy(learner, arms, POOL, seed=5)
    ps = prompts()
    result = engine().generate(ps, policy, max_new_tokens=MAX_NEW, feedback="full")
    for i, p in enumerate(ps):                                  # still lossless
        assert result.tokens[i] == hf_greedy(target_model("llama"), p, MAX_NEW)
    append_records(tmp_path / "records.jsonl", result.records)        # replay reads only the file
    stored = by_query(read_records(tmp_path / "records.jsonl"))
    played_arms = set()
    for row in range(len(ps)):
        live = [r for r in sorted(result.records, key=lambda r: r.round) if r.row == row]
        correct = acceptance_matrix(stored[row], POOL)
        assert correct.shape[1] == len(result.tokens[row])
        fresh = make_learner(learner, len(arms), reward_range=policy.reward_range, seed=query_seed(5, row))
        replayed = simulate(fresh, correct, arm_pairs(arms, POOL),
                            feedback="full" if fresh.full_information else "bandit")
        assert len(replayed) == len(live)                       # exact stopping time
        assert [arms[r.arm] for r in replayed] == [Arm(r.drafter, r.gamma) for r in live]
        assert [r.committed for r in replayed] == [r.committed for r in live]
        played_arms |= {(r.drafter, r.gamma) for r in live}
    assert len(played_arms) > 1                                 # the learner really chose


def test_shared_learner_plays_one_arm_per_round():
    arms = arm_grid(POOL, [2, 4])
    policy = LearnerPolicy("ucbspec", arms, POOL, shared=True)
    result = engine().generate(prompts(), policy, max_new_tokens=24)
    by_round = {}
    for r in result.records:
        by_round.setdefault((r.batch, r.verify_s), set()).add((r.drafter, r.gamma))
    assert all(len(v) == 1 for v in by_round.values())


def test_throughput_objective_runs_and_stays_lossless():
    arms = arm_grid(POOL, [1, 4]) + [Arm.autoregressive()]
    policy = LearnerPolicy("hedgespec", arms, POOL, objective="throughput")
    ps = prompts(3)
    result = engine().generate(ps, policy, max_new_tokens=MAX_NEW, feedback="full")
    for i, p in enumerate(ps):
        assert result.tokens[i] == hf_greedy(target_model("llama"), p, MAX_NEW)
    assert policy.cost.verify_n.sum() > 0


def test_lazy_scoring_scores_only_weighted_drafters_and_stays_lossless():
    """Throughput objective: HedgeSpec asks only for drafters with an arm of positive weight,
    all of them every refresh_every-th window; with the length objective, always all."""
    arms = arm_grid(POOL, [1, 4])
    ps = prompts(3)
    policy = LearnerPolicy("hedgespec", arms, POOL, objective="throughput", refresh_every=3)
    assert policy.lazy_scoring
    asked = []
    wanted = policy.scored_drafters
    policy.scored_drafters = lambda: asked.append(wanted()) or asked[-1]
    result = engine().generate(ps, policy, max_new_tokens=MAX_NEW, feedback="full")
    assert result.tokens == [hf_greedy(target_model("llama"), p, MAX_NEW) for p in ps]
    assert [len(a) for a in asked[::3]] == [len(POOL)] * len(asked[::3])          # refresh windows
    assert any(len(a) < len(POOL) for a in asked)                                 # lazy in between
    for rec in result.records:                                  # the played drafter is always scored
        assert rec.drafter in rec.position_acceptance
    assert all(r.learner.t > 0 for r in policy.routers.values())
    assert not LearnerPolicy("hedgespec", arms, POOL).lazy_scoring                  # length objective
    assert not LearnerPolicy("ucbspec", arms, POOL, objective="throughput").lazy_scoring   # bandit
    assert LearnerPolicy("hedgespec", arm_grid(["ngram"], [2]), POOL).scored_drafters() == ["ngram"]
    with pytest.raises(ValueError, match="refresh_every"):
        LearnerPolicy("hedgespec", arms, POOL, objective="throughput", refresh_every=0)


@pytest.mark.parametrize("lazy_drafters, expected", [(1, {"noisy", "ngram"}), (2, {"noisy", "other", "ngram"}),
                                                     (None, {"noisy", "other", "ngram"})])
def test_lazy_scoring_asks_for_each_rows_favourite_drafters(lazy_drafters, expected):
    """Between refresh windows: per row the lazy_drafters drafters of most weight (summed over
    their arms), plus the played ones; drafters without weight never."""
    arms = arm_grid(POOL, [1, 4])                      # noisy@4 noisy@1 other@4 other@1 ngram@4 ngram@1
    policy = LearnerPolicy("hedgespec", arms, POOL, objective="throughput", lazy_drafters=lazy_drafters)
    policy.start(2)
    policy.select([0, 1])
    weights = {0: [0.5, 0.1, 0.3, 0.0, 0.0, 0.0],      # noisy 0.6 > other 0.3
               1: [0.0, 0.0, 0.1, 0.0, 0.2, 0.3]}      # ngram 0.5 > other 0.1
    for row, w in weights.items():
        policy.routers[row].learner.weights = lambda w=w: w
        policy.played[row] = 4                          # both rows played ngram@4
    assert policy.scored_drafters() == POOL             # the first window of a batch: refresh
    assert set(policy.scored_drafters()) == expected
    weights[0][:] = [0.0] * 6                           # no weight anywhere but row 1's
    weights[1][:] = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert policy.scored_drafters() == ["ngram"]
    # the autoregressive arm is nobody's favourite drafter: it has nothing to score; a row playing it
    # asks for no scores until the next refresh window; playing a drafter, it asks for its favourite
    policy = LearnerPolicy("hedgespec", [Arm.autoregressive(), *arms], POOL, objective="throughput")
    policy.start(1)
    policy.select([0])
    policy.routers[0].learner.weights = lambda: [0.9, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0]
    policy.played[0] = 0
    policy.scored_drafters()                            # refresh
    assert policy.scored_drafters() == []
    policy.played[0] = 6                                # ngram@1
    assert policy.scored_drafters() == ["other", "ngram"]
    with pytest.raises(ValueError, match="lazy_drafters"):
        LearnerPolicy("hedgespec", arms, POOL, objective="throughput", lazy_drafters=0)


def test_full_information_learner_needs_full_feedback():
    policy = LearnerPolicy("hedgespec", arm_grid(POOL, [2]), POOL)
    with pytest.raises(ValueError, match="feedback='full'"):
        engine().generate(prompts(2), policy, max_new_tokens=8, feedback="bandit")


def test_unknown_drafter_or_objective_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown drafter"):
        LearnerPolicy("ucbspec", [Arm("eagle", 2)], POOL)
    with pytest.raises(ValueError, match="objective"):
        LearnerPolicy("ucbspec", arm_grid(POOL, [2]), POOL, objective="speed")


def test_records_file_survives_an_interrupted_write(tmp_path):
    path = tmp_path / "r.jsonl"
    append_records(path, [{"row": 0, "round": 0, "committed": 2}], query="q0")
    with path.open("a") as f:
        f.write('{"row": 0, "round": 1, "comm')          # killed mid-line
    assert read_records(path) == [{"row": 0, "round": 0, "committed": 2, "query": "q0"}]
    path.write_text('{"row": 0}\nnot json\n{"row": 1}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_records(path)
    with pytest.raises(ValueError, match="feedback='full'"):
        acceptance_matrix([{"round": 0, "position_acceptance": None}], POOL)


def test_policy_reused_across_batches_gives_each_query_its_own_learner():
    arms = arm_grid(POOL, [1, 3])
    policy = LearnerPolicy("exp3spec", arms, POOL, seed=2)
    ps = prompts(4)
    eng = engine()
    first = eng.generate(ps[:2], policy, max_new_tokens=24, feedback="full")
    second = eng.generate(ps[2:], policy, max_new_tokens=24, feedback="full")
    assert policy.queries_seen == 4
    for row in range(2):                                   # batch 2, row r is query 2 + r
        live = sorted((r for r in second.records if r.row == row), key=lambda r: r.round)
        correct = acceptance_matrix([to_dict(r) for r in live], POOL)
        fresh = make_learner("exp3spec", len(arms), reward_range=policy.reward_range, seed=query_seed(2, 2 + row))
        replayed = simulate(fresh, correct, arm_pairs(arms, POOL), feedback="bandit")
        assert [arms[r.arm] for r in replayed] == [Arm(r.drafter, r.gamma) for r in live]
    assert first.tokens and second.tokens


def test_seek_numbers_a_batch_as_a_later_part_of_the_stream():
    """A fresh policy told to seek(2) plays, on prompts 2-3, what the policy that saw prompts
    0-1 first played on them (the study resumes and interleaves batches this way)."""
    arms = arm_grid(POOL, [1, 3])
    ps = prompts(4)
    eng = engine()
    straight = LearnerPolicy("exp3spec", arms, POOL, seed=2)
    eng.generate(ps[:2], straight, max_new_tokens=24, feedback="full")
    want = eng.generate(ps[2:], straight, max_new_tokens=24, feedback="full")
    jumped = LearnerPolicy("exp3spec", arms, POOL, seed=2)
    jumped.seek(2)
    got = eng.generate(ps[2:], jumped, max_new_tokens=24, feedback="full")
    assert [(r.row, r.drafter, r.gamma) for r in got.records] == [(r.row, r.drafter, r.gamma) for r in want.records]
    with pytest.raises(ValueError, match=">= 0"):
        jumped.seek(-1)


def test_lazily_scored_records_are_not_replayed():
    from specsel.replay.fullinfo import fully_scored
    full = [{"round": 0, "position_acceptance": {"a": [1.0], "b": [0.0]}},
            {"round": 1, "position_acceptance": {"a": [0.0, 1.0], "b": [1.0, 1.0]}}]
    lazy = [full[0], {"round": 1, "position_acceptance": {"a": [0.0, 1.0]}}]
    assert fully_scored(full) and not fully_scored(lazy)
    assert not fully_scored([{"round": 0, "position_acceptance": {}}])
    assert acceptance_matrix(full, ["b", "a"]).tolist() == [[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="lazily scored"):
        acceptance_matrix(lazy, ["a", "b"])


@pytest.mark.parametrize("shared, batch_cost", [(False, True), (False, False), (True, True)])
def test_per_query_throughput_learners_cost_each_row_in_its_batch(shared, batch_cost):
    from specsel.core.costs import BatchRound
    from specsel.core.records import RoundInfo, RoundRecord
    arms = arm_grid(POOL, [1, 4]) + [Arm.autoregressive()]
    policy = LearnerPolicy("hedgespec", arms, POOL, objective="throughput", shared=shared, batch_cost=batch_cost)
    policy.start(2)
    chosen = policy.select([0, 1])
    heard = []
    for router in policy.routers.values():
        router.on_round = lambda played, committed, gammas, batch, heard=heard: heard.append(batch)
    recs = [RoundRecord(row=r, round=0, drafter=a.drafter, gamma=a.gamma, drafted=a.gamma, accepted=0, committed=1,
                        draft_s=0.01, verify_s=0.1, batch=2, position_acceptance={d: [1.0] for d in POOL})
            for r, a in enumerate(chosen)]
    policy.observe(RoundInfo([0, 1], chosen, recs))
    if shared or not batch_cost:
        assert heard == [None, None]
    else:
        assert heard == [BatchRound.of(0, recs, POOL), BatchRound.of(1, recs, POOL)]
        assert heard[0].rows == 2 and heard[0].other_tokens == 1
