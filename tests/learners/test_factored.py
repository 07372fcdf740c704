"""FactoredHedge: HedgeSpec picks the drafter from acceptance, the expected batch throughput picks gamma."""
import numpy as np
import pytest

from drafters import ModelDrafter, NgramDrafter
from specsel import Arm, SpecEngine
from specsel.core.records import RoundInfo, RoundRecord
from specsel.learners.factored import FactoredHedge
from specsel.testing import random_prompts

from conftest import drafter_models, hf_greedy, target_model

POOL = ["noisy", "ngram"]


def feed(policy, row_acceptance, rows=(0,), rounds=1, verify=(1.0, 1.3, 1.4, 1.5, 1.6), play=None):
    """Rounds of the policy's own choices (or of arm `play` in every row), each drafter's
    acceptance given (drafter scores, not outcomes)."""
    for w, t in enumerate(verify):
        policy.cost.observe_verify(w, t)
    for _ in range(rounds):
        arms = policy.select(list(rows))
        arms = arms if play is None else [play] * len(rows)
        seconds = verify[max(a.gamma for a in arms)]              # the verify time the cost model was given
        recs = [RoundRecord(row=r, round=0, drafter=a.drafter, gamma=a.gamma, drafted=a.gamma,
                            accepted=min(a.gamma, 1), committed=1 + min(a.gamma, 1), draft_s=0.0, verify_s=seconds,
                            batch=len(rows), position_acceptance={d: [row_acceptance[d]] * (1 + min(a.gamma, 1))
                                                                  for d in POOL})
                for r, a in zip(rows, arms)]
        policy.timed(RoundInfo(list(rows), arms, recs))
        policy.observe(RoundInfo(list(rows), arms, recs))


def test_autoregressive_before_any_feedback_and_the_longest_draft_without_that_arm():
    policy = FactoredHedge(POOL, [1, 2, 4])
    policy.start(2)
    assert policy.select([0, 1]) == [Arm.autoregressive(), Arm.autoregressive()]
    without_ar = FactoredHedge(POOL, [1, 2, 4], autoregressive=False)
    without_ar.start(2)
    assert without_ar.select([0, 1]) == [Arm("noisy", 4), Arm("noisy", 4)]


def test_the_cost_model_learns_a_round_s_timings_before_its_scores():
    """LearnerPolicy.timed (every round) feeds the verify time; observe (a window later) does not."""
    policy = FactoredHedge(POOL, [1, 2, 4])
    policy.start(1)
    arms = policy.select([0])
    rec = RoundRecord(row=0, round=0, drafter=None, gamma=0, drafted=0, accepted=0, committed=1, draft_s=0.0,
                      verify_s=0.25, batch=1, position_acceptance={d: [1.0] for d in POOL})
    policy.timed(RoundInfo([0], arms, [rec]))
    assert policy.cost.t_verify(0) == 0.25 and policy.cost.verify_n[0] == 1
    policy.observe(RoundInfo([0], arms, [rec]))
    assert policy.cost.verify_n[0] == 1


def test_the_length_follows_the_drafters_acceptance():
    good = FactoredHedge(POOL, [1, 2, 4])
    good.start(1)
    feed(good, {"noisy": 1.0, "ngram": 0.2}, rounds=3)
    assert good.select([0]) == [Arm("noisy", 4)]                  # always accepted: the longest draft
    poor = FactoredHedge(POOL, [1, 2, 4])
    poor.start(1)
    feed(poor, {"noisy": 0.1, "ngram": 0.05}, rounds=3)
    assert poor.select([0]) == [Arm.autoregressive()]            # nothing accepted: speculation does not pay
    mid = FactoredHedge(POOL, [1, 2, 4])
    mid.start(1)
    feed(mid, {"noisy": 0.1, "ngram": 0.7}, rounds=3)
    assert mid.select([0])[0].drafter == "ngram"                  # the drafter HedgeSpec learned
    without_ar = FactoredHedge(POOL, [1, 2, 4], autoregressive=False)
    without_ar.start(1)
    feed(without_ar, {"noisy": 0.1, "ngram": 0.05}, rounds=3)
    assert without_ar.select([0]) == [Arm("noisy", 1)]


