"""User domains: your own prompts, named wherever a built-in domain is (docs/design.md, "Data").

    resolve_domains("math,support=tickets.jsonl")     ->  ["math", "support"]

A domain list is comma-separated (a sequence is taken item by item, so a path may hold a
comma there). Each entry is a known domain name, or a user domain:

    NAME=PATH[@N]                                  a local JSON-lines or JSON-list file
    NAME=hf:owner/dataset[:config]:split:field[@N]  datasets.load_dataset(owner/dataset, config,
                                                   split=split); `field` is the prompt text

NAME holds letters, digits, ``_`` and ``-`` and is not a built-in name. PATH is relative to
the current folder (``--data-dir`` does not apply to it).

**File.** Each record is a JSON object with either ``prompt`` (plain text: one user turn; the
target's chat template is applied later, as for every domain) or ``messages`` (a chat: a
list of ``{"role", "content"}`` turns, roles system/user/assistant, ending with a user turn),
and optionally ``reference`` (a string: the gold answer). Every other field goes to
``Query.meta``. A null field counts as absent. From the hub, the ``field`` column is the
prompt, a ``reference`` column the reference, and the other columns go to ``meta``.

**Splits.** As for medqa, sql and code_instruct, the first N records are the eval split and
the rest the train split; N is 300 unless ``@N`` sets it. ``@all``: the whole file is eval
(no train split); ``@0``: the whole file is train (no eval split). Query ids are
``NAME/eval/i`` and ``NAME/train/i``, ``i`` the record's index in the file.

**Training text** of a record (``training_texts``): the prompt (or the contents of the
messages, joined by blank lines), then the reference when there is one.

Files are read with plain ``json`` rather than the ``datasets`` JSON reader: a user's records
may mix field types (arrow refuses them), and every error must name its line.

Registration is explicit and lasts for the process: :func:`resolve_domains` adds each user
domain to the registry (:func:`specsel.data.registry.add_user_domain`), after which
``load_domain``, ``training_texts``, ``mixed_stream`` and the study take its name unchanged.
Every malformed entry, file or record raises a one-line :class:`DataError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

from specsel.data import registry
from specsel.data.query import DataError, Query, user_turn
from specsel.data.reader import json_problem, quiet_datasets, read_text

DEFAULT_EVAL_SIZE = 300  # the first 300 records are evaluated, as medqa, sql and code_instruct do
NAME = re.compile(r"[A-Za-z0-9_-]+")
SIZE = re.compile(r"(?P<rest>.*)@(?P<n>\d+|all)")  # a trailing @N / @all; any other '@' is part of the path
ROLES = ("system", "user", "assistant")
RECORD_FIELDS = ("prompt", "messages", "reference")
USER_ORDER = 1000  # user domains come after every built-in
DOMAIN_SPEC_HELP = ("comma list of domains: built-in names (" + ", ".join(registry.builtin_domains())
                    + ") and your own data as NAME=PATH[@N] (JSON lines or a JSON list; the first N records, "
                    "default 300, are evaluated, the rest train drafters) or "
                    "NAME=hf:owner/dataset[:config]:split:field")


@dataclass(frozen=True)
class UserSpec:
    """One user domain: a local file or a hub split, and where its eval part ends."""

    name: str
    path: Path | None  # the local file (absolute), or None for a hub split
    hub: tuple[str, str | None, str, str] | None  # (dataset, config, split, field)
    eval_size: int | None  # the first eval_size records are eval; None (@all): every record

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else f"hub dataset {self.hub[0]}"

    @property
    def size_text(self) -> str:
        return "all" if self.eval_size is None else str(self.eval_size)


# ---------------------------------------------------------------------- specs and registration

def resolve_domains(spec: str | Sequence[str]) -> list[str]:
    """The domain names of a domain list, in order, each once; registers every ``NAME=...``
    entry as a user domain of this process. Raises :class:`DataError` on a bad entry."""
    entries = spec.split(",") if isinstance(spec, str) else list(spec)
    names = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        name = register(parse_spec(entry)) if "=" in entry else known_name(entry)
        if name not in names:
            names.append(name)
    return names


def resolve_domain(spec: str) -> str:
    """The one domain of ``spec`` (a known name or ``NAME=...``), registered like resolve_domains."""
    names = resolve_domains([spec]) if "=" in spec else resolve_domains(spec)
    if len(names) != 1:
        raise DataError(f"expected one domain, got {spec!r}; name one domain or NAME=PATH")
    return names[0]


def domains_argument(ap, text: str, option: str = "--domains", one: bool = False):
    """resolve_domains (``one``: resolve_domain) of a recipe's option; a bad entry, name or file
    is the argparse parser's one-line error."""
    try:
        return resolve_domain(text) if one else resolve_domains(text)
    except DataError as e:
        ap.error(f"{option}: {e}")


def known_name(name: str) -> str:
    if name not in registry.domains():
        raise DataError(f"unknown domain {name!r}; known domains: {', '.join(registry.domains())}; "
                        f"or give your own file as NAME=PATH, e.g. support=tickets.jsonl")
    return name


