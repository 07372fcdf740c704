"""The shipped default pool on the embedded target: it loads and every member is lossless."""
import pytest

from drafters.pool import DEFAULT_NAMES, default_pool
from specsel import Arm, SpecEngine
from specsel.data import encode_prompts, load_domain

pytestmark = pytest.mark.slow


def test_default_pool_loads_and_every_member_is_lossless():
    from specsel.modeling.target import load_target
    target, tokenizer = load_target("smollm2-135m-instruct")
    pool = default_pool(target)
    assert list(pool) == list(DEFAULT_NAMES)
    heads = {id(d.head) for name, d in pool.items() if name != "ngram"}
    assert len(heads) == 1                                  # one EAGLE head in memory for all experts
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    prompt = encode_prompts(tokenizer, load_domain("humaneval", limit=1))
    reference = engine.generate(prompt, Arm.autoregressive(), max_new_tokens=40).tokens
    for name in pool:
        for feedback in ("bandit", "full"):
            result = engine.generate(prompt, Arm(name, 4), max_new_tokens=40, feedback=feedback)
            assert result.tokens == reference, (name, feedback)
            if name != "ngram":
                assert sum(r.accepted for r in result.records) > 0, name   # trained drafters get accepted


def test_optional_experts_join_the_family_only_when_named_and_stay_lossless():
    from drafters.pool import OPTIONAL_EXPERTS, pool_names
    from specsel.modeling.target import load_target
    assert not set(OPTIONAL_EXPERTS) & set(pool_names())            # the default pool stays as it was
    assert set(OPTIONAL_EXPERTS) <= set(pool_names(include_optional=True))
    target, tokenizer = load_target("smollm2-135m-instruct")
    pool = default_pool(target, ["ngram", "eagle", *OPTIONAL_EXPERTS])
    assert list(pool) == ["ngram", "eagle", *OPTIONAL_EXPERTS]
    assert len({id(d.family) for name, d in pool.items() if name != "ngram"}) == 1
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    prompt = encode_prompts(tokenizer, load_domain("humaneval", limit=1))
    reference = engine.generate(prompt, Arm.autoregressive(), max_new_tokens=24).tokens
    for name in OPTIONAL_EXPERTS:
        assert engine.generate(prompt, Arm(name, 4), max_new_tokens=24, feedback="full").tokens == reference, name
