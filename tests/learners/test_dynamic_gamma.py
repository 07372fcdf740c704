"""dynamic_gamma: Hugging Face's draft-length heuristic per row, lossless in the engine."""
import pytest

from drafters import ModelDrafter, NgramDrafter
from specsel import Arm, SpecEngine
from specsel.core.records import RoundInfo, RoundRecord
from specsel.learners.dynamic_gamma import HF_START, DynamicGamma
from specsel.testing import random_prompts

from conftest import drafter_models, hf_greedy, target_model


def round_of(rows, drafted, accepted):
    recs = [RoundRecord(r, 0, "d", 4, n, a, a + 1, 0.0, 0.0, len(rows)) for r, n, a in zip(rows, drafted, accepted)]
    return RoundInfo(list(rows), [Arm("d", 4)] * len(rows), recs)


def test_grows_by_two_after_a_full_accept_and_shrinks_by_one_otherwise():
    policy = DynamicGamma("d", start=3)
    policy.start(3)
    policy.observe(round_of([0, 1, 2], drafted=[3, 3, 0], accepted=[3, 1, 0]))
    assert [a.gamma for a in policy.select([0, 1, 2])] == [5, 2, 3]     # row 2 drafted nothing: unchanged
    for _ in range(3):
        policy.observe(round_of([1], drafted=[2], accepted=[0]))
    assert policy.select([1]) == [Arm("d", 1)]                          # never below 1


def test_defaults_and_cap():
    assert DynamicGamma("d").start_gamma == HF_START == 20
    policy = DynamicGamma("d", start=3, max_gamma=4)
    policy.start(1)
    policy.observe(round_of([0], drafted=[3], accepted=[3]))
    assert policy.select([0]) == [Arm("d", 4)]
    for bad in ({"start": 0}, {"max_gamma": 0}, {"start": 2.5}):
        with pytest.raises(ValueError, match="dynamic_gamma"):
            DynamicGamma("d", **bad)


@pytest.mark.parametrize("drafter", ["noisy", "ngram"])
def test_lossless_in_the_engine_with_lengths_that_change(drafter):
    target = target_model("llama")
    pool = {"noisy": ModelDrafter(drafter_models("llama")["noisy"]), "ngram": NgramDrafter()}
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = [p + p[:4] for p in random_prompts(4, min_len=3, max_len=10, seed=8)]
    out = engine.generate(prompts, DynamicGamma(drafter, start=2), max_new_tokens=20)
    assert out.tokens == [hf_greedy(target, p, 20) for p in prompts]
    if drafter == "noisy":
        assert len({r.gamma for r in out.records}) > 1                 # the length did adapt


def test_an_unknown_drafter_is_refused_before_decoding():
    engine = SpecEngine(target_model("llama"), {"ngram": NgramDrafter()}, eos_token_id=1)
    with pytest.raises(ValueError, match="unknown drafter 'eagle'"):
        engine.generate([[3, 4, 5]], DynamicGamma("eagle"), max_new_tokens=4)