def parse_spec(entry: str) -> UserSpec:
    """``NAME=PATH[@N]`` or ``NAME=hf:...[@N]`` -> UserSpec (the local file must exist)."""
    name, _, rest = (t.strip() for t in entry.partition("="))
    check_name(name, entry)
    m = SIZE.fullmatch(rest)
    rest, eval_size = (m["rest"], None if m["n"] == "all" else int(m["n"])) if m else (rest, DEFAULT_EVAL_SIZE)
    if rest.startswith("hf:"):
        return UserSpec(name, None, parse_hub(rest[3:], entry), eval_size)
    if not rest:
        raise DataError(f"domain {entry!r}: no path after '='; write NAME=PATH, e.g. {name}=tickets.jsonl")
    path = Path(rest).expanduser().resolve()
    if not path.is_file():
        hint = " (@N takes a whole number >= 0 or all)" if "@" in rest else ""
        raise DataError(f"{name}: {path} not found{hint}; give NAME=PATH with PATH a JSON-lines or JSON-list "
                        f"file, relative to the current folder")
    return UserSpec(name, path, None, eval_size)


def check_name(name: str, entry: str) -> None:
    if not name:
        raise DataError(f"domain {entry!r} has no name before '='; write NAME=PATH, e.g. support=tickets.jsonl")
    if not NAME.fullmatch(name):
        raise DataError(f"domain name {name!r} may hold only letters, digits, '_' and '-'; rename it")
    if name in registry.builtin_domains():
        raise DataError(f"domain name {name!r} is a built-in domain; give your data another name, e.g. my_{name}")


def parse_hub(text: str, entry: str) -> tuple[str, str | None, str, str]:
    """``owner/dataset[:config]:split:field`` -> (dataset, config, split, field)."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (3, 4) or not all(parts) or "/" not in parts[0]:
        raise DataError(f"domain {entry!r}: write NAME=hf:owner/dataset[:config]:split:field, "
                        f"e.g. support=hf:acme/tickets:train:text")
    return (parts[0], None, parts[1], parts[2]) if len(parts) == 3 else tuple(parts)


def register(spec: UserSpec) -> str:
    """Add ``spec`` as a user domain; the same name again must name the same data and split."""
    old = registry.user_domains().get(spec.name)
    if old is not None and old.user != spec:
        raise DataError(f"domain {spec.name!r} is given twice, as {old.user.where}@{old.user.size_text} and "
                        f"{spec.where}@{spec.size_text}; give each its own name")
    if old is None:
        order = USER_ORDER + len(registry.user_domains())
        registry.add_user_domain(registry.Domain(spec.name, order, split_source(spec, "eval"),
                                                 split_source(spec, "train"), user=spec))
    return spec.name


def split_source(spec: UserSpec, split: str) -> registry.Source:
    dataset, config, hub_split = spec.hub[:3] if spec.hub else ("", None, "")
    return registry.Source(str(spec.path or ""), dataset, (config,), hub_split, (), partial(to_query, spec.name),
                           to_text, select=partial(split_pairs, spec, split), read=partial(read_records, spec))


def is_user_domain(name: str) -> bool:
    return name in registry.user_domains()


def user_domain_records(names: Sequence[str]) -> dict[str, dict]:
    """Where each user domain among ``names`` comes from, for a study's config.json: its file and
    the file's sha256 (or its hub split), and N."""
    out = {}
    for name in names:
        domain = registry.user_domains().get(name)
        if domain is None:
            continue
        spec = domain.user
        where = ({"path": str(spec.path), "sha256": file_sha256(spec.path)} if spec.path is not None
                 else {"hub": ":".join(p for p in spec.hub if p is not None)})
        out[name] = {**where, "eval_size": spec.size_text}
    return out


def cache_tag(name: str) -> str:
    """``name`` for a built-in domain; for a user domain, ``name-<12 hex>`` of its file's sha256 (or
    hub split) and N: what is cached from its text (features, checkpoints) is not reused once it
    changes, and a moved file keeps its cache."""
    rec = user_domain_records([name]).get(name)
    if rec is None:
        return name
    key = json.dumps({k: v for k, v in rec.items() if k != "path"}, sort_keys=True)
    return f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------- splits, queries, texts

def split_pairs(spec: UserSpec, split: str, recs: list[dict], _path=None) -> list[tuple[int, dict]]:
    """``(index in file, record)`` pairs of one split: eval the first N records, train the rest."""
    n = len(recs)
    cut = n if spec.eval_size is None else min(spec.eval_size, n)
    if split == "eval":
        if cut == 0:
            raise DataError(f"{spec.name}: {spec.where}@0 puts all {n} records in the train part; "
                            f"give @N with N > 0 to evaluate the first N")
        return list(enumerate(recs[:cut]))
    if cut == n:
        what = (f"@all puts all {n} records in the eval part" if spec.eval_size is None
                else f"has only {n} records, all in the eval part (the first {spec.eval_size})")
        raise DataError(f"{spec.name}: {spec.where} {what}; write {spec.name}=PATH@N with N < {n} to train "
                        f"on the records past N")
    return [(i, recs[i]) for i in range(cut, n)]


