"""The engine: one round of batched speculative decoding as named steps (loop), full-information
scoring (scoring) and verification (verify)."""
from specsel.engine.loop import GenerationResult, SpecEngine
from specsel.engine.prefill import PrefillCache

__all__ = ["GenerationResult", "PrefillCache", "SpecEngine"]
