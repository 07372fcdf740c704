"""AlpacaEval: 805 open-ended instructions, evaluated only (docs/design.md, "Data").

There is no Alpaca training split here (the 52K Alpaca set is not part of the local
data), so ``split="train"`` raises :class:`~specsel.data.query.DataError`: train
drafters for instruction following on another domain. The local file is the AlpacaEval
repository's ``text_davinci_003`` outputs, one JSON list; the instruction is the prompt
as it is, and the reference is text-davinci-003's answer.
"""

from __future__ import annotations

from specsel.data.query import Query, user_turn
from specsel.data.registry import Domain, Source


def alpaca_query(rec: dict, i: int, split: str) -> Query:
    meta = {k: rec[k] for k in ("dataset", "generator") if rec.get(k) is not None}
    return Query("alpaca", f"alpaca/{split}/{i}", user_turn(rec["instruction"]),
                 rec.get("output") or "", meta)


def alpaca_check(rec: dict) -> str | None:
    return None if rec["instruction"].strip() else "field 'instruction' is empty"


DOMAIN = Domain(
    name="alpaca",
    order=4,
    eval=Source("alpaca/alpaca_eval_text_davinci_003.json", "tatsu-lab/alpaca_eval", ("alpaca_eval",),
                "eval", ("instruction",), alpaca_query, check=alpaca_check),
)
