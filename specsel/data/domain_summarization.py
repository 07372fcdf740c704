"""Summarization: CNN/DailyMail news articles (docs/design.md, "Data").

Local files are SumLLM's subsets of CNN/DM: ``sumllm_test100.source`` (100 test
articles, plain text, one per line, no summaries) is evaluated, and
``sumllm_gpt4_train1000.jsonl`` (1,000 train articles with a GPT-4 summary in
``abstract``) trains drafters. The hub copy (``abisee/cnn_dailymail``) holds the
summary in ``highlights``; one record -> query conversion reads either shape.
"""

from __future__ import annotations

from specsel.data.query import Query, user_turn
from specsel.data.registry import Domain, Source

# after the article, so a prompt truncated to its last tokens keeps the instruction
SUMMARIZE_INSTRUCTION = "Summarize the news article above in three sentences."
SUMMARY_FIELDS = ("abstract", "highlights")  # SumLLM's GPT-4 summary; the hub's CNN/DM highlights


def summary_of(rec: dict) -> str:
    """The record's reference summary, or "" when it has none (the local test articles)."""
    return next((rec[f] for f in SUMMARY_FIELDS if rec.get(f)), "")


def summarization_query(rec: dict, i: int, split: str) -> Query:
    text = f"{rec['article'].strip()}\n\n{SUMMARIZE_INSTRUCTION}"
    split_name = "test" if split == "eval" else split
    meta = {"id": rec["id"]} if rec.get("id") else {}
    return Query("summarization", f"summarization/{split_name}/{i}", user_turn(text),
                 summary_of(rec).strip(), meta)


def summarization_text(rec: dict) -> str:
    return f"{rec['article'].strip()}\n\nSummary: {summary_of(rec).strip()}"


def article_check(rec: dict) -> str | None:
    return None if rec["article"].strip() else "field 'article' is empty"


def train_check(rec: dict) -> str | None:
    if not summary_of(rec):
        return f"has no summary (field {' or '.join(map(repr, SUMMARY_FIELDS))})"
    return article_check(rec)


DOMAIN = Domain(
    name="summarization",
    order=5,
    eval=Source("cnn_dailymail/sumllm_test100.source", "abisee/cnn_dailymail", ("3.0.0",), "test",
                ("article",), summarization_query, summarization_text, article_check,
                text_field="article"),
    train=Source("cnn_dailymail/sumllm_gpt4_train1000.jsonl", "abisee/cnn_dailymail", ("3.0.0",),
                 "train", ("article",), summarization_query, summarization_text, train_check),
)
