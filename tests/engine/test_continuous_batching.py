"""Continuous batching: requests join a running batch as rows free up (and as they arrive) and leave it
as soon as they end. Every drafter kind takes rows mid-flight; greedy output stays each request's own
autoregressive output; sampling keeps the target's distribution with admissions in mid-flight."""
from __future__ import annotations

import copy

import pytest
import torch
from distribution_checks import N_TOKENS, PROMPT, chi2_pvalue, exact_joint, models

from drafters import EarlyExitDrafter, ModelDrafter, NgramDrafter
from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from drafters.lora import lora_experts
from drafters.training.lora import new_lora
from specsel import Arm, Sampling, SpecEngine
from specsel.learners.factored import FactoredHedge
from specsel.modeling.kvcache import RaggedKVCache
from specsel.testing import random_prompts

from conftest import drafter_models, hf_greedy, target_model

MAX_NEW = 14


def eagle_pool(target, tmp_path):
    """An EAGLE-1 head with two LoRA experts (one family) and an EAGLE-3 head on its own."""
    head = new_eagle_head(target, 1, seed=1)
    for i, name in enumerate(("math", "code")):
        peft_model = new_lora(copy.deepcopy(head), rank=4, seed=10 + i)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(10 + i))
        peft_model.save_pretrained(tmp_path / name)
    pool = lora_experts(target, head, {"lora_math": tmp_path / "math", "lora_code": tmp_path / "code"},
                        base_name="eagle")
    pool["eagle3"] = EagleDrafter(target, new_eagle_head(target, 3, torch.arange(0, 128, 2), seed=3), prompt_window=3)
    return pool


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    target = target_model("llama")
    pool = {"ngram": NgramDrafter(), "model": ModelDrafter(drafter_models("llama")["noisy"]),
            "early_exit": EarlyExitDrafter(target, 1), **eagle_pool(target, tmp_path_factory.mktemp("adapters"))}
    return SpecEngine(target, pool, eos_token_id=1)


PROMPTS = [p + p[:4] for p in random_prompts(7, min_len=2, max_len=11, seed=31)]
ARMS = [Arm("ngram", 3), Arm("model", 2), Arm("eagle", 3), Arm("lora_math", 2), Arm("early_exit", 2),
        Arm("eagle3", 2), Arm("lora_code", 3)]


def test_the_kv_cache_takes_rows_of_another_cache():
    target = target_model("llama")
    prompts = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]

    def prefilled(ps):
        kv = RaggedKVCache(target, len(ps))
        width = max(map(len, ps))
        tokens = torch.tensor([p + [0] * (width - len(p)) for p in ps])
        kv.prefill(tokens, torch.tensor([len(p) for p in ps]))
        return kv
    joined = prefilled(prompts[:1])
    joined.extend(prefilled(prompts[1:]))
    whole = prefilled(prompts)
    assert joined.lengths.tolist() == whole.lengths.tolist() == [5, 2, 3]
    step = torch.tensor([[13], [14], [15]])
    a = joined.forward(step, torch.tensor([1, 1, 1])).logits
    b = whole.forward(step, torch.tensor([1, 1, 1])).logits
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("max_batch", [1, 2, 3])
def test_greedy_requests_joining_mid_flight_equal_their_own_greedy_output(engine, max_batch):
    expected = [hf_greedy(engine.target, p, MAX_NEW) for p in PROMPTS]
    out = engine.generate(PROMPTS, ARMS, max_new_tokens=MAX_NEW, max_batch=max_batch)
    assert out.tokens == expected
    # never more than max_batch rows at once, and every request ran
    assert max(r.batch for r in out.records) <= max_batch
    assert {r.row for r in out.records} == set(range(len(PROMPTS)))
    timing = out.requests
    assert all(t.admitted_s is not None and t.first_token_s >= t.admitted_s and t.finish_s >= t.first_token_s
               for t in timing)
    times = [r.time_s for r in out.records]
    assert times == sorted(times) and times[-1] <= out.wall_s


