"""SQL: text-to-SQL on Spider dev, the question posed with its database's schema
(docs/design.md, "Data").

Spider's train set is not part of the local data, so ``spider/dev.json`` is cut in two:
its first 300 questions are evaluated, and the later questions train drafters, but only
those on databases that none of the 300 uses, so no drafter sees an evaluated
database. The schemas come from ``spider/tables.json``, next to ``dev.json``. The hub
copy (``xlangai/spider``, split ``validation``) has no schemas, so this domain needs
``--data-dir``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Sequence

from specsel.data.query import DataError, Query, user_turn
from specsel.data.reader import read_json
from specsel.data.registry import Domain, Source

SQL_EVAL_SIZE = 300  # dev.json[:300] is evaluated; later questions on other databases train drafters
TABLES_FILE = "tables.json"
SQL_INSTRUCTION = "Write one SQLite query that answers the question. Answer with the SQL only."
TABLE_FIELDS = ("db_id", "table_names_original", "column_names_original", "column_types",
                "primary_keys", "foreign_keys")


def quote(name: str) -> str:
    """A table or column name as SQL text, double-quoted when it is not a plain word."""
    return name if re.fullmatch(r"\w+", name) else '"' + name.replace('"', '""') + '"'


def column(db: dict, c: int) -> str:
    return quote(db["column_names_original"][c][1])


def create_table(db: dict, t: int) -> str:
    """Table ``t`` of a Spider schema as a one-line ``CREATE TABLE`` statement. Columns are
    indices into ``column_names_original`` ([table index, name] pairs; entry 0 is (-1, "*"))."""
    mine = [c for c, (table, _) in enumerate(db["column_names_original"]) if table == t]
    parts = [f"{column(db, c)} {db['column_types'][c]}" for c in mine]
    keys = [column(db, c) for c in db["primary_keys"] if c in mine]
    if keys:
        parts.append(f"PRIMARY KEY ({', '.join(keys)})")
    for c, ref in db["foreign_keys"]:
        if c in mine:
            ref_table = quote(db["table_names_original"][db["column_names_original"][ref][0]])
            parts.append(f"FOREIGN KEY ({column(db, c)}) REFERENCES {ref_table}({column(db, ref)})")
    return f"CREATE TABLE {quote(db['table_names_original'][t])} ({', '.join(parts)});"


def schema_text(db: dict) -> str:
    return "\n".join(create_table(db, t) for t in range(len(db["table_names_original"])))


@functools.cache
def _schemas(path: str, stamp: tuple[int, int]) -> dict[str, str]:
    """db_id -> schema text for every database of one tables.json (``stamp``: mtime and size,
    so an edited file is read again)."""
    dbs = read_json(Path(path), "sql")
    if not isinstance(dbs, list):
        raise DataError(f"sql: {path}: is not a JSON list of database schemas; fix or replace the file")
    out = {}
    for k, db in enumerate(dbs):
        missing = next((f for f in TABLE_FIELDS if not isinstance(db, dict) or db.get(f) is None), None)
        if missing:
            raise DataError(f"sql: {path}: schema {k} is missing field '{missing}'; fix or replace the file")
        try:
            out[db["db_id"]] = schema_text(db)
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise DataError(f"sql: {path}: schema {k} ({db['db_id']}) is malformed "
                            f"({type(e).__name__}: {e}); fix or replace the file") from e
    return out


def schemas(data_file: Path) -> dict[str, str]:
    """The schemas of the ``tables.json`` next to ``data_file``, read once per file."""
    path = data_file.parent / TABLES_FILE
    st = path.stat()
    return _schemas(str(path), (st.st_mtime_ns, st.st_size))


def with_schemas(records, indices: Sequence[int], data_file: Path) -> list[tuple[int, dict]]:
    """``(index, record)`` pairs for ``indices``, each record given the field ``schema``
    (None when tables.json lacks its database; ``sql_check`` reports that)."""
    table = schemas(data_file)
    return [(i, dict(rec, schema=table.get(rec.get("db_id"))))
            for i, rec in zip(indices, records.select(indices))]


def eval_split(records, data_file: Path) -> list[tuple[int, dict]]:
    return with_schemas(records, range(min(SQL_EVAL_SIZE, len(records))), data_file)


def train_split(records, data_file: Path) -> list[tuple[int, dict]]:
    # split by database: a later question whose db_id the eval part uses is dropped
    db_ids = records["db_id"] if "db_id" in records.column_names else [None] * len(records)
    eval_dbs = set(db_ids[:SQL_EVAL_SIZE])
    keep = [i for i in range(SQL_EVAL_SIZE, len(db_ids)) if db_ids[i] not in eval_dbs]
    return with_schemas(records, keep, data_file)


def sql_prompt(rec: dict) -> str:
    return f"Database schema:\n{rec['schema']}\n\nQuestion: {rec['question'].strip()}"


def sql_query(rec: dict, i: int, split: str) -> Query:
    text = f"{sql_prompt(rec)}\n\n{SQL_INSTRUCTION}"
    return Query("sql", f"sql/dev/{i}", user_turn(text), rec["query"].strip(), {"db_id": rec["db_id"]})


def sql_text(rec: dict) -> str:
    return f"{sql_prompt(rec)}\n\nSQL: {rec['query'].strip()}"


def sql_check(rec: dict) -> str | None:
    if rec.get("schema") is None:
        return f"has db_id {rec['db_id']!r}, which {TABLES_FILE} does not describe"
    return None if rec["question"].strip() else "field 'question' is empty"


def _split_source(select) -> Source:
    return Source("spider/dev.json", "xlangai/spider", (None,), "validation", ("db_id", "question", "query"),
                  sql_query, sql_text, sql_check, select=select, needs=(TABLES_FILE,))


DOMAIN = Domain(
    name="sql",
    order=6,
    eval=_split_source(eval_split),
    train=_split_source(train_split),
)
