"""Greedy losslessness: the engine's output equals the target's own greedy decoding, token for token."""
import functools

import pytest
import torch

from drafters import ModelDrafter, NgramDrafter
from specsel import Arm, SpecEngine
from specsel.testing import random_prompts

from conftest import drafter_models, hf_greedy, target_model

MAX_NEW = 24


@functools.lru_cache(maxsize=None)
def reference(arch, prompt, max_new=MAX_NEW, eos=1):
    return hf_greedy(target_model(arch), list(prompt), max_new, eos)


def make_engine(arch):
    models = drafter_models(arch)
    pool = {name: ModelDrafter(m) for name, m in models.items()}
    pool["ngram"] = NgramDrafter()
    return SpecEngine(target_model(arch), pool, eos_token_id=1)


def batch(n, seed=3):
    prompts = random_prompts(n, min_len=1, max_len=14, seed=seed)
    # repeat a pattern in some prompts so the n-gram drafter has something to copy
    return [p + p[:4] if i % 2 else p for i, p in enumerate(prompts)]


@pytest.mark.parametrize("bsz", [1, 3, 8])
@pytest.mark.parametrize("drafter", ["ngram", "self", "noisy", "other"])
def test_greedy_matches_target(arch, bsz, drafter):
    engine = make_engine(arch)
    prompts = batch(bsz)
    for gamma in (1, 2, 4, 8):
        result = engine.generate(prompts, Arm(drafter, gamma), max_new_tokens=MAX_NEW)
        for i, p in enumerate(prompts):
            assert result.tokens[i] == reference(arch, tuple(p)), f"{drafter}@{gamma} row {i}"
        if drafter == "self":   # the target drafting for itself is always right
            assert all(r.accepted == r.drafted for r in result.records)


def test_autoregressive_path_matches(arch):
    engine = make_engine(arch)
    prompts = batch(5)
    result = engine.generate(prompts, Arm.autoregressive(), max_new_tokens=MAX_NEW)
    assert [result.tokens[i] for i in range(5)] == [reference(arch, tuple(p)) for p in prompts]
    assert all(r.committed == 1 and r.drafted == 0 for r in result.records)


def test_mixed_arms_in_one_batch(arch):
    engine = make_engine(arch)
    prompts = batch(8, seed=5)
    arms = [Arm("ngram", 3), Arm("noisy", 2), Arm.autoregressive(), Arm("other", 5),
            Arm("self", 8), Arm("noisy", 1), Arm("ngram", 8), Arm("noisy", 4)]
    result = engine.generate(prompts, arms, max_new_tokens=MAX_NEW)
    for i, p in enumerate(prompts):
        assert result.tokens[i] == reference(arch, tuple(p)), f"row {i} ({arms[i]})"


def test_full_feedback_keeps_output_and_scores_every_drafter(arch):
    engine = make_engine(arch)
    prompts = batch(4, seed=9)
    result = engine.generate(prompts, Arm("noisy", 3), max_new_tokens=MAX_NEW, feedback="full")
    for i, p in enumerate(prompts):
        assert result.tokens[i] == reference(arch, tuple(p))
    for rec in result.records:
        acc = rec.position_acceptance
        assert set(acc) == {"self", "noisy", "other", "ngram"}
        assert all(len(v) == rec.committed for v in acc.values())
        assert acc["self"] == [1.0] * rec.committed           # the target predicts itself
        # the played drafter's realised acceptance agrees with its counterfactual score
        assert acc["noisy"][: rec.accepted] == [1.0] * rec.accepted
        if rec.accepted < rec.drafted:
            assert acc["noisy"][rec.accepted] == 0.0


def test_eos_inside_a_draft_stops_the_row(arch):
    prompts = batch(3, seed=11)
    # an EOS id that the target itself emits a few tokens in, for row 0
    ref0 = reference(arch, tuple(prompts[0]), eos=-1)
    eos = next(t for t in ref0[2:] if t not in ref0[:2])
    engine = make_engine(arch)
    engine.eos = torch.tensor([eos])
    result = engine.generate(prompts, Arm("self", 8), max_new_tokens=MAX_NEW)
    for i, p in enumerate(prompts):
        expected = hf_greedy(target_model(arch), p, MAX_NEW, eos)
        assert result.tokens[i] == expected
    assert result.stopped_by_eos[0] and result.tokens[0][-1] == eos
    # rows finished in different rounds
    last_round = {}
    for r in result.records:
        last_round[r.row] = r.round
    assert len(set(last_round.values())) > 1


@pytest.mark.parametrize("max_new", [1, 2, 5, 9])
def test_max_new_tokens_reached_mid_draft(arch, max_new):
    engine = make_engine(arch)
    prompts = batch(3, seed=13)
    result = engine.generate(prompts, Arm("self", 8), max_new_tokens=max_new)
    for i, p in enumerate(prompts):
        assert len(result.tokens[i]) == max_new
        assert result.tokens[i] == reference(arch, tuple(p))[:max_new]


def test_kv_memory_does_not_grow_with_rejections(arch, monkeypatch):
    """After every round the target cache is exactly as wide as the longest committed row."""
    from specsel.modeling import kvcache
    engine = make_engine(arch)
    seen = []
    keep = kvcache.RaggedKVCache.keep

    def spy(self, n_keep):
        keep(self, n_keep)
        if self.model is engine.target:
            seen.append((self.width, int(self.lengths.max())))
    monkeypatch.setattr(kvcache.RaggedKVCache, "keep", spy)
    result = engine.generate(batch(4, seed=17), Arm("other", 8), max_new_tokens=MAX_NEW)
    assert any(r.accepted < r.drafted for r in result.records)   # there were rejections
    assert seen and all(width == longest for width, longest in seen)
