"""The drafter pool of a study: built from drafters.pool or a user's --pool file, and what
identifies its weights (a resumed study must use the same)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

from specsel.study.config import StudyError


def load_pool(target, names: Sequence[str] | None = None, pool_path: str | None = None) -> dict:
    """{name: Drafter}: drafters.pool.default_pool, or `build_pool(target)` of a Python file;
    `names` keeps a subset (in the given order). A --pool file that does not run, or whose
    build_pool fails or returns anything but {name: Drafter}, is a one-line StudyError."""
    if pool_path is None:
        from drafters.pool import default_pool
        return default_pool(target, names)
    pool = _user_pool(target, pool_path)
    if names is not None:
        unknown = [n for n in names if n not in pool]
        if unknown:
            raise StudyError(f"unknown drafter(s) {', '.join(unknown)}; "
                             f"the pool from {pool_path} has: {', '.join(pool)}")
        pool = {n: pool[n] for n in names}
    for name, drafter in pool.items():
        drafter.name = name
    return pool


def check_pool_file(pool_path: str | None) -> None:
    """--pool names a file (a command checks it before the model loads: building the pool needs the
    target); a one-line StudyError otherwise."""
    if pool_path is not None and not Path(pool_path).expanduser().is_file():
        raise StudyError(f"--pool {pool_path}: no such file; "
                         "pass the path of a Python file defining build_pool(target)")


def _user_pool(target, pool_path: str) -> dict:
    """build_pool(target) of the --pool file, checked."""
    from specsel.core.drafting import Drafter

    check_pool_file(pool_path)
    path = Path(pool_path).expanduser()
    spec = importlib.util.spec_from_file_location(f"specsel_user_pool_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise StudyError(f"--pool {pool_path}: syntax error at line {exc.lineno}: {exc.msg}; fix the file") from None
    except ImportError as exc:
        raise StudyError(f"--pool {pool_path}{_line_in(exc, path)}: {_one_line(exc)}; install the missing module "
                         "or fix the import") from None
    except Exception as exc:
        raise StudyError(f"--pool {pool_path}{_line_in(exc, path)}: the file fails to run: {_one_line(exc)}; "
                         "fix the file") from None
    if not callable(getattr(module, "build_pool", None)):
        raise StudyError(f"--pool {pool_path}: defines no build_pool(target); add one returning {{name: Drafter}}")
    try:
        pool = module.build_pool(target)
    except Exception as exc:
        raise StudyError(f"--pool {pool_path}{_line_in(exc, path)}: build_pool(target) failed: {_one_line(exc)}"
                         ) from None
    if not isinstance(pool, dict) or not pool:
        raise StudyError(f"--pool {pool_path}: build_pool(target) must return a non-empty dict {{name: Drafter}} "
                         f"(got {_short(pool)})")
    for name, drafter in pool.items():
        if not isinstance(name, str) or not name.strip() or "," in name or name != name.strip():
            raise StudyError(f"--pool {pool_path}: build_pool(target) returned the drafter name {name!r}; names "
                             "must be non-empty strings without commas or surrounding spaces")
        if not isinstance(drafter, Drafter):
            raise StudyError(f"--pool {pool_path}: build_pool(target) returned {_short(drafter)} for {name!r}, "
                             "not a Drafter; return {name: Drafter} (a specsel.core.drafting.Drafter, e.g. "
                             "drafters.NgramDrafter())")
    return pool


def _one_line(exc: BaseException) -> str:
    """`Type: first line of the message`."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _short(value) -> str:
    text = repr(value)
    return f"{text if len(text) <= 40 else text[:37] + '...'} ({type(value).__name__})"


def _line_in(exc: BaseException, path: Path) -> str:
    """' line N': where the innermost frame in `path` was when `exc` rose ('' when none was)."""
    import traceback
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    return f" line {frames[-1].lineno}" if frames else ""


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
