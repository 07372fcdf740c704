"""Tests for the sql (Spider dev + schemas), code_instruct (Code Alpaca 2K) and pubmedqa
(PubMedQA PQA-L) domains, and what they brought to the loader: splits chosen by a rule
(``Source.select``), files read beside the data file (``Source.needs``) and JSON objects
keyed by id (``Source.key_field``).

Fixture files are written under tmp_path in the shared-data layout; one test reads the
real ../shared/data and is skipped when it is absent. Nothing here touches the hub.
"""

import json
from pathlib import Path

import pytest

from specsel.data import DOMAINS, load_domain, training_texts
from specsel.data.domain_pubmedqa import PUBMEDQA_INSTRUCTION
from specsel.data.domain_sql import SQL_INSTRUCTION

from conftest import REPO, fake_hub, one_line_error

SHARED_DATA = REPO.parent / "shared" / "data"
SPIDER_DEV, SPIDER_TABLES = "spider/dev.json", "spider/tables.json"
CODE_ALPACA = "code_alpaca/code_alpaca_2k.json"
PQAL, PQA_TRUTH = "pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return path


def test_new_domains_come_last_in_order():
    assert DOMAINS[6:] == ("sql", "code_instruct", "pubmedqa")


def test_hub_is_refused_before_any_download(monkeypatch):
    import datasets

    def no_hub(*a, **kw):
        raise AssertionError("the hub must not be asked")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    msg = one_line_error(lambda: load_domain("sql"))
    assert "xlangai/spider" in msg and "tables.json" in msg and "--data-dir" in msg
    msg = one_line_error(lambda: training_texts("pubmedqa"))
    assert "qiaojin/PubMedQA" in msg and "pubmedqa/test_ground_truth.json" in msg


# --------------------------------------------------------------------------
# sql: Spider dev, split by database
# --------------------------------------------------------------------------


def spider_tables() -> list[dict]:
    """Three small databases; "shop" has a foreign key and a column name with a space."""
    shop = {"db_id": "shop", "table_names_original": ["item", "sale"],
            "column_names_original": [[-1, "*"], [0, "item_id"], [0, "name"], [1, "sale_id"],
                                      [1, "item_id"], [1, "Sold At"]],
            "column_types": ["text", "number", "text", "number", "number", "time"],
            "primary_keys": [1, 3], "foreign_keys": [[4, 1]]}

    def simple(db_id: str) -> dict:
        return {"db_id": db_id, "table_names_original": ["t"], "column_names_original": [[-1, "*"], [0, "x"]],
                "column_types": ["text", "number"], "primary_keys": [], "foreign_keys": []}

    return [shop, simple("zoo"), simple("farm"), simple("bank")]


def spider_record(i: int, db_id: str) -> dict:
    return {"db_id": db_id, "question": f"How many things {i}?", "query": f"SELECT {i} FROM t",
            "query_toks": ["SELECT"], "sql": {"select": [False, [[0, [0, [0, 0, False], None]]]]}}


def write_spider(root: Path, later=("zoo", "farm", "shop", "bank", "farm", "zoo"), tables=True) -> None:
    # the 300 evaluated questions use "shop" and "zoo"; the later ones any database
    recs = [spider_record(i, ("shop", "zoo")[i % 2]) for i in range(300)]
    recs += [spider_record(300 + k, db) for k, db in enumerate(later)]
    write_json(root / SPIDER_DEV, recs)
    if tables:
        write_json(root / SPIDER_TABLES, spider_tables())


def test_sql_splits_by_database(tmp_data):
    write_spider(tmp_data)
    eval_q = load_domain("sql", tmp_data)
    train_q = load_domain("sql", tmp_data, split="train")
    assert [q.qid for q in eval_q] == [f"sql/dev/{i}" for i in range(300)]
    # later questions on shop or zoo (evaluated databases) are left out of training
    assert [q.qid for q in train_q] == ["sql/dev/301", "sql/dev/303", "sql/dev/304"]
    assert [q.meta["db_id"] for q in train_q] == ["farm", "bank", "farm"]
    assert not {q.meta["db_id"] for q in eval_q} & {q.meta["db_id"] for q in train_q}
    assert eval_q[4].reference == "SELECT 4 FROM t" and eval_q[4].domain == "sql"


