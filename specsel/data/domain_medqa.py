"""MedQA (USMLE, 4 options): the one file is cut in two, ``test[:300]`` evaluated and
``test[300:]`` training drafters (docs/design.md, "Data")."""

from __future__ import annotations

from specsel.data.query import Query, user_turn
from specsel.data.registry import Domain, Source

MEDQA_EVAL_SIZE = 300  # MedQA test[:300] is evaluated; test[300:] trains drafters

MEDQA_INSTRUCTION = (
    "Answer with the letter of the correct option, followed by a short explanation."
)


def medqa_options(rec: dict) -> dict[str, str]:
    """Options as {letter: text}; accepts a dict or a list of {key, value} pairs."""
    opts = rec["options"]
    if isinstance(opts, list):
        opts = {o["key"]: o["value"] for o in opts}
    return {k: opts[k] for k in sorted(opts) if opts[k] is not None}


def medqa_prompt(rec: dict) -> str:
    lines = "\n".join(f"{k}. {v}" for k, v in medqa_options(rec).items())
    return f"{rec['question']}\n\n{lines}"


def medqa_query(rec: dict, i: int, split: str) -> Query:
    opts = medqa_options(rec)
    meta = {"options": opts, "answer": rec.get("answer") or opts.get(rec["answer_idx"]),
            "meta_info": rec.get("meta_info")}
    text = f"{medqa_prompt(rec)}\n\n{MEDQA_INSTRUCTION}"
    return Query("medqa", f"medqa/test/{i}", user_turn(text), rec["answer_idx"], meta)


def medqa_text(rec: dict) -> str:
    letter = rec["answer_idx"]
    return f"{medqa_prompt(rec)}\n\nAnswer: {letter}. {medqa_options(rec)[letter]}"


def medqa_check(rec: dict) -> str | None:
    opts = rec["options"]
    if not isinstance(opts, (dict, list)) or not opts:
        return "field 'options' is not a non-empty mapping"
    if rec["answer_idx"] not in medqa_options(rec):
        return f"answer_idx {rec['answer_idx']!r} is not one of the options"
    return None


def _split_source(start: int = 0, stop: int | None = None) -> Source:
    return Source("medqa/test.jsonl", "GBaker/MedQA-USMLE-4-options", (None,), "test",
                  ("question", "options", "answer_idx"), medqa_query, medqa_text, medqa_check,
                  start=start, stop=stop)


DOMAIN = Domain(
    name="medqa",
    order=2,
    eval=_split_source(stop=MEDQA_EVAL_SIZE),
    train=_split_source(start=MEDQA_EVAL_SIZE),
)
