"""Sampling settings shared by the engine, the verifier and drafters (None means greedy)."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from specsel.core.seeds import MAX_SEED

# transformers' global defaults for the fields `Sampling` reads, used when neither the model's
# generation_config nor the caller sets them (what `generate` falls back to; top_k=50 included)
_HF_DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None}

# generation_config settings `generate(do_sample=True)` would apply that `Sampling` does not:
# each maps to its neutral value (None is neutral too)
_UNSUPPORTED = {"top_h": None, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0,
                "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; `None` in the engine means greedy decoding.

    The warps are applied in transformers' order (`generate(do_sample=True)`): temperature,
    then top_k, then top_p, then min_p. top_k=0 and min_p=0 switch those warps off. Note that
    Hugging Face's `generate` applies top_k=50 unless told otherwise: `Sampling(0.8, 0.9)` has
    no top_k, so to sample what `generate(do_sample=True, temperature=0.8, top_p=0.9)` samples,
    use `Sampling.from_generation_config(model, temperature=0.8, top_p=0.9)`.
    """
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature}); use greedy decoding instead of 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (got {self.top_p})")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, numbers.Integral) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0, 0 = off (got {self.top_k!r})")
        object.__setattr__(self, "top_k", int(self.top_k))
        if isinstance(self.min_p, bool) or not isinstance(self.min_p, numbers.Real) or not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), 0 = off (got {self.min_p!r})")

    @classmethod
    def from_generation_config(cls, model_or_config, temperature: float | None = None, top_p: float | None = None,
                               top_k: int | None = None, min_p: float | None = None) -> Sampling:
        """The sampling that `model.generate(do_sample=True, temperature=..., top_p=..., top_k=..., min_p=...)`
        applies: each argument left None is taken from the model's `generation_config` (or the
        GenerationConfig given), and where that leaves it unset, from transformers' global
        defaults (temperature 1.0, top_k 50, top_p 1.0, no min_p), exactly as `generate` does.
        A generation_config with another distribution-changing setting `Sampling` cannot apply
        (typical_p, epsilon/eta cutoff, top_h, repetition_penalty, no_repeat_ngram_size) raises
        ValueError rather than silently sampling something else.
        """
        if isinstance(model_or_config, GenerationConfig):
            config = model_or_config
        elif hasattr(model_or_config, "generation_config"):
            config = model_or_config.generation_config or GenerationConfig()
        else:
            raise ValueError(f"from_generation_config takes a model or a GenerationConfig "
                             f"(got {type(model_or_config).__name__})")

        def setting(name, given):
            if given is not None:
                return given
            value = getattr(config, name, None)
            return _HF_DEFAULTS[name] if value is None else value

        bad = [f"{name}={getattr(config, name)}" for name, neutral in _UNSUPPORTED.items()
               if getattr(config, name, None) not in (None, neutral)]
        if bad:
            raise ValueError(f"generation_config sets {', '.join(bad)}, which Sampling does not apply; "
                             f"set it to its neutral value or build Sampling(...) directly")
        min_p = setting("min_p", min_p)
        return cls(temperature=setting("temperature", temperature), top_p=setting("top_p", top_p),
                   top_k=setting("top_k", top_k), min_p=0.0 if min_p is None else min_p)

    def warpers(self) -> LogitsProcessorList:
        """transformers' own logits warpers for these settings, in `generate`'s order."""
        warpers = LogitsProcessorList()
        if self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k != 0:
            warpers.append(TopKLogitsWarper(self.top_k))
        if self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(self.top_p))
        if self.min_p > 0:
            warpers.append(MinPLogitsWarper(self.min_p))
        return warpers

    def probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Warped probabilities for logits [..., V], with transformers' own warpers. The engine
        uses them as the target's p (sampling and speculative verification alike)."""
        warpers = self.warpers()
        flat = logits.reshape(-1, logits.shape[-1]).float()
        if len(warpers):
            flat = warpers(None, flat)
        return torch.softmax(flat, dim=-1).reshape(logits.shape)


@dataclass(frozen=True)
class RequestSampling:
    """One request's own decoding, for a batch whose requests decode differently (a server's
    per-request temperature, top_p, top_k and seed): `sampling` None is greedy; `seed` None draws
    from the engine's generator, an int makes the request's output a function of its prompt,
    settings and seed alone (the same tokens whatever drafted them, whatever else ran beside it;
    specsel.engine.verify.seeded_choice). A greedy request ignores its seed."""
    sampling: Sampling | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.sampling is not None and not isinstance(self.sampling, Sampling):
            raise TypeError(f"RequestSampling.sampling must be None (greedy) or a Sampling (got "
                            f"{type(self.sampling).__name__})")
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or \
                    not 0 <= self.seed <= MAX_SEED:
                raise ValueError(f"seed must be an int in [0, 2**64 - 1] or None (got {self.seed!r})")
            object.__setattr__(self, "seed", None if self.sampling is None else int(self.seed))

    @property
    def greedy(self) -> bool:
        return self.sampling is None

    @property
    def seeded(self) -> bool:
        return self.seed is not None