def to_query(name: str, rec: dict, i: int, split: str) -> Query:
    meta = {k: v for k, v in rec.items() if k not in RECORD_FIELDS}
    if rec.get("prompt") is not None:
        messages = user_turn(rec["prompt"])
    else:
        messages = [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]
    return Query(name, f"{name}/{split}/{i}", messages, rec.get("reference") or "", meta)


def to_text(rec: dict) -> str:
    parts = [rec["prompt"]] if rec.get("prompt") is not None else [m["content"] for m in rec["messages"]]
    return "\n\n".join(parts + ([rec["reference"]] if rec.get("reference") else []))


# ---------------------------------------------------------------------- reading and checking

def read_records(spec: UserSpec) -> list[dict]:
    """Every record of the file (or hub split), checked; a one-line DataError names the first bad one."""
    located = read_hub_rows(spec) if spec.path is None else read_file(spec.name, spec.path)
    if not located:
        raise DataError(f"{spec.name}: {spec.where} holds no records; write one JSON object per line, "
                        f"each with a 'prompt' (or 'messages')")
    for where, rec in located:
        problem = record_problem(rec)
        if problem:
            raise DataError(f"{spec.name}: {spec.where}: {where} {problem}; fix the record")
    return [rec for _, rec in located]


def read_file(name: str, path: Path) -> list[tuple[str, object]]:
    """``(location, parsed JSON)`` per record of a JSON-lines or JSON-list file."""
    text = read_text(path, name)
    if text.lstrip().startswith("["):
        items = parse_json(name, path, text)
        return [(f"record {i}", rec) for i, rec in enumerate(items)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"line {lineno} (record {len(out)})", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{name}: {path}: line {lineno} is not valid JSON ({e.msg}, column {e.colno})"
                                f"{one_object_hint(text)}; fix the line") from e
    return out


def parse_json(name: str, path: Path, text: str) -> list:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{name}: {path}: {json_problem(e)}; fix the JSON list") from e


def one_object_hint(text: str) -> str:
    """A hint when the whole file is one JSON object spread over lines (not JSON lines)."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return ""
    return " (the file holds one JSON object: write one object per line, or a JSON list)" if whole else ""


def record_problem(rec) -> str | None:
    """What is wrong with one record, or None."""
    if not isinstance(rec, dict):
        return f"is not a JSON object (got {type(rec).__name__})"
    has_prompt, has_messages = rec.get("prompt") is not None, rec.get("messages") is not None
    if has_prompt == has_messages:
        return ("has both 'prompt' and 'messages' (give one of them)" if has_prompt
                else "has neither a 'prompt' nor a 'messages' field")
    if has_prompt and not isinstance(rec["prompt"], str):
        return f"field 'prompt' is not a string (got {type(rec['prompt']).__name__})"
    if has_prompt and not rec["prompt"].strip():
        return "field 'prompt' is empty"
    problem = None if has_prompt else messages_problem(rec["messages"])
    ref = rec.get("reference")
    if problem is None and ref is not None and not isinstance(ref, str):
        problem = f"field 'reference' is not a string (got {type(ref).__name__})"
    return problem


def messages_problem(messages) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "field 'messages' is not a non-empty list of {role, content} turns"
    for j, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            return f"field 'messages' turn {j} is not an object with string 'role' and 'content'"
        if m["role"] not in ROLES:
            return f"field 'messages' turn {j} has role {m['role']!r}; roles are {', '.join(ROLES)}"
    if messages[-1]["role"] != "user":
        return (f"field 'messages' ends with a turn of role {messages[-1]['role']!r}; the conversation must end "
                f"with a user turn (the target answers it)")
    if not messages[-1]["content"].strip():
        return "field 'messages' ends with an empty user turn"
    return None


def load_hub_dataset(dataset: str, config: str | None, split: str):
    """The thin ``datasets`` call of an ``hf:`` domain (tests point it at a local file)."""
    import datasets

    return datasets.load_dataset(dataset, config, split=split)


def read_hub_rows(spec: UserSpec) -> list[tuple[str, dict]]:
    """``(location, record)`` per row of a hub split: ``field`` becomes the prompt."""
    dataset, config, split, field = spec.hub
    try:
        with quiet_datasets():
            ds = load_hub_dataset(dataset, config, split)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"{spec.name}: could not load hub dataset {dataset} ({type(e).__name__}: {first}); "
                        f"the hub may be unreachable: download the data and give a local file, "
                        f"{spec.name}=PATH") from e
    if field not in ds.column_names:
        raise DataError(f"{spec.name}: hub dataset {dataset} split {split} has no column {field!r} (columns: "
                        f"{', '.join(ds.column_names)}); name one as hf:{dataset}:{split}:COLUMN")
    return [(f"row {i}", {**{k: v for k, v in row.items() if k not in (field, "prompt", "messages")},
                          "prompt": row[field]}) for i, row in enumerate(ds)]
