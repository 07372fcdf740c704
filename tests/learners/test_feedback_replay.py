"""Feedback routing (expected lengths, delayed queue, cost model) and offline replay."""
import numpy as np
import pytest

from specsel.core.costs import BatchRound, CostModel
from specsel.learners import Fixed, HedgeSpec, UCBSpec, make_learner
from specsel.learners.feedback import FeedbackRouter, arm_arrays, expected_lengths
from specsel.replay.fixed import (
    Round,
    arm_length_table,
    best_arm_in_hindsight,
    best_fixed_arm,
    per_token_regret,
    rounds_fixed,
    sampled_rounds_fixed,
    stopping_time_regret,
    worst_arm,
)
from specsel.replay.simulate import simulate


class Recorder:
    """A learner that records its updates."""

    def __init__(self, n_arms, full_information):
        self.n_arms = n_arms
        self.full_information = full_information
        self.calls = []

    def select(self):
        return 0

    def update(self, played, reward, all_rewards=None):
        self.calls.append((played, reward, None if all_rewards is None else np.array(all_rewards)))


GAMMAS = np.array([[1.0, 0.5, 0.5, 1.0],
                   [0.0, 1.0, 1.0, 1.0]])
ARMS = [(0, 1), (0, 3), (1, 2)]


def test_expected_lengths_by_hand():
    A = expected_lengths(GAMMAS, *arm_arrays(ARMS + [(1, 0)]))
    # A_0: (0,1) 1+1; (0,3) 1+1+.5+.25; (1,2) 1+0; (1,0) 1
    assert np.allclose(A[0], [2.0, 2.75, 1.0, 1.0])
    # A_1: (0,1) 1+.5; (0,3) 1+.5+.25+.25; (1,2) 1+1+1
    assert np.allclose(A[1], [1.5, 2.0, 3.0, 1.0])
    # A_3 runs past the end: gammas there count as 0
    assert np.allclose(A[3], [2.0, 2.0, 2.0, 1.0])
    assert np.allclose(arm_length_table(GAMMAS, ARMS), A[:, :3])


def test_delayed_queue_applies_each_position_when_complete():
    learner = Recorder(3, full_information=True)
    router = FeedbackRouter(learner, ARMS)              # largest gamma 3: A_s needs s, s+1, s+2
    g = np.array([[1, 1, 0, 1, 0.5, 1, 1],
                  [0, 1, 1, 0.5, 1, 1, 0]], dtype=float)
    assert router.on_round(0, 1, g[:, 0:1]) == 0        # positions 0
    assert router.on_round(1, 2, g[:, 1:3]) == 1        # positions 0..2: A_0 complete
    assert router.on_round(2, 3, g[:, 3:6]) == 3        # positions 0..5: A_1, A_2, A_3
    assert router.pending == 2
    A = expected_lengths(g[:, :6], *arm_arrays(ARMS))
    assert [c[0] for c in learner.calls] == [0, 1, 1, 2]   # the arm that committed each position
    for s, (played, reward, all_r) in enumerate(learner.calls):
        assert np.allclose(all_r, A[s]) and reward == A[s][played]
    assert np.allclose(learner.calls[0][2], [2.0, 3.0, 1.0])   # by hand: 1+1 | 1+1+1+0 | 1+0
    assert np.allclose(learner.calls[3][2], [2.0, 3.0, 2.0])   # 1+1 | 1+1+.5+.5 | 1+.5+.5*1
    assert router.on_round(0, 1, g[:, 6:7]) == 1        # A_4 complete
    assert router.flush() == 2                          # the tail positions 5, 6 are dropped
    assert router.position == 0 and router.pending == 0


def test_bandit_learners_get_realised_length_once_per_round():
    learner = Recorder(3, full_information=False)
    router = FeedbackRouter(learner, ARMS)
    router.on_round(1, 3, GAMMAS[:, :3])
    router.on_round(2, 1)
    assert [(c[0], c[1], c[2]) for c in learner.calls] == [(1, 3.0, None), (2, 1.0, None)]


