"""Tiny random LLaMA / Qwen2 models built from configs, for fast tests.

Nothing here downloads anything: the models are random, small and seeded, so a
test can run the real transformers code paths (caches, masks, SDPA) in
milliseconds.
"""
from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

_ARCHS = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}


def tiny_config(arch: str = "llama", vocab_size: int = 128, num_layers: int = 2, hidden_size: int = 64,
                max_position_embeddings: int = 512, **overrides):
    """A small config of `arch` ("llama" or "qwen2") with eos id 1 and pad id 0."""
    config_cls, _ = _ARCHS[arch]
    kwargs = dict(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings, bos_token_id=2, eos_token_id=1, pad_token_id=0,
        tie_word_embeddings=False, attn_implementation="sdpa",
    )
    kwargs.update(overrides)
    return config_cls(**kwargs)


def tiny_model(arch: str = "llama", seed: int = 0, logit_scale: float = 1.0, **config_overrides):
    """A random causal LM in eval mode. `logit_scale` sharpens (>1) or flattens (<1) its outputs."""
    _, model_cls = _ARCHS[arch]
    torch.manual_seed(seed)
    model = model_cls(tiny_config(arch, **config_overrides)).eval()
    if logit_scale != 1.0:
        with torch.no_grad():
            model.lm_head.weight.mul_(logit_scale)
    return model


def random_prompts(n: int, vocab_size: int = 128, min_len: int = 1, max_len: int = 12, seed: int = 0,
                   avoid=(0, 1)) -> list[list[int]]:
    """`n` prompts of different random lengths with token ids outside `avoid` (pad, eos)."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([t for t in range(vocab_size) if t not in avoid])
    prompts = []
    for i in range(n):
        length = min_len + (i * 5 + int(torch.randint(0, max_len, (1,), generator=g))) % (max_len - min_len + 1)
        idx = torch.randint(0, len(allowed), (length,), generator=g)
        prompts.append(allowed[idx].tolist())
    return prompts
