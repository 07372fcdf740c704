"""The batch-aware cost of a row's arm (specsel.core.costs.BatchRound, docs/design.md eq. 18)."""
import numpy as np
import pytest

from specsel.core.costs import BatchRound, CostModel, RelativeCostModel
from specsel.core.records import RoundRecord


def model():
    """t_verify(w) = 1.0 + 0.1 w for w = 0..4; t_draft = 0.05 (drafter 0) and 0.2 (drafter 1) per token."""
    cost = CostModel(n_drafters=2, max_gamma=4)
    for w in range(5):
        cost.observe_verify(w, 1.0 + 0.1 * w)
    cost.observe_draft(0, 0.05)
    cost.observe_draft(1, 0.2)
    return cost


def record(row, drafter, drafted, committed):
    return RoundRecord(row=row, round=0, drafter=drafter, gamma=max(drafted, 1) if drafter else 0, drafted=drafted,
                       accepted=committed - 1, committed=committed, draft_s=0.0, verify_s=1.0, batch=3)


ARMS = (np.array([0, 0, 1, 0]), np.array([1, 4, 2, 0]))     # a@1, a@4, b@2, autoregressive


def test_alone_the_cost_is_verify_plus_drafting():
    alone = BatchRound(rows=1, other_tokens=0, other_width=0)
    np.testing.assert_allclose(model().seconds(*ARMS, alone), [1.15, 1.6, 1.6, 1.0])
    np.testing.assert_allclose(model().seconds(*ARMS, alone), model().seconds(*ARMS))
    np.testing.assert_allclose(model().throughput(np.array([2.0, 3, 2, 1]), *ARMS, alone),
                               model().throughput(np.array([2.0, 3, 2, 1]), *ARMS))


def test_a_row_pays_only_for_what_its_arm_adds_to_the_round():
    # the others: drafter 0 drafting 2 tokens (window 2), committing 5 tokens in all
    batch = BatchRound(rows=3, other_tokens=5, other_width=2, other_drafts=((0, 2),))
    shared_round = 1.2 + 2 * 0.05
    np.testing.assert_allclose(model().seconds(*ARMS, batch),
                               [shared_round,                          # a@1: inside the others' window and drafts
                                1.4 + 4 * 0.05,                        # a@4: widens to 4, drafts 2 more steps
                                shared_round + 2 * 0.2,                # b@2: a second drafter call
                                shared_round])                         # autoregressive: the round as it is
    lengths = np.array([2.0, 3.0, 2.5, 1.0])
    np.testing.assert_allclose(model().throughput(lengths, *ARMS, batch),
                               (lengths + 5) / (3 * model().seconds(*ARMS, batch)))


def test_when_nobody_else_speculates_a_row_pays_for_its_whole_draft():
    batch = BatchRound(rows=4, other_tokens=3, other_width=0)
    sec = model().seconds(*ARMS, batch)
    assert sec[3] == pytest.approx(1.0) and sec[1] == pytest.approx(1.6)
    # the batch gains A - 1 tokens for 0.6 s: a@4 is worth it only with a long expected length
    short, long_ = np.array([1.0, 2.0, 1.0, 1.0]), np.array([1.0, 4.0, 1.0, 1.0])
    assert model().throughput(short, *ARMS, batch).argmax() == 3
    assert model().throughput(long_, *ARMS, batch).argmax() == 1


def test_relative_costs_are_in_autoregressive_forwards():
    rel = RelativeCostModel(2, 4)
    for w in range(5):
        rel.observe_verify(w, 2.0 + 0.2 * w)
    batch = BatchRound(rows=2, other_tokens=1, other_width=0)
    np.testing.assert_allclose(rel.seconds(np.array([0, 0]), np.array([0, 4]), batch), [1.0, 1.4])


def test_the_round_of_a_row_is_read_from_its_records_or_their_dicts():
    recs = [record(0, "a", 2, 3), record(1, "b", 4, 1), record(2, None, 0, 1), record(3, "a", 3, 4)]
    ctx = BatchRound.of(0, recs, ["a", "b"])
    assert ctx == BatchRound(rows=4, other_tokens=6, other_width=4, other_drafts=((0, 3), (1, 4)))
    from dataclasses import asdict
    assert BatchRound.of(0, [asdict(r) for r in recs], ["a", "b"]) == ctx
    assert BatchRound.of(2, recs, ["a", "b"]).other_tokens == 8


