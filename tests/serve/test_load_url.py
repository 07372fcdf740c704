"""`specsel load --url`: the load sweep driven over HTTP against a running server, with the lines,
the summary and the lossless verdict of an in-process sweep."""
from __future__ import annotations

import json

import pytest
from server_fixture import start_server, word_tokenizer

from specsel.cli import main

from conftest import target_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("load_url")
    model = target_model("llama")
    model.generation_config.eos_token_id = 1
    model.save_pretrained(root / "target")
    word_tokenizer().save_pretrained(root / "target")
    prompts = [" ".join(f"w{3 + (7 * i + 5 * j) % 90}" for j in range(4 + i % 3)) for i in range(8)]
    (root / "toy.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    server = start_server(policy="hedgespec", max_batch=4)
    yield root, server
    server.stop()


def test_a_sweep_over_http_is_lossless_and_summarized(setup, capsys):
    root, server = setup
    out = root / "out"
    code = main(["load", "--url", server.url, "--target", str(root / "target"), "--domains",
                 f"toy={root / 'toy.jsonl'}@all", "--skip", "0", "--limit", "8", "--concurrency", "1,2",
                 "--gammas", "3", "--repeats", "1", "--max-new-tokens", "8", "--chunk", "8", "--out", str(out),
                 "--json", str(root / "load.json"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in (out / "queries.jsonl").read_text().splitlines()]
    runs = {line["run"] for line in lines}
    assert runs == {f"{p}/{r}" for p in ("c1", "c2") for r in
                    ("autoregressive", "fixed/ngram@3", "fixed/model@3", "joint/hedgespec")}
    for line in lines:
        assert line["tokens"] and line["request"]["first_token_s"] <= line["request"]["finish_s"]
        arms = {(r["drafter"], r["gamma"]) for r in line["records"]}
        if line["run"].endswith("autoregressive"):
            assert arms == {(None, 0)}
        elif "/fixed/" in line["run"]:
            drafter, gamma = line["arm"].split("@")
            assert arms <= {(drafter, int(gamma)), (drafter, 0)}     # gamma is cut near the token budget
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lossless"]["lossless"] is True and summary["lossless"]["checked"] >= 8 * 3
    assert set(json.loads((root / "load.json").read_text())["hedge_over_ar"]) == {"1", "2"}


def test_no_server_at_the_url_is_one_line(tmp_path, capsys):
    code = main(["load", "--url", "http://127.0.0.1:9", "--target", "x", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no specsel server answers there" in err and "Traceback" not in err