def test_bad_arguments_are_one_line_errors():
    for kw, match in (({"memory": 0}, "memory"), ({"shared": True}, "per query")):
        with pytest.raises(ValueError, match=match):
            FactoredHedge(POOL, [1, 2], **kw)
    with pytest.raises(ValueError, match="gammas"):
        FactoredHedge(POOL, [])


def test_decodes_losslessly_and_learns_online():
    models = drafter_models("llama")
    engine = SpecEngine(target_model("llama"), {"noisy": ModelDrafter(models["noisy"]), "ngram": NgramDrafter()},
                        eos_token_id=1)
    prompts = [p + p[:5] for p in random_prompts(3, min_len=3, max_len=12, seed=21)]
    policy = FactoredHedge(POOL, [1, 3])
    result = engine.generate(prompts, policy, max_new_tokens=32, feedback="full")
    assert result.tokens == [hf_greedy(target_model("llama"), p, 32) for p in prompts]
    assert policy.cost.verify_n.sum() > 0 and all(r.learner.t > 0 for r in policy.routers.values())
    assert {r.gamma for r in result.records} <= {0, 1, 3}
    assert np.all([w.max() > 0 for w in policy.weight.values()])


def record(drafter, drafted, accepted, committed, scored):
    return RoundRecord(row=0, round=0, drafter=drafter, gamma=max(drafted, 1), drafted=drafted, accepted=accepted,
                       committed=committed, draft_s=0.0, verify_s=1.0, batch=1, position_acceptance=scored)


def test_the_played_drafter_scores_itself_from_its_draft():
    policy = FactoredHedge(POOL, [1, 4])
    nan = float("nan")
    rejected = policy.acceptance_of(record("noisy", 4, 2, 3, {"ngram": [0.0, 1.0, 1.0]}))
    assert rejected == {"ngram": [0.0, 1.0, 1.0], "noisy": [1.0, 1.0, 0.0]}
    full = policy.acceptance_of(record("noisy", 2, 2, 3, {}))["noisy"]       # bonus position: unknown
    assert full[:2] == [1.0, 1.0] and full[2] != full[2]
    cut = policy.acceptance_of(record("noisy", 4, 3, 2, {}))["noisy"]        # cut by EOS or the budget
    assert cut == [1.0, 1.0]
    scored = {"noisy": [0.5, nan]}
    assert policy.acceptance_of(record("noisy", 1, 1, 2, scored)) is scored     # scored: as scored
    assert FactoredHedge(POOL, [1, 4], self_scoring=False).acceptance_of(record("noisy", 4, 2, 3, {})) == {}


def test_between_refreshes_a_row_asks_for_its_runner_up_only():
    policy = FactoredHedge(["a", "b", "c"], [1, 4], refresh_every=4, idle_backoff=2)
    policy.start(1)
    policy.select([0])
    assert policy.scored_drafters() == ["a", "b", "c"]                           # first window: all
    policy.routers[0].learner.weights = lambda: np.array([0.6, 0.1, 0.3])
    policy.played[0], policy.chosen[0] = 0, Arm("a", 4)
    assert [policy.scored_drafters() for _ in range(3)] == [["c"]] * 3
    assert policy.scored_drafters() == ["a", "b", "c"]                           # refresh
    policy.chosen[0] = Arm.autoregressive()                                      # idle: rarer refreshes, no scores
    assert [policy.scored_drafters() for _ in range(7)] == [[]] * 7
    assert policy.scored_drafters() == ["a", "b", "c"]
    with pytest.raises(ValueError, match="idle_backoff"):
        FactoredHedge(POOL, [1], idle_backoff=0)


def test_a_row_joining_a_plain_batch_is_scored_soon_not_at_the_next_idle_refresh():
    """Continuous batching: a request joining a long-running batch that decodes plainly gets a
    refresh window refresh_every // 4 windows after the last, not refresh_every * idle_backoff."""
    policy = FactoredHedge(["a", "b", "c"], [1, 4], refresh_every=8, idle_backoff=4)
    policy.start(0)
    policy.select([0])
    assert policy.scored_drafters() == ["a", "b", "c"]                           # first window: all
    policy.chosen[0] = Arm.autoregressive()
    assert [policy.scored_drafters() for _ in range(5)] == [[]] * 5              # idle: every 32nd window
    policy.select([0, 1])                                                        # row 1 joins
    policy.chosen = {0: Arm.autoregressive(), 1: Arm.autoregressive()}
    assert policy.scored_drafters() == ["a", "b", "c"]                           # 6 windows since: >= 8 // 4
    assert [policy.scored_drafters() for _ in range(10)] == [[]] * 10           # both scored once: idle again
    policy.forget(1)
    policy.select([0, 2])                                                        # row 2 joins one window later
    policy.chosen[2] = Arm.autoregressive()
    asked = [policy.scored_drafters() for _ in range(3)]
    assert asked == [["a", "b", "c"], [], []]


