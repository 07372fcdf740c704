"""Helpers over transformers models that the engine and the drafters share: loading the
target, the ragged batched KV cache, and transformers compatibility (compat)."""
