"""User domains (specsel.data.user_domain): NAME=PATH files and NAME=hf:... splits registered
for the process, their formats, splits, ids and one-line errors, and every loader taking the name.

Fixture files are written under tmp_path; the hf: path is read through ``datasets`` from a local
file (the hub is never asked). Every test starts and ends with no user domain registered.
"""

import json
from pathlib import Path

import pytest

from specsel.data import (
    DOMAINS,
    DataError,
    cache_tag,
    load_domain,
    mixed_stream,
    registry,
    resolve_domain,
    resolve_domains,
    training_texts,
    user_domain,
)

from conftest import one_line_error

pytestmark = pytest.mark.usefixtures("clean_user_domains")


def write_jsonl(path: Path, records) -> Path:
    """Records (dicts, or raw strings for malformed lines) as JSON lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def prompts(n: int, **extra) -> list[dict]:
    return [{"prompt": f"question {i}", "reference": f"answer {i}", **extra} for i in range(n)]


# --------------------------------------------------------------------------
# formats, ids, meta
# --------------------------------------------------------------------------


def test_jsonl_prompts_become_user_turns_with_reference_and_meta(tmp_path):
    path = write_jsonl(tmp_path / "tickets.jsonl", [
        {"prompt": "My printer is on fire.", "reference": "Unplug it.", "ticket": 17, "tags": ["hw"]},
        "",                                                  # blank lines hold no record
        {"prompt": "Reset my password", "lang": "en"},
    ])
    assert resolve_domains(f"math,support={path}") == ["math", "support"]
    first, second = load_domain("support")
    assert first.domain == "support" and first.qid == "support/eval/0" and second.qid == "support/eval/1"
    assert first.messages == [{"role": "user", "content": "My printer is on fire."}]
    assert first.reference == "Unplug it." and first.meta == {"ticket": 17, "tags": ["hw"]}
    assert second.reference == "" and second.meta == {"lang": "en"}


def test_json_list_of_chats_keeps_the_conversation(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Sum 2 and 3."}]
    path = tmp_path / "chats.json"
    path.write_text(json.dumps([{"messages": chat, "reference": "5", "source": "me"},
                                {"prompt": "plain one"}], indent=2))
    resolve_domains([f"chat={path}@1"])
    (q,) = load_domain("chat")
    assert q.messages == chat and q.reference == "5" and q.meta == {"source": "me"}
    assert q.user_text == "Hi\n\nSum 2 and 3."
    assert training_texts("chat") == ["plain one"]
    resolve_domains([f"chat2={path}@0"])
    assert training_texts("chat2") == ["Be brief.\n\nHi\n\nHello.\n\nSum 2 and 3.\n\n5", "plain one"]


def test_null_fields_count_as_absent(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "p", "messages": None, "reference": None}])
    resolve_domains(f"t={path}")
    (q,) = load_domain("t")
    assert q.reference == "" and q.messages == [{"role": "user", "content": "p"}]


# --------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------


def test_default_split_is_the_first_300(tmp_path):
    path = write_jsonl(tmp_path / "big.jsonl", prompts(305))
    resolve_domains(f"big={path}")
    evals, train = load_domain("big"), load_domain("big", split="train")
    assert len(evals) == 300 and [q.qid for q in train] == [f"big/train/{i}" for i in range(300, 305)]
    assert training_texts("big", limit=2) == ["question 300\n\nanswer 300", "question 301\n\nanswer 301"]
    assert [q.qid for q in load_domain("big", limit=2)] == ["big/eval/0", "big/eval/1"]


def test_a_small_file_is_all_eval_and_says_how_to_train(tmp_path):
    path = write_jsonl(tmp_path / "small.jsonl", prompts(5))
    resolve_domains(f"small={path}")
    assert len(load_domain("small")) == 5
    msg = one_line_error(lambda: training_texts("small"))
    assert str(path) in msg and "only 5 records" in msg and "eval part" in msg and "@N with N < 5" in msg


def test_at_n_cuts_eval_and_train(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", prompts(5))
    resolve_domains(f"t={path}@3")
    assert [q.qid for q in load_domain("t")] == ["t/eval/0", "t/eval/1", "t/eval/2"]
    assert [q.qid for q in load_domain("t", split="train")] == ["t/train/3", "t/train/4"]
    assert [q.qid for q in load_domain("t", split="train", limit=1)] == ["t/train/3"]


def test_at_all_and_at_zero(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", prompts(4))
    resolve_domains(f"evalonly={path}@all,trainonly={path}@0")
    assert len(load_domain("evalonly")) == 4
    msg = one_line_error(lambda: load_domain("evalonly", split="train"))
    assert "@all" in msg and "eval part" in msg and "@N" in msg
    assert [q.qid for q in load_domain("trainonly", split="train")][:1] == ["trainonly/train/0"]
    msg = one_line_error(lambda: load_domain("trainonly"))
    assert "@0" in msg and "train part" in msg and "N > 0" in msg


def test_a_path_with_an_at_sign_that_is_no_split(tmp_path):
    path = write_jsonl(tmp_path / "a@b.jsonl", prompts(2))
    assert resolve_domains(f"t={path}") == ["t"]
    assert len(load_domain("t")) == 2
    msg = one_line_error(lambda: resolve_domains(f"u={path}@x"))
    assert "not found" in msg and "@N takes" in msg


# --------------------------------------------------------------------------
# bad files: one line naming the file, the line (or record) and the field
# --------------------------------------------------------------------------

GOOD = {"prompt": "fine"}
BAD_LINES = [
    ("not json", "line 2 is not valid JSON"),
    ('["a", "list"]', "line 2 (record 1) is not a JSON object"),
    ({"question": "no prompt"}, "line 2 (record 1) has neither a 'prompt' nor a 'messages'"),
    ({"prompt": "p", "messages": [{"role": "user", "content": "m"}]}, "has both 'prompt' and 'messages'"),
    ({"prompt": "   "}, "line 2 (record 1) field 'prompt' is empty"),
    ({"prompt": 7}, "field 'prompt' is not a string"),
    ({"messages": "hello"}, "field 'messages' is not a non-empty list"),
    ({"messages": []}, "field 'messages' is not a non-empty list"),
    ({"messages": [{"role": "user"}]}, "field 'messages' turn 0 is not an object with string 'role' and 'content'"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "field 'messages' turn 0 has role 'bot'"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
     "field 'messages' ends with a turn of role 'assistant'; the conversation must end with a user turn"),
    ({"prompt": "p", "reference": 42}, "line 2 (record 1) field 'reference' is not a string"),
]


@pytest.mark.parametrize("bad, expected", BAD_LINES)
def test_bad_jsonl_line_is_one_line_naming_file_line_and_field(tmp_path, bad, expected):
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, bad, GOOD])
    resolve_domains(f"bad={path}")              # registering does not read the file
    msg = one_line_error(lambda: load_domain("bad"))
    assert msg.startswith(f"bad: {path}: ") and expected in msg and "line 2" in msg


def test_bad_json_list_item_names_its_record(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([GOOD, GOOD, {"prompt": "p", "reference": ["x"]}]))
    resolve_domains(f"bad={path}")
    msg = one_line_error(lambda: load_domain("bad"))
    assert str(path) in msg and "record 2 field 'reference' is not a string" in msg
    path.write_text('[{"prompt": "a"},\n {"prompt": }]')
    msg = one_line_error(lambda: load_domain("bad"))
    assert str(path) in msg and "line 2 is not valid JSON" in msg


@pytest.mark.parametrize("text", ["", "\n\n", "[]"])
def test_an_empty_file_is_refused(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    resolve_domains(f"e={path}")
    msg = one_line_error(lambda: load_domain("e"))
    assert str(path) in msg and "no records" in msg and "'prompt'" in msg


def test_one_pretty_printed_object_gets_a_hint(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"prompt": "p"}, indent=2))
    resolve_domains(f"o={path}")
    msg = one_line_error(lambda: load_domain("o"))
    assert "line 1 is not valid JSON" in msg and "one JSON object" in msg


def test_a_missing_file_fails_when_named(tmp_path):
    msg = one_line_error(lambda: resolve_domains(f"math,gone={tmp_path / 'nope.jsonl'}"))
    assert str(tmp_path / "nope.jsonl") in msg and "not found" in msg and "NAME=PATH" in msg
    assert "gone" not in registry.user_domains()


# --------------------------------------------------------------------------
# names and registration
# --------------------------------------------------------------------------


@pytest.mark.parametrize("entry, expected", [
    ("math={path}", "'math' is a built-in domain"),
    ("={path}", "no name before '='"),
    ("my tickets={path}", "may hold only letters, digits"),
    ("sup.port={path}", "may hold only letters, digits"),
    ("support=", "no path after '='"),
    ("nonsense", "unknown domain 'nonsense'"),
    ("s=hf:justaname:train", "NAME=hf:owner/dataset[:config]:split:field"),
])
def test_bad_entries_are_one_line(tmp_path, entry, expected):
    path = write_jsonl(tmp_path / "t.jsonl", prompts(1))
    msg = one_line_error(lambda: resolve_domains(entry.format(path=path)))
    assert expected in msg


def test_the_same_name_twice(tmp_path):
    a, b = write_jsonl(tmp_path / "a.jsonl", prompts(2)), write_jsonl(tmp_path / "b.jsonl", prompts(2))
    assert resolve_domains(f"s={a},s={a}") == ["s"]             # the same file again: fine, once
    assert resolve_domains([f"s={a}"]) == ["s"]
    msg = one_line_error(lambda: resolve_domains(f"s={b}"))
    assert "'s' is given twice" in msg and str(a) in msg and str(b) in msg
    msg = one_line_error(lambda: resolve_domains(f"s={a}@1"))
    assert "given twice" in msg
    assert resolve_domain("s") == "s"                          # a registered name is known by itself


def test_registry_lists_user_domains_after_the_builtins(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", prompts(1))
    builtins = registry.builtin_domains()
    resolve_domains(f"zeta={path},alpha={path}")
    assert tuple(registry.domains()) == (*DOMAINS, "zeta", "alpha")
    assert registry.builtin_domains() is builtins and "zeta" not in builtins     # still the cached table
    with pytest.raises(DataError, match="built-in"):
        registry.add_user_domain(registry.Domain("math", 5000, registry.domains()["zeta"].eval))
    registry.clear_user_domains()
    assert tuple(registry.domains()) == DOMAINS
    msg = one_line_error(lambda: load_domain("zeta"))
    assert "unknown domain 'zeta'" in msg


def test_resolve_domain_takes_one(tmp_path):
    path = write_jsonl(tmp_path / "a,b.jsonl", prompts(1))
    assert resolve_domain(f"s={path}") == "s"                  # a comma inside NAME=PATH is the path's
    assert resolve_domain("medqa") == "medqa"
    assert "expected one domain" in one_line_error(lambda: resolve_domain("math,medqa"))


def test_cache_tag_follows_the_content_not_the_path(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", prompts(3))
    b = write_jsonl(tmp_path / "b.jsonl", prompts(3))
    resolve_domains(f"s={a},t={b}")
    assert cache_tag("math") == "math"
    assert cache_tag("s").startswith("s-") and cache_tag("s")[2:] == cache_tag("t")[2:]
    before = cache_tag("s")
    write_jsonl(a, prompts(4))
    assert cache_tag("s") != before


# --------------------------------------------------------------------------
# every loader takes the name; data_dir does not apply
# --------------------------------------------------------------------------


def test_loaders_and_stream_take_a_user_domain(tmp_data, tmp_path):
    from specsel.data.stream import encode_prompts
    from specsel.study.items import load_items

    (tmp_data / "medqa").mkdir()
    path = write_jsonl(tmp_path / "t.jsonl", prompts(6))
    names = resolve_domains(f"t={path}@4")
    assert len(load_domain("t", tmp_data)) == 4                       # data_dir is not where PATH lives
    assert training_texts("t", tmp_data) == ["question 4\n\nanswer 4", "question 5\n\nanswer 5"]
    stream = mixed_stream({"t": load_domain("t"), "medqa": load_domain("t", split="train")}, seed=0)
    assert sorted(q.qid for q in stream) == [*(f"t/eval/{i}" for i in range(4)), "t/train/4", "t/train/5"]

    class Tok:                                                       # no chat template: the user text
        chat_template = None

        def __call__(self, text, **kw):
            return {"input_ids": [len(w) for w in text.split()]}

    assert encode_prompts(Tok(), load_domain("t", limit=1)) == [[8, 1]]
    items = load_items(Tok(), names, None, limit=2, skip=1)
    assert [(it.qid, it.domain) for it in items] == [("t/eval/1", "t"), ("t/eval/2", "t")]


# --------------------------------------------------------------------------
# hf:owner/dataset[:config]:split:field, through datasets on a local file
# --------------------------------------------------------------------------


@pytest.fixture
def local_hub(tmp_data, monkeypatch):
    """Point the hf: loader at a local JSON-lines file read by datasets; record what was asked."""
    import datasets

    path = write_jsonl(tmp_data / "hub.jsonl", [{"text": f"ask {i}", "reference": f"ref {i}", "id": i}
                                                for i in range(5)])
    asked = []

    def load(dataset, config, split):
        asked.append((dataset, config, split))
        return datasets.load_dataset("json", data_files=str(path), split="train")

    monkeypatch.setattr(user_domain, "load_hub_dataset", load)
    return asked


def test_hf_split_comes_through_datasets(local_hub):
    assert resolve_domains("hub=hf:acme/tickets:main:test:text@3") == ["hub"]
    assert local_hub == []                                            # nothing is loaded when named
    qs = load_domain("hub")
    assert local_hub == [("acme/tickets", "main", "test")]
    assert [q.qid for q in qs] == ["hub/eval/0", "hub/eval/1", "hub/eval/2"]
    assert qs[0].messages == [{"role": "user", "content": "ask 0"}]
    assert qs[0].reference == "ref 0" and qs[0].meta == {"id": 0}
    assert training_texts("hub") == ["ask 3\n\nref 3", "ask 4\n\nref 4"]
    resolve_domains("noconfig=hf:acme/tickets:train:text")
    load_domain("noconfig")
    assert local_hub[-1] == ("acme/tickets", None, "train")


def test_hf_missing_column_is_one_line(local_hub):
    resolve_domains("hub=hf:acme/tickets:train:question")
    msg = one_line_error(lambda: load_domain("hub"))
    assert "acme/tickets" in msg and "no column 'question'" in msg and "text" in msg


def test_hf_failure_says_the_hub_may_be_unreachable(monkeypatch):
    def offline(dataset, config, split):
        raise ConnectionError("Couldn't reach 'acme/tickets' on the Hub\nmore detail")

    monkeypatch.setattr(user_domain, "load_hub_dataset", offline)
    resolve_domains("hub=hf:acme/tickets:train:text")
    msg = one_line_error(lambda: load_domain("hub"))
    assert "acme/tickets" in msg and "hub may be unreachable" in msg and "local file" in msg