def test_full_information_learner_needs_gammas():
    router = FeedbackRouter(HedgeSpec(3, reward_range=(1, 4)), ARMS)
    with pytest.raises(ValueError, match="new_gammas"):
        router.on_round(0, 2)
    with pytest.raises(ValueError):
        router.on_round(0, 2, np.ones((2, 3)))
    with pytest.raises(ValueError):
        FeedbackRouter(HedgeSpec(2, reward_range=(1, 4)), ARMS)


def test_cost_model_defaults_and_throughput():
    cost = CostModel(n_drafters=2, max_gamma=3)
    j, g = arm_arrays(ARMS)
    assert np.allclose(cost.seconds(j, g), 1.0)           # nothing observed: reward = length
    cost.observe_verify(1, 0.2)
    cost.observe_verify(1, 0.4)
    cost.observe_verify(3, 0.5)
    cost.observe_draft(0, 0.01)
    assert cost.t_verify(1) == pytest.approx(0.3)
    assert cost.t_verify(2) == pytest.approx(0.4)         # unobserved: on the line between widths 1 and 3
    assert cost.t_verify(0) == pytest.approx(0.3)         # below the narrowest seen: its time
    assert cost.t_draft(1) == 0.0                         # unobserved drafter: free
    assert np.allclose(cost.seconds(j, g), [0.31, 0.53, 0.4])
    assert np.allclose(cost.throughput([2.0, 2.0, 3.0], j, g), [2 / 0.31, 2 / 0.53, 7.5])
    learner = Recorder(3, full_information=True)
    router = FeedbackRouter(learner, ARMS, cost=cost)
    router.on_round(1, 4, GAMMAS)
    A0 = expected_lengths(GAMMAS, j, g)[0]
    assert np.allclose(learner.calls[0][2], A0 / [0.31, 0.53, 0.4])
    bandit = Recorder(3, full_information=False)
    FeedbackRouter(bandit, ARMS, cost=cost).on_round(1, 2)
    assert bandit.calls[0][1] == pytest.approx(2 / 0.53)


def test_each_position_is_costed_in_the_round_that_committed_it():
    cost = CostModel(n_drafters=2, max_gamma=3)
    for w, t in enumerate([1.0, 1.1, 1.2, 1.3]):
        cost.observe_verify(w, t)
    cost.observe_draft(1, 0.1)
    j, g = arm_arrays(ARMS)
    first, second = BatchRound(2, 4, 3, ((0, 3),)), BatchRound(2, 1, 0)
    learner = Recorder(3, full_information=True)
    router = FeedbackRouter(learner, ARMS, cost=cost)
    router.on_round(0, 2, GAMMAS[:, :2], first)             # positions 0, 1
    router.on_round(0, 2, GAMMAS[:, 2:], second)            # positions 2, 3: position 0 is complete
    lengths = expected_lengths(GAMMAS, j, g)
    assert len(learner.calls) == 2                          # positions 0 and 1, both of the first round
    np.testing.assert_allclose(learner.calls[0][2], (lengths[0] + 4) / (2 * cost.seconds(j, g, first)))
    router.on_round(0, 1, np.ones((2, 1)), second)
    np.testing.assert_allclose(learner.calls[2][2], (expected_lengths(np.c_[GAMMAS, [1, 1]], j, g)[2] + 1)
                               / (2 * cost.seconds(j, g, second)))
    bandit = Recorder(3, full_information=False)
    FeedbackRouter(bandit, ARMS, cost=cost).on_round(2, 3, batch=first)
    assert bandit.calls[0][1] == pytest.approx((3 + 4) / (2 * cost.seconds(j, g, first)[2]))