def test_a_batch_that_would_gain_nothing_decodes_autoregressively():
    policy = FactoredHedge(POOL, [1, 2, 4])
    policy.start(4)
    rows = [0, 1, 2, 3]
    feed(policy, {"noisy": 0.45, "ngram": 0.1}, rows=rows, rounds=1, verify=(1.0, 1.6, 1.8, 1.9, 2.0),
         play=Arm("noisy", 4))
    # every row played noisy@4: inside that window each row alone would draft 4 (it pays nothing more) ...
    assert all(policy._length(r, 0)[0] == Arm("noisy", 4) for r in rows)
    # ... but 4 x 1.78 expected tokens for 1.9 forwards is less than 4 tokens for one: the batch goes autoregressive
    assert policy.select(rows) == [Arm.autoregressive()] * 4
    cheap = FactoredHedge(POOL, [1, 2, 4])
    cheap.start(4)
    feed(cheap, {"noisy": 0.9, "ngram": 0.1}, rows=rows, rounds=3, verify=(1.0, 1.05, 1.1, 1.15, 1.2))
    assert all(not a.is_autoregressive for a in cheap.select(rows))


def test_a_new_query_starts_from_the_stream_s_acceptance():
    """eq. 22: once a query has finished, a new row without feedback takes the stream's acceptance:
    after a query where nothing was accepted, the next batch decodes autoregressively from its
    first round, and after one where everything was, it drafts the longest from its first round;
    without the prior (or before any query finished) it decodes autoregressively until its first
    scores come in."""
    runs = {}
    for prior in (True, False):
        for stream in ("poor", "good"):
            policy = FactoredHedge(POOL, [1, 2, 4], stream_prior=prior)
            assert policy._prior(0) is None
            policy.start(1)
            feed(policy, {"noisy": 0.05 if stream == "poor" else 1.0, "ngram": 0.0}, rounds=3)
            policy.finish(0)
            policy.start(4)
            runs[prior, stream] = (policy.select([0, 1, 2, 3]), policy._prior(0), policy._prior(1))
    assert runs[True, "poor"] == ([Arm.autoregressive()] * 4, pytest.approx(0.05), 0.0)
    assert runs[True, "good"] == ([Arm("noisy", 4)] * 4, pytest.approx(1.0), 0.0)
    assert runs[False, "poor"] == runs[False, "good"] == ([Arm.autoregressive()] * 4, None, None)


class SteadyClock(FactoredHedge):
    """FactoredHedge on a steady clock: each round's timings are set from its shape (rows, drafted
    tokens) before the policy learns from them, so its choices do not depend on this machine's
    timing noise and two decodes of one batch can be compared exactly."""

    def timed(self, info):
        width = max(r.drafted for r in info.records) + 1
        for r in info.records:
            r.verify_s = 0.01 * (1.0 + 0.02 * width * len(info.records))
            r.draft_s = 0.0005 * r.drafted
        super().timed(info)