def test_sql_prompt_holds_schema_question_and_instruction(tmp_data):
    write_spider(tmp_data)
    text = load_domain("sql", tmp_data, limit=1)[0].messages[0]["content"]
    assert text == (
        "Database schema:\n"
        "CREATE TABLE item (item_id number, name text, PRIMARY KEY (item_id));\n"
        'CREATE TABLE sale (sale_id number, item_id number, "Sold At" time, PRIMARY KEY (sale_id), '
        "FOREIGN KEY (item_id) REFERENCES item(item_id));\n\n"
        f"Question: How many things 0?\n\n{SQL_INSTRUCTION}")


def test_sql_limit_and_training_texts(tmp_data):
    write_spider(tmp_data)
    assert [q.qid for q in load_domain("sql", tmp_data, limit=2)] == ["sql/dev/0", "sql/dev/1"]
    assert [q.qid for q in load_domain("sql", tmp_data, split="train", limit=2)] == ["sql/dev/301", "sql/dev/303"]
    assert load_domain("sql", tmp_data, split="train", limit=0) == []
    texts = training_texts("sql", tmp_data)
    assert len(texts) == 3
    assert texts[1] == ("Database schema:\nCREATE TABLE t (x number);\n\n"
                        "Question: How many things 303?\n\nSQL: SELECT 303 FROM t")


def test_sql_missing_tables_file(tmp_data):
    write_spider(tmp_data, tables=False)
    msg = one_line_error(lambda: load_domain("sql", tmp_data))
    assert str(tmp_data / SPIDER_TABLES) in msg and "--data-dir" in msg and SPIDER_DEV in msg
    assert "hub" not in msg  # the hub copy would not help


def test_sql_missing_dev_file_does_not_suggest_the_hub(tmp_data):
    msg = one_line_error(lambda: load_domain("sql", tmp_data, split="train"))
    assert str(tmp_data / SPIDER_DEV) in msg and "omit --data-dir" not in msg


def test_sql_malformed_records_are_named(tmp_data):
    write_spider(tmp_data)
    path = tmp_data / SPIDER_DEV
    recs = json.loads(path.read_text())
    del recs[2]["question"]
    write_json(path, recs)
    msg = one_line_error(lambda: load_domain("sql", tmp_data))
    assert str(path) in msg and "record 2 is missing field 'question'" in msg
    recs[2]["question"], recs[304]["db_id"] = "Fine?", "nowhere"
    write_json(path, recs)
    msg = one_line_error(lambda: load_domain("sql", tmp_data, split="train"))
    assert "record 304 has db_id 'nowhere', which tables.json does not describe" in msg


def test_sql_malformed_tables_file(tmp_data):
    write_spider(tmp_data)
    tables = spider_tables()
    del tables[1]["column_types"]
    path = write_json(tmp_data / SPIDER_TABLES, tables)
    msg = one_line_error(lambda: load_domain("sql", tmp_data))
    assert str(path) in msg and "schema 1 is missing field 'column_types'" in msg
    path.write_text('[{"db_id": "shop",}]', encoding="utf-8")
    msg = one_line_error(lambda: load_domain("sql", tmp_data))
    assert str(path) in msg and "line 1 is not valid JSON" in msg
    write_json(path, spider_tables())  # fixed in place: read again, not the cached error
    assert len(load_domain("sql", tmp_data, limit=1)) == 1


# --------------------------------------------------------------------------
# code_instruct: Code Alpaca 2K
# --------------------------------------------------------------------------


def code_record(i: int) -> dict:
    return {"instruction": f"Write code number {i}.", "input": f"x = {i}" if i % 2 else "",
            "output": f"print({i})"}


