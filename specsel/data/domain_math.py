"""MATH: MATH-500 is evaluated, the 7,500-problem MATH train split trains drafters
(docs/design.md, "Data"). The two come from different MATH splits, so they never overlap."""

from __future__ import annotations

from specsel.data.query import Query, user_turn
from specsel.data.registry import Domain, Source

MATH_INSTRUCTION = (
    "Solve the following math problem. Reason step by step, "
    "then put the final answer in \\boxed{}."
)

# the hub copy of MATH train has one config per subject, concatenated in this order
TRAIN_CONFIGS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                 "number_theory", "prealgebra", "precalculus")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def math_query(rec: dict, i: int, split: str) -> Query:
    # MATH-500 records carry `unique_id` ("test/precalculus/807.json"); the local
    # train file carries `source_file` ("train/algebra/0.json"); the hub train
    # configs carry neither, so fall back to the record index.
    key = rec.get("unique_id") or rec.get("source_file") or f"{split}/{i}"
    solution = rec.get("solution") or ""
    reference = rec.get("answer") or last_boxed(solution) or ""
    meta = {k: rec[k] for k in ("subject", "type", "level") if rec.get(k) is not None}
    meta["solution"] = solution
    return Query("math", f"math/{key}", user_turn(f"{MATH_INSTRUCTION}\n\n{rec['problem']}"),
                 str(reference), meta)


def math_text(rec: dict) -> str:
    return f"{rec['problem']}\n\n{rec['solution']}"


DOMAIN = Domain(
    name="math",
    order=0,
    eval=Source("math/test.jsonl", "HuggingFaceH4/MATH-500", (None,), "test",
                ("problem", "answer"), math_query, math_text),
    train=Source("math/train_full.jsonl", "EleutherAI/hendrycks_math", TRAIN_CONFIGS, "train",
                 ("problem", "solution"), math_query, math_text),
)