def test_hedgespec_stops_speculating_when_drafts_are_never_accepted():
    """Batch of 4, the others autoregressive, drafts never accepted: the autoregressive arm wins;
    drafts always accepted: the longest draft wins."""
    arms = [(0, 4), (0, 1), (0, 0)]
    cost = CostModel(n_drafters=1, max_gamma=4)
    for w in range(5):
        cost.observe_verify(w, 1.0 + 0.1 * w)
    cost.observe_draft(0, 0.05)
    others = BatchRound(rows=4, other_tokens=3, other_width=0)
    for accepted, best in ((0.0, 2), (1.0, 0)):
        learner = HedgeSpec(3, reward_range=(0, 5))
        router = FeedbackRouter(learner, arms, cost=cost)
        for _ in range(40):
            router.on_round(learner.select(), 1, np.full((1, 1), accepted), others)
        assert learner.select() == best


# --------------------------------------------------------------------- replay
CORRECT = np.array([[1, 1, 0, 1, 1, 1, 0, 0, 1, 1],
                    [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]])
REPLAY_ARMS = [(0, 1), (0, 2), (0, 4), (1, 1), (1, 3)]
# hand-counted rounds, e.g. (0,4): s=0 accept 2 commit 3 | s=3 accept 3 commit 4 | s=7 commit 1 | s=8 commit 2 (end)
HAND_ROUNDS = [6, 5, 4, 5, 5]


def test_fixed_arm_rounds_by_hand():
    assert [rounds_fixed(CORRECT, a) for a in REPLAY_ARMS] == HAND_ROUNDS
    rounds = simulate(lambda: Fixed(5, reward_range=(1, 5), arm=2), CORRECT, REPLAY_ARMS)
    assert rounds == [Round(2, 0, 3), Round(2, 3, 4), Round(2, 7, 1), Round(2, 8, 2)]
    for i in range(5):
        assert len(simulate(lambda: Fixed(5, reward_range=(1, 5), arm=i), CORRECT, REPLAY_ARMS)) == HAND_ROUNDS[i]
    assert rounds_fixed(np.ones((1, 5)), (0, 4)) == 1      # commit capped at the tokens left


def test_best_and_worst_fixed_arm_and_stopping_time_regret():
    best, best_rounds = best_fixed_arm(CORRECT, REPLAY_ARMS)
    assert (best, best_rounds) == (2, 4)
    assert worst_arm(CORRECT, REPLAY_ARMS) == (0, 6)
    best_policy = simulate(lambda: Fixed(5, reward_range=(1, 5), arm=best), CORRECT, REPLAY_ARMS)
    assert stopping_time_regret(best_policy, best_rounds) == 0
    assert stopping_time_regret(6, best_rounds) == 2


def test_per_token_regret():
    table = arm_length_table(CORRECT, REPLAY_ARMS)
    star = best_arm_in_hindsight(CORRECT, REPLAY_ARMS)
    assert star == int(np.argmax(table.sum(0)))
    fixed = simulate(lambda: Fixed(5, reward_range=(1, 5), arm=star), CORRECT, REPLAY_ARMS)
    assert per_token_regret(CORRECT, REPLAY_ARMS, fixed) == 0.0
    other = simulate(lambda: Fixed(5, reward_range=(1, 5), arm=0), CORRECT, REPLAY_ARMS)
    assert per_token_regret(CORRECT, REPLAY_ARMS, other) == pytest.approx(table[:, star].sum() - table[:, 0].sum())


def test_simulate_feeds_learners_through_the_router():
    # full feedback: one update per position whose A_s is complete, the tail (G - 1 = 3 positions) dropped
    rec = Recorder(5, full_information=True)
    simulate(rec, CORRECT, REPLAY_ARMS, feedback="full")
    table = arm_length_table(CORRECT, REPLAY_ARMS)
    assert len(rec.calls) == CORRECT.shape[1] - 3
    assert np.allclose([c[2] for c in rec.calls], table[:len(rec.calls)])
    # bandit feedback: one update per round with the committed length
    rec = Recorder(5, full_information=False)
    rounds = simulate(rec, CORRECT, REPLAY_ARMS)
    assert [c[1] for c in rec.calls] == [r.committed for r in rounds]
    for name in ("ucbspec", "exp3spec", "hedgespec", "round_robin", "epsilon_greedy"):
        rounds = simulate(lambda: make_learner(name, 5, reward_range=(1, 5), seed=0), CORRECT, REPLAY_ARMS)
        assert sum(r.committed for r in rounds) == CORRECT.shape[1]