def test_code_instruct_split_prompt_and_texts(tmp_data):
    write_json(tmp_data / CODE_ALPACA, [code_record(i) for i in range(304)])
    eval_q = load_domain("code_instruct", tmp_data)
    train_q = load_domain("code_instruct", tmp_data, split="train")
    assert len(eval_q) == 300 and eval_q[-1].qid == "code_instruct/eval/299"
    assert [q.qid for q in train_q] == [f"code_instruct/train/{i}" for i in range(300, 304)]
    assert eval_q[0].messages[0]["content"] == "Write code number 0."  # no input: the instruction only
    assert eval_q[1].messages[0]["content"] == "Write code number 1.\n\nx = 1"
    assert eval_q[1].reference == "print(1)"
    assert [q.qid for q in load_domain("code_instruct", tmp_data, split="train", limit=1)] == [
        "code_instruct/train/300"]
    assert training_texts("code_instruct", tmp_data, limit=2) == [
        "Write code number 300.\n\nprint(300)", "Write code number 301.\n\nx = 301\n\nprint(301)"]


def test_code_instruct_malformed_record(tmp_data):
    recs = [code_record(i) for i in range(3)]
    recs[1]["output"] = None
    path = write_json(tmp_data / CODE_ALPACA, recs)
    msg = one_line_error(lambda: load_domain("code_instruct", tmp_data))
    assert str(path) in msg and "record 1 is missing field 'output'" in msg


def test_code_instruct_hub_id(monkeypatch):
    calls = fake_hub(monkeypatch, [code_record(i) for i in range(302)])
    queries = load_domain("code_instruct", split="train")
    assert calls == [("sahil280114/codealpaca", None, "train")] and len(queries) == 2


# --------------------------------------------------------------------------
# pubmedqa: PQA-L, split by the ground-truth test ids
# --------------------------------------------------------------------------


PMIDS = ["901", "17", "2044", "35", "7", "800", "61", "5"]  # not sorted: the file's key order rules
TEST_PMIDS = ["35", "901", "5", "800"]


def pqa_record(k: int) -> dict:
    return {"QUESTION": f"Does treatment {k} work?", "CONTEXTS": [f"Aim {k}. ", f"Result {k}."],
            "LABELS": ["BACKGROUND", "RESULTS"], "MESHES": ["Humans"], "YEAR": "2011",
            "final_decision": ("yes", "no", "maybe")[k % 3], "LONG_ANSWER": f"It does ({k})."}


def write_pubmedqa(root: Path, truth=True) -> None:
    recs = {pmid: pqa_record(k) for k, pmid in enumerate(PMIDS)}
    del recs["901"]["LABELS"]  # the first record lacks a field the others have
    write_json(root / PQAL, recs)
    if truth:
        write_json(root / PQA_TRUTH, {pmid: recs[pmid]["final_decision"] for pmid in TEST_PMIDS})


def test_pubmedqa_split_by_ground_truth_ids(tmp_data):
    write_pubmedqa(tmp_data)
    eval_q = load_domain("pubmedqa", tmp_data)
    train_q = load_domain("pubmedqa", tmp_data, split="train")
    assert [q.meta["pmid"] for q in eval_q] == ["901", "35", "800", "5"]  # file order
    assert {q.meta["pmid"] for q in eval_q} == set(TEST_PMIDS)
    assert [q.meta["pmid"] for q in train_q] == ["17", "2044", "7", "61"]
    assert [q.qid for q in eval_q] == ["pubmedqa/test/0", "pubmedqa/test/3", "pubmedqa/test/5", "pubmedqa/test/7"]
    assert train_q[0].qid == "pubmedqa/train/1"
    assert [q.reference for q in eval_q] == ["yes", "yes", "maybe", "no"]
    assert eval_q[1].meta["long_answer"] == "It does (3)."


