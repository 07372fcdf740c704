"""Tests for the eval-only alpaca domain, the summarization domain, and the file formats
they brought: JSON-list files and plain-text files with one record per line.

Real-data tests read ../shared/data and are skipped when their folder is absent; the
rest use small fixture files under tmp_path. Nothing here touches the hub.
"""

import json
from pathlib import Path

import pytest

from specsel.data import (
    DOMAINS,
    SUMMARIZE_INSTRUCTION,
    DataError,
    load_domain,
    training_texts,
)
from specsel.data.reader import read_lines
from specsel.data.registry import Domain, domains, source

from conftest import REPO, fake_hub

SHARED_DATA = REPO.parent / "shared" / "data"
ALPACA_FILE = "alpaca/alpaca_eval_text_davinci_003.json"
CNNDM_TEST = "cnn_dailymail/sumllm_test100.source"
CNNDM_TRAIN = "cnn_dailymail/sumllm_gpt4_train1000.jsonl"


def needs(*files: str):
    missing = [f for f in files if not (SHARED_DATA / f).is_file()]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not found under {SHARED_DATA}")


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def alpaca_record(i: int) -> dict:
    return {"instruction": f"Write a haiku about {i}.", "output": f"haiku {i}",
            "generator": "text_davinci_003", "dataset": "selfinstruct"}


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------


def test_new_domains_come_after_the_original_four():
    assert DOMAINS[:4] == ("math", "humaneval", "medqa", "gsm8k")
    assert DOMAINS[4:6] == ("alpaca", "summarization")
    assert domains()["alpaca"].train is None
    assert Domain("toy", 99, domains()["math"].eval).train is None


@pytest.mark.parametrize("call", [
    lambda: load_domain("alpaca", split="train"),
    lambda: training_texts("alpaca"),
    lambda: source("alpaca", "train"),
])
def test_alpaca_has_no_training_split(call):
    with pytest.raises(DataError) as err:
        call()
    assert str(err.value) == "alpaca has no training split; train drafters on another domain"


# --------------------------------------------------------------------------
# real data (../shared/data)
# --------------------------------------------------------------------------


@needs(ALPACA_FILE)
def test_real_alpaca_eval():
    queries = load_domain("alpaca", SHARED_DATA)
    assert len(queries) == 805
    assert len({q.qid for q in queries}) == 805 and queries[0].qid == "alpaca/eval/0"
    assert all(q.domain == "alpaca" and q.user_text.strip() for q in queries)
    assert sum(not q.reference for q in queries) == 2  # text-davinci-003 left records 247 and 504 empty
    assert {q.meta["dataset"] for q in queries} == {"selfinstruct", "oasst", "koala", "helpful_base", "vicuna"}
    assert [q.qid for q in load_domain("alpaca", SHARED_DATA, limit=7)] == [q.qid for q in queries[:7]]


@needs(CNNDM_TEST, CNNDM_TRAIN)
def test_real_summarization_splits():
    eval_q = load_domain("summarization", SHARED_DATA)
    assert len(eval_q) == 100 and eval_q[-1].qid == "summarization/test/99"
    for q in eval_q:
        article, instruction = q.user_text.rsplit("\n\n", 1)
        assert instruction == SUMMARIZE_INSTRUCTION and len(article) > 200 and q.reference == ""
    train_q = load_domain("summarization", SHARED_DATA, split="train", limit=3)
    assert [q.qid for q in train_q] == [f"summarization/train/{i}" for i in range(3)]
    assert all(q.reference for q in train_q)
    texts = training_texts("summarization", SHARED_DATA)
    assert len(texts) == 1000
    assert all(t.split("\n\nSummary: ")[0].strip() and t.split("\n\nSummary: ")[1] for t in texts)
    # SumLLM's test and train articles are disjoint
    eval_articles = {q.user_text.rsplit("\n\n", 1)[0] for q in eval_q}
    assert not eval_articles & {t.split("\n\nSummary: ")[0] for t in texts}


# --------------------------------------------------------------------------
# plain text, one record per line
# --------------------------------------------------------------------------


def test_lines_file_skips_blank_lines(tmp_data):
    write_text(tmp_data / CNNDM_TEST, "First article.\n\n  \nSecond article. \r\nThird.")
    queries = load_domain("summarization", tmp_data)
    assert [q.qid for q in queries] == [f"summarization/test/{i}" for i in range(3)]
    assert queries[1].messages[0]["content"] == f"Second article.\n\n{SUMMARIZE_INSTRUCTION}"
    assert [q.qid for q in load_domain("summarization", tmp_data, limit=2)] == [q.qid for q in queries[:2]]


def test_read_lines_dataset_and_missing_file(tmp_path):
    ds = read_lines(write_text(tmp_path / "a.txt", "x\n\ny\n"), "article", "summarization")
    assert ds.column_names == ["article"] and ds["article"] == ["x", "y"]
    missing = tmp_path / "nope.source"
    with pytest.raises(DataError) as err:
        read_lines(missing, "article", "summarization")
    msg = str(err.value)
    assert str(missing) in msg and "FileNotFoundError" in msg and "\n" not in msg


