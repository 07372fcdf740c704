"""The query record every loader returns, the one error type of the data layer, and the
small text helpers the domain modules share (docs/design.md, "Data")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DataError(ValueError):
    """A data set is missing, malformed or asked for with bad arguments."""


@dataclass
class Query:
    """One prompt of a domain benchmark.

    ``messages`` is a chat conversation (a single user turn) ready for a chat
    template; ``reference`` is the gold answer as a string (boxed answer for
    MATH, final number for GSM8K, option letter for MedQA, reference code for
    HumanEval/MBPP, text-davinci-003's answer for AlpacaEval and Code Alpaca, the
    summary or "" for summarization, the gold SQL for Spider, yes/no/maybe for
    PubMedQA); ``meta`` holds everything else a scorer may need.
    """

    domain: str
    qid: str
    messages: list[dict[str, str]]
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def user_text(self) -> str:
        """The text of the user turn(s), used when a tokenizer has no chat template."""
        return "\n\n".join(m["content"] for m in self.messages if m["role"] == "user")


def user_turn(text: str) -> list[dict[str, str]]:
    """A conversation of one user turn holding ``text``."""
    return [{"role": "user", "content": text}]


def unix_newlines(text: str) -> str:
    """Normalise Windows line endings (MBPP code uses CRLF)."""
    return text.replace("\r\n", "\n")
