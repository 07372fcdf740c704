"""Quick held-out measurements used by training recipes (model cards) and benchmarks: greedy MAT
of each drafter on evaluation prompts no drafter was trained on."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from evaluators.metrics import mean_acceptance_length
from specsel.core.arms import Arm
from specsel.data import encode_prompts, load_domain
from specsel.engine import SpecEngine


def heldout_prompts(tokenizer, domain: str, data_dir, n: int, offset: int = 0) -> list[list[int]]:
    """Token ids of evaluation prompts offset..offset+n-1 of `domain` (never trained on)."""
    queries = load_domain(domain, data_dir, limit=offset + n, split="eval")[offset:]
    return encode_prompts(tokenizer, queries)


@dataclass
class HeldOut:
    """measure_mat's options: prompts per domain (after the first `offset`), the arm's gamma, new tokens."""
    n_prompts: int = 5
    gamma: int = 4
    max_new_tokens: int = 64
    offset: int = 0


def measure_mat(target, tokenizer, drafters: dict, domains: Sequence[str], data_dir,
                **options) -> dict[str, dict[str, float]]:
    """Greedy mean accepted tokens per target forward (MAT) of every drafter at `gamma` on
    `n_prompts` held-out prompts per domain (`options`: HeldOut's): {drafter: {domain: mat}}."""
    o = HeldOut(**options)
    n_prompts, gamma, max_new_tokens, offset = o.n_prompts, o.gamma, o.max_new_tokens, o.offset
    engine = SpecEngine(target, drafters, eos_token_id=tokenizer.eos_token_id)
    out: dict[str, dict[str, float]] = {name: {} for name in drafters}
    for domain in domains:
        prompts = heldout_prompts(tokenizer, domain, data_dir, n_prompts, offset)
        for name in drafters:
            result = engine.generate(prompts, Arm(name, gamma), max_new_tokens=max_new_tokens)
            out[name][domain] = round(mean_acceptance_length(result.records), 3)
    return out
