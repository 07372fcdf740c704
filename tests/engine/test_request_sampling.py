"""Requests that decode differently in one batch (generate(request_sampling=...), what a server's
per-request temperature, top_p, top_k and seed use): every row keeps its own target distribution,
greedy rows are greedy, and a seeded row's tokens depend on its prompt, settings and seed alone."""
import pytest
from distribution_checks import N_TOKENS, PROMPT, chi2_pvalue, exact_joint, models

import specsel.engine.verify
from drafters import ModelDrafter, NgramDrafter
from specsel import Arm, RequestSampling, Sampling, SpecEngine
from specsel.testing import random_prompts

from conftest import hf_greedy

N = 3000
OWN = Sampling(0.7, 0.9)


def engine():
    target, drafter = models()
    return SpecEngine(target, {"model": ModelDrafter(drafter), "ngram": NgramDrafter()}, eos_token_id=[])


def decode(arms, decodings, sampling=None, seed=0, prompts=None):
    prompts = prompts or [PROMPT] * len(decodings)
    return engine().generate(prompts, arms, max_new_tokens=N_TOKENS, sampling=sampling, seed=seed,
                             request_sampling=decodings)


@pytest.mark.parametrize("engine_sampling", [None, Sampling(1.0, 1.0)], ids=["greedy-drafts", "sampled-drafts"])
@pytest.mark.parametrize("seeded", [True, False], ids=["seeded", "unseeded"])
def test_each_row_keeps_its_own_distribution(engine_sampling, seeded):
    """Rows at temperature 0.7, top_p 0.9 in an engine that drafts greedily or at temperature 1;
    a third of the rows decode greedily beside them and equal the target's greedy output."""
    decodings = [RequestSampling() if i % 3 == 2 else RequestSampling(OWN, seed=i if seeded else None)
                 for i in range(N)]
    arms = [Arm("model", 3), Arm("ngram", 2), Arm("model", 2)] * (N // 3)
    result = decode(arms, decodings, engine_sampling, seed=1)
    sampled = [t for t, d in zip(result.tokens, decodings) if not d.greedy]
    drafted = sum(r.drafted for r in result.records)
    assert drafted > N and 0 < sum(r.accepted for r in result.records) < drafted
    assert chi2_pvalue(sampled, exact_joint(models()[0], OWN)) > 1e-3
    greedy = hf_greedy(models()[0], PROMPT, N_TOKENS)
    assert all(t == greedy for t, d in zip(result.tokens, decodings) if d.greedy)


def test_position_independent_noise_is_detected(monkeypatch):
    """Negative control: noise keyed on the seed but not on the position biases the sequence."""
    monkeypatch.setattr(specsel.engine.verify, "position_seed", lambda seed, position: seed)
    result = decode(Arm("model", 3), [RequestSampling(OWN, seed=i) for i in range(N)])
    assert chi2_pvalue(result.tokens, exact_joint(models()[0], OWN)) < 1e-6


def test_a_seeded_request_gets_the_same_tokens_whatever_drafts_and_runs_beside_it():
    seeds = list(range(12))
    alone = [decode(Arm.autoregressive(), [RequestSampling(OWN, seed=s)]).tokens[0] for s in seeds[:4]]
    others = random_prompts(len(seeds), vocab_size=6, min_len=2, max_len=7, seed=3)
    for arms in (Arm("model", 3), Arm("ngram", 2), [Arm("model", 1), Arm.autoregressive()] * (len(seeds) // 2)):
        # each seeded row shares the batch with a row decoding something else (unseeded, another prompt)
        decodings = [d for s in seeds for d in (RequestSampling(OWN, seed=s), RequestSampling(Sampling(1.0)))]
        prompts = [p for o in others for p in (PROMPT, o)]
        arms = arms * 2 if isinstance(arms, list) else arms
        tokens = decode(arms, decodings, Sampling(1.0), seed=7, prompts=prompts).tokens[::2]
        assert tokens[:4] == alone
    assert len({tuple(t) for t in tokens}) > 1            # the seeds matter


def test_rows_without_their_own_sampling_are_unchanged():
    """RequestSampling equal to the call's own, or None, is exactly the call without request_sampling."""
    sampling = Sampling(1.0, 1.0)
    plain = decode(Arm("model", 3), [None] * 40, sampling, seed=4).tokens
    same = decode(Arm("model", 3), [RequestSampling(sampling)] * 20 + [None] * 20, sampling, seed=4).tokens
    assert plain == same


@pytest.mark.parametrize("decodings, match", [
    ([RequestSampling()], "1 request_sampling entries for 2 prompts"),
    (RequestSampling(), "one RequestSampling .* per prompt"),
    ([Sampling(0.7), None], r"request_sampling\[0\] is .*RequestSampling\(Sampling"),
])
def test_bad_request_sampling_is_a_one_line_error(decodings, match):
    with pytest.raises((TypeError, ValueError), match=match):
        engine().generate([PROMPT, PROMPT], Arm("model", 2), max_new_tokens=2, request_sampling=decodings)


@pytest.mark.parametrize("kwargs, match", [
    ({"sampling": 0.7}, "must be None .greedy. or a Sampling"),
    ({"sampling": Sampling(0.7), "seed": -1}, r"seed must be an int in \[0, 2\*\*64 - 1\]"),
    ({"sampling": Sampling(0.7), "seed": 1.5}, "seed must be an int"),
])
def test_bad_request_sampling_settings_are_refused(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        RequestSampling(**kwargs)


def test_a_greedy_request_ignores_its_seed():
    assert RequestSampling(None, seed=3) == RequestSampling()
