"""Code instructions: Code Alpaca 2K, programming tasks in many languages
(docs/design.md, "Data").

The one local file ``code_alpaca/code_alpaca_2k.json`` (2,017 records, a JSON list) is
cut in two: the first 300 instructions are evaluated, the rest train drafters. The
reference is Code Alpaca's (text-davinci-003) answer. The hub id
``sahil280114/codealpaca`` holds the 20K set, not the 2K one, so a hub load gives the
same cut of a different file: pass ``--data-dir`` for the 2K split.
"""

from __future__ import annotations

from specsel.data.query import Query, user_turn
from specsel.data.registry import Domain, Source

CODE_INSTRUCT_EVAL_SIZE = 300  # code_alpaca_2k[:300] is evaluated; the rest trains drafters


def code_instruct_prompt(rec: dict) -> str:
    """The instruction, then its input (if any) after a blank line."""
    extra = (rec.get("input") or "").strip()
    return rec["instruction"].strip() + (f"\n\n{extra}" if extra else "")


def code_instruct_query(rec: dict, i: int, split: str) -> Query:
    return Query("code_instruct", f"code_instruct/{split}/{i}", user_turn(code_instruct_prompt(rec)),
                 rec["output"].strip())


def code_instruct_text(rec: dict) -> str:
    return f"{code_instruct_prompt(rec)}\n\n{rec['output'].strip()}"


def code_instruct_check(rec: dict) -> str | None:
    return None if rec["instruction"].strip() else "field 'instruction' is empty"


def _split_source(start: int = 0, stop: int | None = None) -> Source:
    return Source("code_alpaca/code_alpaca_2k.json", "sahil280114/codealpaca", (None,), "train",
                  ("instruction", "output"), code_instruct_query, code_instruct_text,
                  code_instruct_check, start=start, stop=stop)


DOMAIN = Domain(
    name="code_instruct",
    order=7,
    eval=_split_source(stop=CODE_INSTRUCT_EVAL_SIZE),
    train=_split_source(start=CODE_INSTRUCT_EVAL_SIZE),
)
