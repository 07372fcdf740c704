"""What a target spec names (the string `load_target` and `load_tokenizer` take), and the error
every user-facing failure to load a target raises."""
from __future__ import annotations

import os
from pathlib import Path

from specsel.core.defaults import EMBEDDED_DEFAULT


class TargetError(ValueError):
    """A user-facing failure to load the target; the message is one line that names the fix."""


def target_source(spec) -> tuple[str, str]:
    """(kind, spec stripped) of a target spec, kind "embedded", "dir", "gguf" (a .gguf file) or "hub";
    a one-line TargetError for anything else (what load_target and load_tokenizer both read)."""
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise TargetError(f"target spec must be a non-empty string, got {spec!r}; "
                          f"pass a local directory, a hub id or {EMBEDDED_DEFAULT!r}")
    spec = str(spec).strip()
    path = Path(spec).expanduser()
    if spec.lower() == EMBEDDED_DEFAULT:
        return "embedded", spec
    if path.is_dir():
        return "dir", spec
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise TargetError(f"{spec} is a file, not a model directory; pass the directory that holds config.json")
        return "gguf", spec
    if _looks_like_path(spec):
        raise TargetError(f"no such directory {spec}; pass an existing model directory, a hub id "
                          f"(org/name) or {EMBEDDED_DEFAULT!r}")
    return "hub", spec


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or os.sep != "/" and os.sep in spec


def pad_with_eos(tokenizer):
    """The tokenizer, with eos as its pad token when it has none."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