def test_the_fixed_batch_is_the_special_case(engine):
    """All at once and no cap is the batch of before: the same tokens and rounds as the rows alone."""
    together = engine.generate(PROMPTS, ARMS, max_new_tokens=MAX_NEW)
    capped = engine.generate(PROMPTS, ARMS, max_new_tokens=MAX_NEW, max_batch=len(PROMPTS))
    assert together.tokens == capped.tokens
    assert [(r.row, r.round, r.drafter, r.accepted) for r in together.records] == \
        [(r.row, r.round, r.drafter, r.accepted) for r in capped.records]
    assert together.records[0].batch == len(PROMPTS)


def test_requests_arrive_over_time_and_wait_for_a_free_row(engine):
    arrivals = [0.0, 0.0, 0.05, 0.05, 0.3, 0.3, 0.3]
    out = engine.generate(PROMPTS, ARMS, max_new_tokens=MAX_NEW, arrivals=arrivals, max_batch=2)
    assert out.tokens == [hf_greedy(engine.target, p, MAX_NEW) for p in PROMPTS]
    for t, a in zip(out.requests, arrivals):
        assert t.arrival_s == a and t.admitted_s >= a
    assert out.wall_s >= 0.3


def test_a_learner_plays_on_with_rows_joining(engine):
    names = list(engine.drafters)
    policy = FactoredHedge(names, [1, 2, 3])
    out = engine.generate(PROMPTS, policy, max_new_tokens=MAX_NEW, feedback="full", max_batch=3)
    assert out.tokens == [hf_greedy(engine.target, p, MAX_NEW) for p in PROMPTS]
    assert len({r.drafter for r in out.records}) > 1
    assert all(set(r.position_acceptance) <= set(names) for r in out.records)


def test_deferred_scores_are_settled_before_rows_join(engine):
    out = engine.generate(PROMPTS, ARMS, max_new_tokens=MAX_NEW, feedback="full", score_every=3, max_batch=2)
    assert out.tokens == [hf_greedy(engine.target, p, MAX_NEW) for p in PROMPTS]
    assert all(len(r.position_acceptance["eagle"]) == r.committed for r in out.records)


def test_bad_arrivals_are_one_line_errors(engine):
    for kwargs, match in (({"arrivals": [0.0]}, "arrivals has 1 times for 7 prompts"),
                          ({"arrivals": [-1.0] * 7}, "finite seconds >= 0"),
                          ({"max_batch": 0}, "max_batch must be >= 1"),
                          ({"arrivals": "soon"}, "arrivals must be a list of seconds")):
        with pytest.raises((ValueError, TypeError), match=match):
            engine.generate(PROMPTS, ARMS, max_new_tokens=4, **kwargs)


@pytest.mark.parametrize("arm", ["model", "mixed"])
def test_sampling_keeps_the_target_distribution_with_admissions_in_mid_flight(arm):
    sampling = Sampling(1.0, 1.0)
    target, drafter = models()
    engine = SpecEngine(target, {"model": ModelDrafter(drafter), "ngram": NgramDrafter()}, eos_token_id=[])
    n = 3000
    arms = Arm("model", 3) if arm == "model" else [Arm("model", 3), Arm("ngram", 2), Arm.autoregressive()] * (n // 3)
    result = engine.generate([PROMPT] * n, arms, max_new_tokens=N_TOKENS, sampling=sampling, seed=5, max_batch=64)
    assert max(r.batch for r in result.records) == 64 and len(result.tokens) == n
    assert chi2_pvalue(result.tokens, exact_joint(target, sampling)) > 1e-3




def test_a_request_admitted_mid_flight_drafts_as_it_would_alone(engine):
    """Admission gives each drafter the row's true state: a row's accepted drafts, round by round,
    are those of the same request decoded alone (greedy), for every drafter kind."""
    mid = engine.generate(PROMPTS, ARMS, max_new_tokens=MAX_NEW, max_batch=2)
    for row, (prompt, arm) in enumerate(zip(PROMPTS, ARMS)):
        alone = engine.generate([prompt], arm, max_new_tokens=MAX_NEW)
        assert [r.accepted for r in mid.records if r.row == row] == [r.accepted for r in alone.records], arm
