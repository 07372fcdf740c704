"""LoRA domain experts: one base in memory, adapters switched per arm, lossless in the engine."""
import copy

import pytest
import torch

from drafters import DrafterError
from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from drafters.lora import lora_expert, lora_experts
from drafters.training.lora import new_lora
from specsel import Arm, SpecEngine
from specsel.testing import random_prompts, tiny_model

from conftest import hf_greedy


def save_random_adapter(base, path, seed):
    """A LoRA adapter with non-zero B (a fresh one is a no-op), saved the PEFT way."""
    peft_model = new_lora(copy.deepcopy(base), rank=4, seed=seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(seed))
    peft_model.save_pretrained(path)


def experts(tmp_path, base, target, **kw):
    tmp_path.mkdir(exist_ok=True)
    for i, domain in enumerate(("math", "code")):
        if not (tmp_path / domain).exists():
            save_random_adapter(base, tmp_path / domain, seed=10 + i)
    return lora_experts(target, base, {"lora_math": tmp_path / "math", "lora_code": tmp_path / "code"},
                        base_name="base", **kw)


def test_model_experts_share_one_base_and_stay_lossless(tmp_path):
    target = tiny_model("llama", seed=0, num_layers=4)
    base = tiny_model("llama", seed=3)
    reference = copy.deepcopy(base)
    pool = experts(tmp_path, base, target)
    assert list(pool) == ["base", "lora_math", "lora_code"]
    assert len({id(d.model) for d in pool.values()}) == 1          # one base module in memory

    x = torch.randint(0, 128, (1, 6))
    def run(drafter):
        drafter.activate()
        return drafter.model(x).logits
    torch.testing.assert_close(run(pool["base"]), reference(x).logits)   # the base: adapters disabled
    math_out = run(pool["lora_math"])
    assert not torch.allclose(math_out, reference(x).logits)
    assert not torch.allclose(math_out, run(pool["lora_code"]))
    # switching back and forth (activate only touches the layers when the choice changes)
    torch.testing.assert_close(run(pool["base"]), reference(x).logits)
    torch.testing.assert_close(run(pool["lora_math"]), math_out)
    assert not any(p.requires_grad for n, p in base.named_parameters() if "lora_" in n)   # still inference
    check_lossless(target, pool)


def check_lossless(target, pool):
    engine = SpecEngine(target, pool, eos_token_id=1)
    prompts = random_prompts(3, min_len=2, max_len=9, seed=2)
    expected = [hf_greedy(target, p, 16) for p in prompts]
    arms = [Arm("lora_math", 3), Arm("lora_code", 2), Arm("base", 4)]
    for feedback in ("bandit", "full"):
        result = engine.generate(prompts, arms, max_new_tokens=16, feedback=feedback)
        assert result.tokens == expected


