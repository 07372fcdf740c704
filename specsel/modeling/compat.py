"""transformers compatibility: the few places where specsel reaches into a model's layout or
an argument name that changed between releases. The engine, the KV cache and the drafters
use these helpers instead of their own lookups."""
from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from functools import lru_cache
from typing import Sequence

import torch


@lru_cache(maxsize=None)
def _cache_keyword(forward) -> str:
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def cache_kwargs(module, cache) -> dict:
    """`{name: cache}` for `module(...)`: transformers 5.2x renamed the `past_key_values`
    argument to `cache` (the old name warns and goes in 5.40); older releases know only
    the old name."""
    return {_cache_keyword(type(module).forward): cache}


def decoder_stack(model):
    """The decoder stack of a causal LM (`model.model` for LLaMA, Qwen2 and most HF decoders)."""
    base = getattr(model, getattr(model, "base_model_prefix", "model") or "model", None)
    if base is None or not hasattr(base, "layers"):
        base = getattr(model, "model", None)
    return base


# transformers' SDPA attention repeats the key/value heads of a grouped-query model for every query
# window wider than one token that has a mask; this switch makes it pass them grouped to torch
# (enable_gqa) instead. Same result; on CPU a verify window of 2-5 tokens over a 1,000-token
# cache costs about 0.7x as much. On CUDA the masked grouped kernel is the slow math one: CPU only.
FORCE_GQA = "TRANSFORMERS_SDPA_FORCE_GQA"


@contextmanager
def grouped_query_attention(device: torch.device):
    """Within the block, SDPA attends with grouped key/value heads on CPU (see FORCE_GQA)."""
    if device.type != "cpu" or os.environ.get(FORCE_GQA) is not None:
        yield
        return
    os.environ[FORCE_GQA] = "1"
    try:
        yield
    finally:
        os.environ.pop(FORCE_GQA, None)


@contextmanager
def capture_hidden_states(model, indices: Sequence[int]):
    """Record only the hidden states `indices` of one forward, numbered like HF `hidden_states`:
    0 = token embeddings, k = output of decoder layer k-1, L = final norm output (L layers).

    Cheaper than output_hidden_states=True, which keeps every layer's output; the hooks are
    removed on exit. Yields the dict that the forward fills (index -> [B, W, H]).
    """
    captured: dict[int, torch.Tensor] = {}
    if not indices:
        yield captured
        return
    base = decoder_stack(model)
    L = len(base.layers)
    handles = []

    home = model.device     # a layer may sit on another device (a device map): features come home

    def keep(index):
        def hook(module, args, output):
            captured[index] = (output[0] if isinstance(output, tuple) else output).to(home)
        return hook

    try:
        for k in sorted(set(indices)):
            if not 0 <= k <= L:
                raise ValueError(f"hidden state index {k} out of range [0, {L}] for a {L}-layer model")
            module = base.embed_tokens if k == 0 else base.norm if k == L else base.layers[k - 1]
            handles.append(module.register_forward_hook(keep(k)))
        yield captured
    finally:
        for h in handles:
            h.remove()