def test_replay_learns_the_best_arm_on_a_long_query():
    rng = np.random.default_rng(0)
    correct = np.stack([rng.random(3000) < 0.3, rng.random(3000) < 0.9]).astype(float)
    arms = [(0, 1), (0, 4), (1, 1), (1, 4)]
    best, best_rounds = best_fixed_arm(correct, arms)
    assert best == 3
    hedge = simulate(lambda: HedgeSpec(4, reward_range=(1, 5)), correct, arms)
    ucb = simulate(lambda: UCBSpec(4, reward_range=(1, 5)), correct, arms)
    worst_rounds = worst_arm(correct, arms)[1]
    for rounds in (hedge, ucb):
        assert 0 <= stopping_time_regret(rounds, best_rounds) < 0.1 * (worst_rounds - best_rounds)


def test_sampling_records():
    gam = np.array([[0.9, 0.8, 0.1, 0.7, 0.9, 0.95],
                    [0.2, 0.9, 0.9, 0.9, 0.9, 0.1]])
    arms = [(0, 2), (1, 2)]
    with pytest.raises(ValueError, match="greedy"):
        rounds_fixed(gam, arms[0])
    rounds = simulate(lambda: HedgeSpec(2, reward_range=(1, 3)), gam, arms, seed=1)
    assert sum(r.committed for r in rounds) == 6
    fixed = [Round(0, 0, 6)]                              # charge every position to arm 0
    A = arm_length_table(gam, arms)
    assert np.allclose(A[0], [1 + 0.9 + 0.72, 1 + 0.2 + 0.18])
    assert per_token_regret(gam, arms, fixed) == pytest.approx(max(A.sum(0)) - A[:, 0].sum())


def test_fixed_arm_monte_carlo_without_a_learner_equals_the_learner_replay():
    """A fixed arm on a sampling record: the learner-free count draws the same numbers as
    simulate() with a fixed learner (what FullInfo.fixed_rounds used to run)."""
    rng = np.random.default_rng(11)
    for trial in range(20):
        n_d, n = int(rng.integers(1, 4)), int(rng.integers(1, 60))
        gam = rng.random((n_d, n))
        gam[rng.random((n_d, n)) < 0.2] = 1.0                 # some certain acceptances, as real records have
        j, g, seed = int(rng.integers(n_d)), int(rng.integers(1, 7)), int(rng.integers(10 ** 6))
        fixed = make_learner("fixed", 1, reward_range=(1.0, g + 1.0))
        want = len(simulate(fixed, gam, [(j, g)], feedback="bandit", seed=seed))
        assert sampled_rounds_fixed(gam, (j, g), seed=seed) == want
    assert sampled_rounds_fixed(CORRECT, (0, 4), seed=3) == rounds_fixed(CORRECT, (0, 4))   # 0/1: exact


def test_acceptance_feedback_is_immediate_for_one_gamma():
    """HedgeSpec's default loss on arms of one gamma: 1 - gamma per committed position, no queue."""
    arms = [(0, 3), (1, 3)]
    learner = HedgeSpec(2, reward_range=(1, 4), discount=0.5)
    router = FeedbackRouter(learner, arms)
    assert router.acceptance
    assert router.on_round(0, 2, GAMMAS[:, :2]) == 2 and router.pending == 0
    hand = HedgeSpec(2, reward_range=(1, 4), discount=0.5)
    for s in range(2):
        p = hand.weights()
        loss = 1 - GAMMAS[:, s]
        hand.regret = 0.5 * hand.regret + (p.dot(loss) - loss)
        hand._w = None
    assert np.allclose(learner.regret, hand.regret)
    assert router.flush() == 0