def test_a_resumed_stream_plays_as_if_never_stopped():
    """A fresh policy restored from the finished batches (ArmPolicy.restore: the step-cost model and
    the stream prior) decodes the next batch exactly as the policy that decoded them all. (The
    step-cost model learns from measured timings; SteadyClock fixes them, else a timing blip may flip
    a choice.)"""
    models = drafter_models("llama")
    engine = SpecEngine(target_model("llama"), {"noisy": ModelDrafter(models["noisy"]), "ngram": NgramDrafter()},
                        eos_token_id=1)
    prompts = [p + p[:5] for p in random_prompts(6, min_len=3, max_len=12, seed=22)]
    batches = [prompts[:3], prompts[3:]]
    whole = SteadyClock(POOL, [1, 3])
    results = []
    for b, batch in enumerate(batches):
        whole.seek(3 * b)
        results.append(engine.generate(batch, whole, max_new_tokens=24, feedback="full"))
    assert whole._prior(0) is not None
    batch0 = [[x for x in results[0].records if x.row == r] for r in range(3)]
    resumed = SteadyClock(POOL, [1, 3])
    resumed.restore([batch0])
    resumed.seek(3)
    again = engine.generate(batches[1], resumed, max_new_tokens=24, feedback="full")
    assert again.tokens == results[1].tokens
    assert [(r.row, r.drafter, r.gamma, r.accepted) for r in again.records] == \
        [(r.row, r.drafter, r.gamma, r.accepted) for r in results[1].records]
    assert len({(r.drafter, r.gamma) for r in again.records}) > 1      # it chose, not one arm throughout
    cold = SteadyClock(POOL, [1, 3])                                    # not warmed: plays otherwise
    cold.seek(3)
    assert [(r.drafter, r.gamma) for r in engine.generate(batches[1], cold, max_new_tokens=24,
                                                          feedback="full").records] != \
        [(r.drafter, r.gamma) for r in results[1].records]


def test_the_batch_caps_a_length_every_row_keeps_only_because_the_others_do():
    """eq. 20: both rows drafted 4, so to each row alone its own 4 is free; with all rows at 2
    the batch makes more tokens per second (2 x 1.75 / 1.1 > 2 x 1.94 / 1.8), and it caps them."""
    policy = FactoredHedge(POOL, [1, 2, 4])
    policy.start(2)
    feed(policy, {"noisy": 0.5, "ngram": 0.0}, rows=[0, 1], rounds=1, verify=(1.0, 1.05, 1.1, 1.6, 1.8),
         play=Arm("noisy", 4))
    assert [policy._length(r, 0)[0] for r in (0, 1)] == [Arm("noisy", 4)] * 2   # each row's best response
    assert policy.select([0, 1]) == [Arm("noisy", 2)] * 2
    all_or_nothing = FactoredHedge(POOL, [1, 2, 4], batch_caps=False)    # only the autoregressive cap
    all_or_nothing.start(2)
    feed(all_or_nothing, {"noisy": 0.5, "ngram": 0.0}, rows=[0, 1], rounds=1, verify=(1.0, 1.05, 1.1, 1.6, 1.8),
         play=Arm("noisy", 4))
    assert all_or_nothing.select([0, 1]) == [Arm("noisy", 4)] * 2          # 2 x 1.94 / 1.8 > 2 x 1 / 1.0
    alone = FactoredHedge(POOL, [1, 2, 4])                    # a single row is never capped: it costs itself
    alone.start(1)
    feed(alone, {"noisy": 0.5, "ngram": 0.0}, rows=[0], rounds=1, verify=(1.0, 1.05, 1.1, 1.6, 1.8),
         play=Arm("noisy", 4))
    assert alone.select([0]) == [alone._length(0, 0)[0]]


def test_a_row_decoding_plainly_drifts_back_to_the_stream_s_acceptance():
    """eq. 23: positions where nothing was scored count as typical positions of the stream, so a
    row that stopped drafting after a bad patch tries again when the stream says drafting pays;
    with idle_prior=False its estimate stays where the bad patch left it."""
    def plain_rounds(policy, n):
        for _ in range(n):
            arms = policy.select([0])
            rec = RoundRecord(row=0, round=0, drafter=None, gamma=0, drafted=0, accepted=0, committed=1,
                              draft_s=0.0, verify_s=1.0, batch=1, position_acceptance={})
            policy.timed(RoundInfo([0], arms, [rec]))
            policy.observe(RoundInfo([0], arms, [rec]))
    chosen = {}
    for idle_prior in (True, False):
        policy = FactoredHedge(POOL, [1, 2, 4], idle_prior=idle_prior)
        policy.start(1)
        feed(policy, {"noisy": 0.9, "ngram": 0.9}, rounds=4)            # the stream: drafting pays
        policy.finish(0)
        policy.start(1)
        feed(policy, {"noisy": 0.0, "ngram": 0.0}, rounds=3)            # this query: a bad patch
        assert policy.select([0]) == [Arm.autoregressive()]
        plain_rounds(policy, 12)
        chosen[idle_prior] = policy.select([0])[0]
    assert not chosen[True].is_autoregressive
    assert chosen[False].is_autoregressive