def test_a_heads_experts_run_each_row_with_its_own_adapter_in_one_forward(tmp_path):
    """The experts of one EAGLE head are one family: a forward over slots of different experts
    gives each slot what PEFT's own single-adapter forward gives, the output stays the
    target's, and rows playing three experts draft in one head forward per step."""
    target = tiny_model("llama", seed=0, num_layers=4)
    base = new_eagle_head(target, 1, seed=1)
    pool = experts(tmp_path, base, target)
    family = pool["base"].family
    assert all(d.family is family for d in pool.values()) and len({id(d.head) for d in pool.values()}) == 1
    x, feats = torch.randint(0, 128, (3, 6)), torch.randn(3, 6, 64)
    adapters = family.adapters
    with torch.no_grad(), adapters.mixed(["__base__", "lora_math", "lora_code"]):
        mixed = base(input_ids=x, features=feats).logits
    for i, adapter in enumerate([None, "lora_math", "lora_code"]):
        peft = adapters.peft
        with torch.no_grad():
            if adapter is None:
                with peft.disable_adapter():
                    alone = base(input_ids=x[i:i + 1], features=feats[i:i + 1]).logits
            else:
                peft.set_adapter(adapter)
                alone = base(input_ids=x[i:i + 1], features=feats[i:i + 1]).logits
        torch.testing.assert_close(mixed[i:i + 1], alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(mixed[1], mixed[2])
    check_lossless(target, pool)

    # one propose_many call per round for the three members, and one head forward per draft step
    calls, steps, feeding = [], [], []
    propose_many, forward, feed = family.propose_many, base.forward, family.feed

    def marked_feed(*a, **k):
        feeding.append(1)
        try:
            return feed(*a, **k)
        finally:
            feeding.pop()
    family.feed = marked_feed
    family.propose_many = lambda ctx, asks: calls.append((len(asks), int(max(g.max() for *_, g in asks)))) or \
        propose_many(ctx, asks)

    def counted(*a, **k):
        if not feeding:             # not a feed: a draft step
            steps.append(tuple(k["input_ids"].shape))
        return forward(*a, **k)
    base.forward = counted
    try:
        engine = SpecEngine(target, pool, eos_token_id=[])
        out = engine.generate(random_prompts(3, min_len=4, max_len=6, seed=4),
                              [Arm("lora_math", 4), Arm("lora_code", 4), Arm("base", 4)], max_new_tokens=12)
    finally:
        family.propose_many, base.forward, family.feed = propose_many, forward, feed
    rounds = len({r.verify_s for r in out.records if r.drafted})      # rounds that drafted
    assert len(calls) == rounds and all(n == 3 for n, _ in calls[:1])
    assert len(steps) == sum(g - 1 for _, g in calls)          # every step of every round, all members at once
    assert all(s == (3, 1) for s in steps)                     # the 3 drafting slots of 9 (3 members x 3 rows)


def test_family_scores_equal_separate_experts(tmp_path):
    """Scoring every expert in one feed changes no prediction: the same records (greedy, full
    information, deferred scores) as experts built on separate copies of the head."""
    target = tiny_model("llama", seed=0, num_layers=4)
    base = new_eagle_head(target, 1, seed=1)
    shared = experts(tmp_path, copy.deepcopy(base), target)
    separate = {"base": EagleDrafter(target, copy.deepcopy(base), "base")}
    for name in ("lora_math", "lora_code"):
        separate[name] = lora_expert(target, copy.deepcopy(base), tmp_path / name.split("_")[1], name)
    prompts = random_prompts(3, min_len=3, max_len=12, seed=6)
    arms = [Arm("lora_math", 3), Arm("lora_code", 2), Arm("base", 4)]
    records = {}
    for label, pool in (("shared", shared), ("separate", separate)):
        engine = SpecEngine(target, pool, eos_token_id=[])
        for every in (1, 3):
            out = engine.generate(prompts, arms, max_new_tokens=16, feedback="full", score_every=every)
            records[label, every] = [(r.accepted, r.position_acceptance) for r in out.records]
    assert records["shared", 1] == records["separate", 1]
    assert records["shared", 3] == records["separate", 3]


def test_settings_belong_to_the_family(tmp_path):
    target = tiny_model("llama", seed=0, num_layers=4)
    pool = experts(tmp_path, new_eagle_head(target, 1, seed=1), target, prompt_window=5)
    assert {d.prompt_window for d in pool.values()} == {5}
    family = pool["base"].family
    with pytest.raises(DrafterError, match="share the settings"):
        family.adapters.drafter(target, "lora_math", "again", prompt_window=3)
    with pytest.raises(DrafterError, match="belong to the family"):
        EagleDrafter(target, family.head, "x", family=family, min_confidence=0.5)
    with pytest.raises(DrafterError, match="settings of EAGLE"):
        experts(tmp_path / "lm", tiny_model("llama", seed=3), target, prompt_window=5)


def test_missing_adapter_dir_names_the_fix(tmp_path):
    target = tiny_model("llama", seed=0)
    with pytest.raises(DrafterError, match="adapter_config.json"):
        lora_experts(target, new_eagle_head(target, 1), {"lora_math": tmp_path})
