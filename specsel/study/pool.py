"""The drafter pool of a study: built from drafters.pool or a user's --pool file, and what
identifies its weights (a resumed study must use the same)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

from specsel.study.config import StudyError


def load_pool(target, names: Sequence[str] | None = None, pool_path: str | None = None) -> dict:
    """{name: Drafter}: drafters.pool.default_pool, or `build_pool(target)` of a Python file;
    `names` keeps a subset (in the given order)."""
    if pool_path is None:
        from drafters.pool import default_pool
        return default_pool(target, names)
    path = Path(pool_path).expanduser()
    if not path.is_file():
        raise StudyError(f"--pool {pool_path}: no such file; "
                         "pass the path of a Python file defining build_pool(target)")
    spec = importlib.util.spec_from_file_location(f"specsel_user_pool_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "build_pool", None)):
        raise StudyError(f"--pool {pool_path}: defines no build_pool(target); add one returning {{name: Drafter}}")
    pool = module.build_pool(target)
    if not isinstance(pool, dict) or not pool:
        raise StudyError(f"--pool {pool_path}: build_pool(target) must return a non-empty dict {{name: Drafter}}")
    if names is not None:
        unknown = [n for n in names if n not in pool]
        if unknown:
            raise StudyError(f"unknown drafter(s) {', '.join(unknown)}; "
                             f"the pool from {pool_path} has: {', '.join(pool)}")
        pool = {n: pool[n] for n in names}
    for name, drafter in pool.items():
        drafter.name = name
    return pool


def known_pool_names() -> list[str]:
    """Every name drafters.pool.default_pool can build (its default set and the optional members)."""
    from drafters import pool
    try:
        return list(pool.pool_names(include_optional=True))
    except TypeError:
        return list(pool.pool_names())


def pool_weights(names: Sequence[str], pool_path: str | None) -> str:
    """What identifies the pool's weights: the shipped files' hash, or the --pool file's."""
    import hashlib
    if pool_path is None:
        from drafters.pool import weights_fingerprint
        return weights_fingerprint(names)
    return "pool-file:" + hashlib.sha256(Path(pool_path).expanduser().read_bytes()).hexdigest()[:16]


def replay_exact(pool: dict) -> dict[str, bool]:
    """{drafter: whether greedy replays of its full-information records are exact} (its capabilities)."""
    return {d: pool[d].capabilities.replay_exact for d in pool}
