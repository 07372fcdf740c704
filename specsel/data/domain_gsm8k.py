"""GSM8K: the test split is evaluated, the train split trains drafters
(docs/design.md, "Data"). The gold answer is the number after ``#### ``."""

from __future__ import annotations

from specsel.data.query import Query, user_turn
from specsel.data.registry import Domain, Source

GSM8K_INSTRUCTION = "Reason step by step, then put the final answer in \\boxed{}."


def gsm8k_final(answer: str) -> str:
    """The gold number after GSM8K's ``#### `` marker, thousands separators removed."""
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def gsm8k_query(rec: dict, i: int, split: str) -> Query:
    text = f"{rec['question']}\n\n{GSM8K_INSTRUCTION}"
    split_name = "test" if split == "eval" else split
    return Query("gsm8k", f"gsm8k/{split_name}/{i}", user_turn(text), gsm8k_final(rec["answer"]),
                 {"solution": rec["answer"]})


def gsm8k_text(rec: dict) -> str:
    return f"{rec['question']}\n\n{rec['answer']}"


def gsm8k_check(rec: dict) -> str | None:
    return None if "####" in rec["answer"] else "field 'answer' has no '#### <number>' line"


def _split_source(local: str, hub_split: str) -> Source:
    return Source(local, "openai/gsm8k", ("main",), hub_split, ("question", "answer"),
                  gsm8k_query, gsm8k_text, gsm8k_check)


DOMAIN = Domain(
    name="gsm8k",
    order=3,
    eval=_split_source("gsm8k/test.jsonl", "test"),
    train=_split_source("gsm8k/train.jsonl", "train"),
)
