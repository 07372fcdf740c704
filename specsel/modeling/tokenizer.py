"""A target's tokenizer without its weights: what a client of a server needs to encode prompts
(`specsel load --url`). The spec is the one `load_target` takes."""
from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from specsel.modeling import target as T
from specsel.modeling.spec import pad_with_eos, target_source


def load_tokenizer(spec: str):
    """The tokenizer of target `spec` (a local directory, a GGUF file, a hub id, or the embedded
    default), eos as pad token when it has none, as `load_target` gives it. No weights are read,
    except to build the embedded default's cache the first time it is used."""
    kind, spec = target_source(spec)
    where, options, fix = spec, {}, T._HUB_FIX
    if kind == "embedded":
        cache = T.embedded_cache_dir()
        if not T._cache_complete(cache):
            return T.load_target(spec, device="cpu")[1]        # builds the cache once
        where, fix = str(cache), f"delete {cache} and retry"
    elif kind == "dir":
        where, fix = str(Path(spec).expanduser()), T._LOCAL_FIX
    elif kind == "gguf":
        path = Path(spec).expanduser()
        where, options, fix = str(path.parent), {"gguf_file": path.name}, "check that it is a complete GGUF file"
    with T._load_errors(f"the tokenizer of {spec!r}", fix):
        return pad_with_eos(AutoTokenizer.from_pretrained(where, **options))
