"""A target's tokenizer without its weights: what a client of a server needs to encode prompts
(`specsel load --url`). The spec is the one `load_target` takes."""
from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from specsel.modeling import target as T


def load_tokenizer(spec: str):
    """The tokenizer of target `spec` (a local directory, a GGUF file, a hub id, or the embedded
    default), eos as pad token when it has none, as `load_target` gives it. No weights are read,
    except to build the embedded default's cache the first time it is used."""
    if not isinstance(spec, (str, Path)) or not str(spec).strip():
        raise T.TargetError(f"target spec must be a non-empty string, got {spec!r}; "
                            f"pass a local directory, a hub id or {T.EMBEDDED_DEFAULT!r}")
    spec = str(spec).strip()
    path = Path(spec).expanduser()
    where, options, fix = spec, {}, T._HUB_FIX
    if spec.lower() == T.EMBEDDED_DEFAULT:
        cache = T.embedded_cache_dir()
        if not T._cache_complete(cache):
            return T.load_target(spec, device="cpu")[1]        # builds the cache once
        where, fix = str(cache), f"delete {cache} and retry"
    elif path.is_dir():
        where, fix = str(path), T._LOCAL_FIX
    elif path.is_file():
        if path.suffix.lower() != ".gguf":
            raise T.TargetError(f"{spec} is a file, not a model directory; pass the directory that holds "
                                "config.json")
        where, options, fix = str(path.parent), {"gguf_file": path.name}, "check that it is a complete GGUF file"
    elif T._looks_like_path(spec):
        raise T.TargetError(f"no such directory {spec}; pass an existing model directory, a hub id "
                            f"(org/name) or {T.EMBEDDED_DEFAULT!r}")
    with T._load_errors(f"the tokenizer of {spec!r}", fix):
        tokenizer = AutoTokenizer.from_pretrained(where, **options)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
