"""Sampling settings shared by the engine, the verifier and drafters (None means greedy)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; `None` in the engine means greedy decoding."""
    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature}); use greedy decoding instead of 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (got {self.top_p})")

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Warped probabilities for logits [..., V], with transformers' own warpers."""
        warpers = LogitsProcessorList()
        if self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(self.top_p))
        flat = logits.reshape(-1, logits.shape[-1]).float()
        if len(warpers):
            flat = warpers(None, flat)
        return torch.softmax(flat, dim=-1).reshape(logits.shape)