def test_drafters_of_one_call_are_paid_once_per_round():
    """Drafters 1 and 2 draft in one call (a family: the experts of one head). A row joining the
    others' call pays only the steps its draft adds; a row alone in a call pays all of it."""
    cost = CostModel(n_drafters=3, max_gamma=4, calls=[0, 1, 1])
    for w in range(5):
        cost.observe_verify(w, 1.0 + 0.1 * w)
    cost.observe_draft(0, 0.05)
    cost.observe_draft(2, 0.2)              # an observation of the call, through either member
    assert cost.t_draft(1) == cost.t_draft(2) == pytest.approx(0.2)
    batch = BatchRound(rows=3, other_tokens=5, other_width=2, other_drafts=((1, 2),))
    base = 1.2 + 2 * 0.2                    # the others' round: window 2, the family's call drafting 2 steps
    np.testing.assert_allclose(cost.seconds(np.array([2, 2, 0]), np.array([2, 4, 2]), batch),
                               [base,                          # the other expert at 2: no extra step
                                1.4 + 4 * 0.2,                 # at 4: the call drafts 2 steps more, the window widens
                                base + 2 * 0.05])              # drafter 0: a call of its own
    separate = CostModel(n_drafters=3, max_gamma=4)             # no family: every drafter its own call
    for w in range(5):
        separate.observe_verify(w, 1.0 + 0.1 * w)
    separate.observe_draft(1, 0.2)
    separate.observe_draft(2, 0.2)
    assert separate.seconds(np.array([2]), np.array([2]), batch)[0] == pytest.approx(base + 2 * 0.2)
    with pytest.raises(ValueError, match="calls"):
        CostModel(n_drafters=3, max_gamma=4, calls=[0, 1])


def test_a_round_feeds_one_observation_per_call():
    """The rows of one call share its seconds; the call drafted its longest row's steps."""
    cost = CostModel(n_drafters=3, max_gamma=4, calls=[0, 1, 1])
    recs = [record(0, "a", 2, 3), record(1, "b", 4, 1), record(2, "c", 2, 1)]
    for r, s in zip(recs, (0.1, 0.8, 0.8)):
        r.draft_s = s
    cost.observe_round(recs, ["a", "b", "c"])
    assert cost.draft_n.tolist() == [1, 1]
    assert cost.t_draft(0) == pytest.approx(0.05) and cost.t_draft(2) == pytest.approx(0.2)   # 0.8 s / 4 steps


def test_draft_calls_name_a_familys_first_member():
    from specsel.core.drafting import Drafter, DrafterFamily, draft_calls
    family = DrafterFamily()
    pool = {n: Drafter() for n in ("ngram", "eagle", "lora_math")}
    pool["eagle"].family = pool["lora_math"].family = family
    assert draft_calls(pool) == {"ngram": "ngram", "eagle": "eagle", "lora_math": "eagle"}
    from specsel import Arm
    from specsel.learners.policy import LearnerPolicy
    policy = LearnerPolicy("hedgespec", [Arm(d, 2) for d in pool], list(pool), objective="throughput",
                           draft_calls=draft_calls(pool))
    assert policy.cost.calls.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="draft_calls"):
        LearnerPolicy("hedgespec", [Arm("ngram", 2)], ["ngram"], objective="throughput", draft_calls={})


def test_verify_times_are_kept_per_batch_size():
    """Under continuous batching the batch size changes: a forward over 8 requests costs more than
    over 1, and an arm is priced at the rows running. Widths not measured at a batch size follow the
    all-forwards curve, scaled to the widths that were."""
    from specsel.core.costs import CostModel
    cost = CostModel(1, 4)
    for w, t in enumerate([1.0, 1.2, 1.4, 1.6, 1.8]):
        cost.observe_verify(w, t, rows=1)
    cost.observe_verify(0, 3.0, rows=8)
    cost.observe_verify(4, 5.4, rows=8)
    assert cost.t_verify(0, rows=1) == pytest.approx(1.0) and cost.t_verify(4, rows=1) == pytest.approx(1.8)
    assert cost.t_verify(0, rows=8) == pytest.approx(3.0) and cost.t_verify(4, rows=8) == pytest.approx(5.4)
    # width 2 was never measured at 8 rows: the all-forwards curve (1.4 at width 2 from rows 1, widths 0 and 4
    # averaged with the 8-row forwards: 2.0 and 3.6) scaled by the 8-row level
    curve = cost.t_verify()
    scale = ((3.0 / curve[0]) + (5.4 / curve[4])) / 2
    assert cost.t_verify(2, rows=8) == pytest.approx(curve[2] * scale)
    assert cost.t_verify(2, rows=6) == cost.t_verify(2, rows=8)          # the nearest batch size measured
    assert cost.t_verify(2) == pytest.approx(1.4)                          # no batch size: every forward