def test_missing_lines_file_points_at_data_dir_flag(tmp_data):
    with pytest.raises(DataError) as err:
        load_domain("summarization", tmp_data)
    msg = str(err.value)
    assert str(tmp_data / CNNDM_TEST) in msg and "--data-dir" in msg and "abisee/cnn_dailymail" in msg


def test_lines_file_not_utf8_is_one_line(tmp_data):
    path = tmp_data / CNNDM_TEST
    path.parent.mkdir(parents=True)
    path.write_bytes(b"good line\n\xff\xfe bad bytes\n")
    with pytest.raises(DataError) as err:
        load_domain("summarization", tmp_data)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------
# JSON-list files
# --------------------------------------------------------------------------


def test_json_list_file_loads(tmp_data):
    write_text(tmp_data / ALPACA_FILE, json.dumps([alpaca_record(i) for i in range(3)], indent=2))
    queries = load_domain("alpaca", tmp_data)
    assert [q.qid for q in queries] == ["alpaca/eval/0", "alpaca/eval/1", "alpaca/eval/2"]
    assert queries[2].messages == [{"role": "user", "content": "Write a haiku about 2."}]
    assert queries[2].reference == "haiku 2" and queries[2].meta["dataset"] == "selfinstruct"


def test_malformed_json_list_names_file_and_line(tmp_data):
    path = write_text(tmp_data / ALPACA_FILE,
                      '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]\n')
    with pytest.raises(DataError) as err:
        load_domain("alpaca", tmp_data)
    msg = str(err.value)
    assert str(path) in msg and "line 3" in msg and "not valid JSON" in msg and "\n" not in msg


def test_json_list_item_not_an_object(tmp_data):
    path = write_text(tmp_data / ALPACA_FILE, json.dumps([alpaca_record(0), "just text"]))
    with pytest.raises(DataError) as err:
        load_domain("alpaca", tmp_data)
    msg = str(err.value)
    assert str(path) in msg and "item 1" in msg and "\n" not in msg


def test_json_list_missing_field_names_record(tmp_data):
    records = [alpaca_record(i) for i in range(3)]
    records[1]["instruction"] = "  "
    path = write_text(tmp_data / ALPACA_FILE, json.dumps(records, indent=2))
    with pytest.raises(DataError) as err:
        load_domain("alpaca", tmp_data)
    msg = str(err.value)
    assert str(path) in msg and "record 1 field 'instruction' is empty" in msg and "(line" not in msg


# --------------------------------------------------------------------------
# summarization records: local and hub shapes
# --------------------------------------------------------------------------


def test_local_and_hub_records_share_one_conversion():
    src = domains()["summarization"]
    hub = {"article": "Some news. ", "highlights": "A summary.", "id": "abc123"}
    local_train = {"article": "Some news.", "abstract": "A summary."}
    local_test = {"article": "Some news."}
    for split, rec in (("eval", hub), ("train", local_train)):
        q = src.source(split).to_query(rec, 4, split)
        assert q.messages[0]["content"] == f"Some news.\n\n{SUMMARIZE_INSTRUCTION}"
        assert q.reference == "A summary."
    assert src.eval.to_query(hub, 4, "eval").qid == "summarization/test/4"
    assert src.eval.to_query(hub, 4, "eval").meta == {"id": "abc123"}
    assert src.eval.to_query(local_test, 0, "eval").reference == ""
    assert src.train.to_text(hub) == src.train.to_text(local_train) == "Some news.\n\nSummary: A summary."


def test_train_record_without_summary_is_reported(tmp_data):
    lines = [json.dumps({"article": "News.", "abstract": "Sum."}), json.dumps({"article": "News."})]
    path = write_text(tmp_data / CNNDM_TRAIN, "\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        training_texts("summarization", tmp_data)
    msg = str(err.value)
    assert str(path) in msg and "record 1 (line 2)" in msg and "'abstract' or 'highlights'" in msg


@pytest.mark.parametrize("domain,split,call,record", [
    ("summarization", "eval", ("abisee/cnn_dailymail", "3.0.0", "test"),
     {"article": "Hub news.", "highlights": "Hub summary.", "id": "x"}),
    ("summarization", "train", ("abisee/cnn_dailymail", "3.0.0", "train"),
     {"article": "Hub news.", "highlights": "Hub summary.", "id": "x"}),
    ("alpaca", "eval", ("tatsu-lab/alpaca_eval", "alpaca_eval", "eval"), alpaca_record(0)),
])
def test_hub_path_uses_standard_ids(monkeypatch, domain, split, call, record):
    calls = fake_hub(monkeypatch, [record] * 3)
    queries = load_domain(domain, split=split, limit=2)
    assert calls == [call] and len(queries) == 2 and queries[0].reference
