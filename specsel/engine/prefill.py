"""Reusing the target's prefill of one batch across the runs that decode it.

A study or a benchmark decodes the same batch of prompts with many runs (the baseline, fixed
arms, learners, repeats). The target's forward over the prompts is the same for all of them, so
a `PrefillCache` passed to `SpecEngine.generate(..., prefill_cache=...)` keeps the last batch's
committed cache and the features drafters start from, and the next call on the same prompts
(and the same captured layers) starts from a copy. The time is still charged: a reused prefill
adds the seconds its first computation took to `prefill_s` and `wall_s`, so tokens/s stays what
one decode of the batch costs. One batch is kept (a study finishes every run of a batch before
the next), so memory stays at one batch's cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from specsel.modeling.kvcache import CacheSnapshot


@dataclass
class _Entry:
    key: tuple
    snapshot: CacheSnapshot
    hidden: dict[int, torch.Tensor]
    seconds: float


class PrefillCache:
    """The target prefill of the last batch (see the module docstring); `hits` counts reuses."""

    def __init__(self):
        self.entry: _Entry | None = None
        self.hits = 0

    @staticmethod
    def key(prompts: Sequence[Sequence[int]], layers: Sequence[int], dtype) -> tuple:
        return tuple(tuple(p) for p in prompts), tuple(layers), str(dtype)

    def get(self, key: tuple) -> _Entry | None:
        if self.entry is not None and self.entry.key == key:
            self.hits += 1
            return self.entry
        return None

    def put(self, key: tuple, snapshot: CacheSnapshot, hidden: dict[int, torch.Tensor] | None, seconds: float) -> None:
        self.entry = _Entry(key, snapshot, {k: v.clone() for k, v in (hidden or {}).items()}, seconds)