def test_pubmedqa_prompt_limit_and_texts(tmp_data):
    write_pubmedqa(tmp_data)
    first, second = load_domain("pubmedqa", tmp_data, limit=2)
    assert second.messages[0]["content"] == (
        "BACKGROUND: Aim 3.\nRESULTS: Result 3.\n\nQuestion: Does treatment 3 work?\n\n"
        f"{PUBMEDQA_INSTRUCTION}")
    assert first.messages[0]["content"].startswith("Aim 0.\nResult 0.\n\n")  # no LABELS: no labels
    assert training_texts("pubmedqa", tmp_data, limit=1) == [
        "BACKGROUND: Aim 1.\nRESULTS: Result 1.\n\nQuestion: Does treatment 1 work?\n\nAnswer: no. It does (1)."]


def test_pubmedqa_missing_ground_truth(tmp_data):
    write_pubmedqa(tmp_data, truth=False)
    msg = one_line_error(lambda: load_domain("pubmedqa", tmp_data, split="train"))
    assert str(tmp_data / PQA_TRUTH) in msg and "--data-dir" in msg


def test_pubmedqa_malformed_record_is_named_by_key(tmp_data):
    write_pubmedqa(tmp_data)
    path = tmp_data / PQAL
    recs = json.loads(path.read_text())
    recs["800"]["final_decision"] = "perhaps"
    write_json(path, recs)
    msg = one_line_error(lambda: load_domain("pubmedqa", tmp_data))
    assert str(path) in msg and "record 5 (pmid '800') final_decision 'perhaps'" in msg
    recs["800"]["final_decision"], recs["17"]["CONTEXTS"] = "no", []
    write_json(path, recs)
    msg = one_line_error(lambda: load_domain("pubmedqa", tmp_data, split="train"))
    assert "record 1 (pmid '17') field 'CONTEXTS' is not a non-empty list" in msg


@pytest.mark.parametrize("pqal,truth,expect", [
    ([pqa_record(0)], None, "is not a JSON object keyed by pmid"),
    ({"1": pqa_record(0), "2": "text"}, None, "the value of key '2' is not a JSON object"),
    (None, ["35"], "is not a JSON object mapping PubMed ids"),
    (None, {"35": "yes", "404": "no"}, "1 test ids are not keys of ori_pqal.json, e.g. '404'"),
])
def test_pubmedqa_malformed_files(tmp_data, pqal, truth, expect):
    write_pubmedqa(tmp_data)
    path = write_json(tmp_data / (PQAL if pqal is not None else PQA_TRUTH), pqal if pqal is not None else truth)
    msg = one_line_error(lambda: load_domain("pubmedqa", tmp_data))
    assert str(path) in msg and expect in msg


# --------------------------------------------------------------------------
# real data (../shared/data)
# --------------------------------------------------------------------------


@pytest.mark.skipif(not all((SHARED_DATA / f).is_file() for f in (SPIDER_DEV, SPIDER_TABLES, CODE_ALPACA,
                                                                   PQAL, PQA_TRUTH)),
                    reason=f"spider, code_alpaca or pubmedqa files not found under {SHARED_DATA}")
def test_real_split_sizes():
    sizes = {}
    for domain in ("sql", "code_instruct", "pubmedqa"):
        for split in ("eval", "train"):
            queries = load_domain(domain, SHARED_DATA, split=split)
            assert len({q.qid for q in queries}) == len(queries), "qids must be unique"
            sizes[domain, split] = queries
    sql_eval, sql_train = sizes["sql", "eval"], sizes["sql", "train"]
    assert len(sql_eval) == 300 and len(sql_train) > 0
    assert not {q.meta["db_id"] for q in sql_eval} & {q.meta["db_id"] for q in sql_train}
    assert all("CREATE TABLE" in q.user_text for q in sql_eval[:5])
    assert (len(sizes["code_instruct", "eval"]), len(sizes["code_instruct", "train"])) == (300, 1717)
    pqa_eval, pqa_train = sizes["pubmedqa", "eval"], sizes["pubmedqa", "train"]
    assert (len(pqa_eval), len(pqa_train)) == (500, 500)
    truth = json.loads((SHARED_DATA / PQA_TRUTH).read_text())
    assert {q.meta["pmid"] for q in pqa_eval} == set(truth)
    assert all(truth[q.meta["pmid"]] == q.reference for q in pqa_eval)