def test_acceptance_loss_needs_one_gamma_and_no_cost():
    with pytest.raises(ValueError, match="one speculation length"):
        FeedbackRouter(HedgeSpec(3, reward_range=(1, 4), loss="acceptance"), ARMS)
    with pytest.raises(ValueError, match="one speculation length"):
        FeedbackRouter(HedgeSpec(2, reward_range=(0, 4), loss="acceptance"), [(0, 3), (1, 3)], CostModel(2, 3))
    auto = FeedbackRouter(HedgeSpec(3, reward_range=(1, 4)), ARMS)    # gammas differ: expected lengths, delayed
    assert not auto.acceptance
    auto.on_round(0, 2, GAMMAS[:, :2])
    assert auto.pending == 2
    assert not FeedbackRouter(HedgeSpec(2, reward_range=(1, 4), loss="length"), [(0, 3), (1, 3)]).acceptance
    with pytest.raises(ValueError, match="loss must be one of"):
        HedgeSpec(2, reward_range=(1, 4), loss="rounds")


class Counting(Recorder):
    """A Recorder that notes, at each select, how many updates it has had."""

    def __init__(self, n_arms, full_information):
        super().__init__(n_arms, full_information)
        self.heard_at_select = []

    def select(self):
        self.heard_at_select.append(len(self.calls))
        return 0


@pytest.mark.parametrize("every", [1, 2, 3, 20])
def test_score_every_delivers_full_feedback_in_groups_of_rounds(every):
    """simulate(score_every=k) replays deferred scoring: with one gamma each committed position is
    one update, and the learner hears of rounds 0..k-1 only before round k, and so on."""
    arms = [(0, 1), (1, 1)]
    rec = Counting(2, full_information=True)
    rounds = simulate(rec, CORRECT, arms, feedback="full", score_every=every)
    starts = [r.start for r in rounds]
    assert rec.heard_at_select == [starts[every * (t // every)] for t in range(len(rounds))]
    assert len(rec.calls) == CORRECT.shape[1]                   # every position arrives in the end
    if every == 1:
        assert rec.heard_at_select == starts                    # no delay: each round heard before the next
    # the same choices and updates as without delay, only later (Recorder ignores what it hears)
    plain = Counting(2, full_information=True)
    assert simulate(plain, CORRECT, arms, feedback="full") == rounds
    assert [c[0] for c in plain.calls] == [c[0] for c in rec.calls]


def test_score_every_never_defers_bandit_feedback():
    rec = Counting(5, full_information=False)
    rounds = simulate(rec, CORRECT, REPLAY_ARMS, feedback="bandit", score_every=3)
    assert rec.heard_at_select == list(range(len(rounds)))


def test_score_every_never_defers_sampling_records():
    """Live, only greedy scoring is deferred; a sampling record's rounds are heard at once."""
    probs = np.array([[0.9, 0.8, 0.1, 0.7, 0.9, 0.95], [0.2, 0.3, 0.9, 0.4, 0.5, 0.6]])
    rec = Counting(2, full_information=True)
    rounds = simulate(rec, probs, [(0, 1), (1, 1)], feedback="full", seed=4, score_every=3)
    assert len(rounds) > 3
    assert rec.heard_at_select == [r.start for r in rounds]       # every round heard before the next


def test_deferred_feedback_changes_what_hedgespec_plays():
    """A learner that hears late keeps playing its first arm longer: HedgeSpec with score_every=4
    takes more rounds than with immediate feedback when the first arm is the wrong one."""
    correct = np.stack([np.zeros(40), np.ones(40)])            # drafter 1 is always right
    arms = [(0, 4), (1, 4)]
    now = simulate(HedgeSpec(2, reward_range=(1, 5)), correct, arms)
    late = simulate(HedgeSpec(2, reward_range=(1, 5)), correct, arms, score_every=4)
    assert [r.arm for r in now[:2]] == [0, 1]                   # leaves arm 0 after one round
    assert [r.arm for r in late[:5]] == [0, 0, 0, 0, 1]         # four rounds of arm 0 before it hears
    assert len(late) == len(now) + 3


@pytest.mark.parametrize("bad", [0, -1, 1.5, None])
def test_score_every_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="score_every must be an integer >= 1"):
        simulate(HedgeSpec(2, reward_range=(1, 5)), CORRECT, [(0, 1), (1, 1)], score_every=bad)
