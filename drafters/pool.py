"""The default drafter pool for the embedded target, built by name.

`default_pool(target)` returns {name: Drafter} for every pool member whose ingredients are
available; recipes and the CLI build arms as pool x gammas from it. recipes/drafters.py
shows how to register pools for other targets (Llama-3, Qwen2 with EAGLE heads).
"""
from __future__ import annotations

from typing import Callable, Sequence

from drafters.base import Drafter, DrafterError
from drafters.early_exit import EarlyExitDrafter
from drafters.ngram import NgramDrafter

# name -> factory(target) ; order is the order arms are listed in
POOL_FACTORIES: dict[str, Callable[..., Drafter]] = {
    "ngram": lambda target: NgramDrafter(),
    "early_exit_4": lambda target: EarlyExitDrafter(target, 4),
    "early_exit_8": lambda target: EarlyExitDrafter(target, 8),
    "early_exit_12": lambda target: EarlyExitDrafter(target, 12),
}


def pool_names() -> list[str]:
    return list(POOL_FACTORIES)


def default_pool(target, names: Sequence[str] | None = None) -> dict[str, Drafter]:
    """Build the named members of the default pool (all of them if `names` is None)."""
    names = pool_names() if names is None else list(names)
    unknown = [n for n in names if n not in POOL_FACTORIES]
    if unknown:
        raise DrafterError(f"unknown pool drafter(s) {', '.join(unknown)}; the default pool has: "
                           f"{', '.join(POOL_FACTORIES)}")
    pool = {}
    for name in names:
        drafter = POOL_FACTORIES[name](target)
        drafter.name = name
        pool[name] = drafter
    return pool
