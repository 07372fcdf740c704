"""PubMedQA (PQA-L): yes/no/maybe questions on PubMed abstracts (docs/design.md, "Data").

``pubmedqa/ori_pqal.json`` holds the 1,000 expert-labelled questions as one JSON object
keyed by PubMed id; ``pubmedqa/test_ground_truth.json`` (next to it) maps the official
500 test ids to their decision. The test ids are evaluated and the other 500 train
drafters, both in the key order of ``ori_pqal.json``. The hub copy
(``qiaojin/PubMedQA``, config ``pqa_labeled``) has no test ids, so this domain needs
``--data-dir``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from specsel.data.query import DataError, Query, user_turn
from specsel.data.reader import read_json
from specsel.data.registry import Domain, Source

GROUND_TRUTH_FILE = "test_ground_truth.json"
DECISIONS = ("yes", "no", "maybe")
PUBMEDQA_INSTRUCTION = "Answer yes, no or maybe, then explain briefly."


@functools.cache
def _test_ids(path: str, stamp: tuple[int, int]) -> frozenset[str]:
    """The PubMed ids of one test_ground_truth.json (``stamp``: mtime and size)."""
    truth = read_json(Path(path), "pubmedqa")
    if not isinstance(truth, dict) or not truth:
        raise DataError(f"pubmedqa: {path}: is not a JSON object mapping PubMed ids to decisions; "
                        f"fix or replace the file")
    return frozenset(truth)


def test_ids(data_file: Path) -> frozenset[str]:
    """The test ids of the ground-truth file next to ``data_file``, read once per file."""
    path = data_file.parent / GROUND_TRUTH_FILE
    st = path.stat()
    return _test_ids(str(path), (st.st_mtime_ns, st.st_size))


def pick(records, data_file: Path, test: bool) -> list[tuple[int, dict]]:
    """The test (or the other) records, in file order."""
    ids = test_ids(data_file)
    pmids = records["pmid"]
    unknown = ids - set(pmids)
    if unknown:
        raise DataError(f"pubmedqa: {data_file.parent / GROUND_TRUTH_FILE}: {len(unknown)} test ids are not "
                        f"keys of {data_file.name}, e.g. {min(unknown)!r}; fix or replace the files")
    keep = [i for i, pmid in enumerate(pmids) if (pmid in ids) == test]
    return list(zip(keep, records.select(keep)))


def eval_split(records, data_file: Path) -> list[tuple[int, dict]]:
    return pick(records, data_file, test=True)


def train_split(records, data_file: Path) -> list[tuple[int, dict]]:
    return pick(records, data_file, test=False)


def pubmedqa_context(rec: dict) -> str:
    """The abstract's sections, one per line, each after its label (``BACKGROUND: ...``)."""
    labels = rec.get("LABELS") or []
    if len(labels) != len(rec["CONTEXTS"]):
        labels = [None] * len(rec["CONTEXTS"])
    return "\n".join(f"{label}: {text.strip()}" if label else text.strip()
                     for label, text in zip(labels, rec["CONTEXTS"]))


def pubmedqa_prompt(rec: dict) -> str:
    return f"{pubmedqa_context(rec)}\n\nQuestion: {rec['QUESTION'].strip()}"


def pubmedqa_query(rec: dict, i: int, split: str) -> Query:
    split_name = "test" if split == "eval" else split
    meta = {"pmid": rec["pmid"], "long_answer": rec["LONG_ANSWER"].strip()}
    text = f"{pubmedqa_prompt(rec)}\n\n{PUBMEDQA_INSTRUCTION}"
    return Query("pubmedqa", f"pubmedqa/{split_name}/{i}", user_turn(text), rec["final_decision"], meta)


def pubmedqa_text(rec: dict) -> str:
    return f"{pubmedqa_prompt(rec)}\n\nAnswer: {rec['final_decision']}. {rec['LONG_ANSWER'].strip()}"


def pubmedqa_check(rec: dict) -> str | None:
    ctx = rec["CONTEXTS"]
    if not isinstance(ctx, list) or not ctx or not all(isinstance(c, str) for c in ctx):
        return "field 'CONTEXTS' is not a non-empty list of strings"
    if rec["final_decision"] not in DECISIONS:
        return f"final_decision {rec['final_decision']!r} is not one of {', '.join(DECISIONS)}"
    return None


def _split_source(select) -> Source:
    return Source("pubmedqa/ori_pqal.json", "qiaojin/PubMedQA", ("pqa_labeled",), "train",
                  ("QUESTION", "CONTEXTS", "final_decision", "LONG_ANSWER"), pubmedqa_query,
                  pubmedqa_text, pubmedqa_check, key_field="pmid", select=select,
                  needs=(GROUND_TRUTH_FILE,))


DOMAIN = Domain(
    name="pubmedqa",
    order=8,
    eval=_split_source(eval_split),
    train=_split_source(train_split),
)
