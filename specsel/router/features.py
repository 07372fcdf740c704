"""What the router sees of a query: its user text, hashed word n-grams and a few shape counts.

The n-grams go through a :class:`~sklearn.feature_extraction.text.HashingVectorizer`, which is
stateless: the same text always hashes to the same columns, so nothing of it is fitted or saved.
The shape counts (:func:`shape_features`) are a short, named list of markers that tell code, math,
SQL, multiple-choice and prose apart; they are standardised by a fitted ``StandardScaler``.
The only fitted state of :func:`build_pipeline` is that scaler and the logistic regression.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

import numpy as np
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

# markers counted in the text, each reported as log1p(count)
_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("code_def", re.compile(re.escape("def "))),
    ("code_return", re.compile(re.escape("return"))),
    ("code_import", re.compile(re.escape("import "))),
    ("code_fence", re.compile(re.escape("```"))),
    ("code_punct", re.compile(r"[{;]")),
    ("math_dollar", re.compile(re.escape("$"))),
    ("math_backslash", re.compile(re.escape("\\"))),
    ("math_caret", re.compile(re.escape("^"))),
    ("math_equals", re.compile(re.escape("="))),
    ("sql", re.compile(r"\bselect\b|\bcreate\s+table\b", re.IGNORECASE)),
    ("question", re.compile(re.escape("?"))),
    ("choices", re.compile(r"^[ \t]*\(?[A-E][.)]", re.MULTILINE)),   # option lines "A." "B)" "(C)"
)

SHAPE_FEATURES: tuple[str, ...] = ("log_chars", "log_lines", "digit_frac", "symbol_frac") + tuple(
    name for name, _ in _MARKERS)


def query_text(messages: str | list[dict[str, Any]]) -> str:
    """The text the router reads: a str as is, or a chat's user turns joined by a blank line.

    A turn's ``content`` may be a str or a list of parts (``{"type": "text", "text": ...}``);
    only the text parts count. A chat without user turns gives "".
    """
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, (list, tuple)) or not all(isinstance(m, dict) for m in messages):
        raise ValueError(f"query_text: expected a str or a list of {{role, content}} dicts, got "
                         f"{type(messages).__name__}")
    return "\n\n".join(_content_text(m.get("content", "")) for m in messages if m.get("role") == "user")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):   # multimodal parts: keep the text ones
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise ValueError(f"query_text: a message's content must be a str or a list of parts, got "
                     f"{type(content).__name__}")


def _shape_row(text: str) -> list[float]:
    n = len(text)
    lines = text.count("\n") + 1 if text else 0
    digits = sum(c.isdigit() for c in text)
    symbols = sum(not c.isalnum() and not c.isspace() for c in text)
    row = [np.log1p(n), np.log1p(lines), digits / max(n, 1), symbols / max(n, 1)]
    row += [np.log1p(len(pattern.findall(text))) for _, pattern in _MARKERS]
    return row


def shape_features(texts: Iterable[str]) -> np.ndarray:
    """``[n, len(SHAPE_FEATURES)]`` float64: lengths (log1p), digit and symbol fractions, and
    log1p counts of code, math, SQL, question and multiple-choice markers, in
    :data:`SHAPE_FEATURES` order."""
    rows = [_shape_row(t) for t in texts]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(SHAPE_FEATURES))


def build_pipeline(C: float = 1.0, n_features: int = 2 ** 14, seed: int = 0) -> Pipeline:
    """The router's classifier, unfitted: hashed uni- and bigrams of the text next to the
    standardised shape features, into a multinomial logistic regression.

    Step names (``features`` > ``words`` / ``shape`` > ``scale``, then ``clf``) are what
    :mod:`specsel.router.model` assigns fitted state to when it loads a router.
    """
    words = HashingVectorizer(n_features=n_features, ngram_range=(1, 2), alternate_sign=False,
                              norm="l2", lowercase=True)
    shape = Pipeline([("count", FunctionTransformer(shape_features)), ("scale", StandardScaler())])
    features = FeatureUnion([("words", words), ("shape", shape)])
    clf = LogisticRegression(C=C, max_iter=2000, random_state=seed)
    return Pipeline([("features", features), ("clf", clf)])
