"""Sampling losslessness: speculative sampling reproduces the target's own distribution.

The exact joint distribution of the first three generated tokens of a tiny-vocabulary
target is computed by enumeration; thousands of drafted samples (one batch, independent
rows) are compared to it with a chi-square test. The same test is run once with the
residual-resampling rule broken, and must then reject.
"""
import pytest
from distribution_checks import N_SAMPLES, N_TOKENS, PROMPT, chi2_pvalue, exact_joint, models

import specsel.engine.verify
from drafters import ModelDrafter, NgramDrafter
from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from specsel import Arm, Sampling, SpecEngine


def draw(arms, sampling, seed=0):
    target, drafter = models()
    # an EAGLE-3 head with a reduced draft vocabulary: q is zero on target tokens 1 and 4
    # and a confidence threshold that cuts some drafts short (the draft length is the drafter's choice)
    eagle = EagleDrafter(target, new_eagle_head(target, 3, draft_tokens=[0, 2, 3, 5], seed=2), min_confidence=0.26)
    # the same head fed only the prompt's last 2 pairs (of 4): a prompt window that binds
    windowed = EagleDrafter(target, eagle.head, min_confidence=0.26, prompt_window=2)
    engine = SpecEngine(target, {"model": ModelDrafter(drafter), "ngram": NgramDrafter(), "eagle": eagle,
                                 "eagle_window": windowed}, eos_token_id=[])
    result = engine.generate([PROMPT] * N_SAMPLES, arms, max_new_tokens=N_TOKENS, sampling=sampling, seed=seed)
    assert all(len(t) == N_TOKENS for t in result.tokens)
    return result


SETTINGS = [Sampling(1.0, 1.0), Sampling(0.7, 0.9)]


@pytest.mark.parametrize("sampling", SETTINGS, ids=["t1", "t0.7-p0.9"])
@pytest.mark.parametrize("arm", ["model", "ngram", "eagle", "eagle_window", "mixed", "autoregressive"])
def test_sampling_matches_target_distribution(sampling, arm):
    target, _ = models()
    joint = exact_joint(target, sampling)
    arms = {"model": Arm("model", 3), "ngram": Arm("ngram", 3), "eagle": Arm("eagle", 3),
            "eagle_window": Arm("eagle_window", 3),
            "autoregressive": Arm.autoregressive(),
            "mixed": [Arm("model", 3), Arm("ngram", 2), Arm("eagle", 2), Arm.autoregressive()] * (N_SAMPLES // 4)}[arm]
    result = draw(arms, sampling)
    if arm != "autoregressive":   # the drafts were really tested, some rejected
        drafted = sum(r.drafted for r in result.records)
        accepted = sum(r.accepted for r in result.records)
        assert drafted > N_SAMPLES and 0 < accepted < drafted
    assert chi2_pvalue(result.tokens, joint) > 1e-3


def test_broken_residual_rule_is_detected(monkeypatch):
    """Sampling from p instead of normalize(max(0, p - q)) after a rejection biases the output."""
    sampling = Sampling(1.0, 1.0)
    target, _ = models()
    joint = exact_joint(target, sampling)
    monkeypatch.setattr(specsel.engine.verify, "residual_distribution", lambda p, q=None, token=None: p)
    result = draw(Arm("model", 3), sampling)
    assert chi2_pvalue(result.tokens, joint) < 1e-6


def test_sampling_is_reproducible_for_a_seed():
    sampling = Sampling(1.0, 1.0)
    a = draw(Arm("model", 2), sampling, seed=3).tokens[:50]
    b = draw(Arm("model", 2), sampling, seed=3).tokens[:50]
    c = draw(Arm("model", 2), sampling, seed=4).tokens[:50]
    assert a == b and a != c


def test_deterministic_drafts_carry_no_distribution_and_sampled_ones_only_their_real_positions(monkeypatch):
    """No dense one-hot q: a deterministic draft (n-gram) has no distribution at all; a sampled draft keeps
    its q at its real positions only, flat ([positions, V]), never [B, G, V]."""
    import specsel.engine.loop as loop
    from specsel.testing import random_prompts
    target, drafter = models()
    engine = SpecEngine(target, {"ngram": NgramDrafter(), "model": ModelDrafter(drafter)}, eos_token_id=1)
    seen = []
    verify = loop.SpecEngine._verify

    def spy(self, batch, draft, *rest):
        seen.append(draft)
        return verify(self, batch, draft, *rest)

    monkeypatch.setattr(loop.SpecEngine, "_verify", spy)
    prompts = [p + p[:4] for p in random_prompts(3, vocab_size=target.config.vocab_size, min_len=4, max_len=8, seed=2)]
    engine.generate(prompts, Arm("ngram", 3), max_new_tokens=8, sampling=Sampling(0.8))
    assert seen and all(d.q_flat is None and d.q_index is None for d in seen)
    seen.clear()
    engine.generate(prompts, [Arm("model", 3), Arm("ngram", 3), Arm("model", 2)], max_new_tokens=8,
                    sampling=Sampling(0.8))
    checked = 0
    for d in seen:
        model_rows = d.groups.get("model")
        real = 0 if model_rows is None else int(d.lengths[model_rows].sum())
        if real == 0:
            continue
        checked += 1
        assert d.q_flat.dim() == 2 and d.q_flat.shape[0] == real                 # one row per real position
        assert int((d.q_index >= 0).sum()) == real and d.q_index.shape == d.tokens.shape
    assert checked
