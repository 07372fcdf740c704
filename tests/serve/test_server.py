"""`specsel serve` through HTTP with the official openai client: completions, chat, streaming and
concurrent clients are lossless; /metrics parses; every bad request is a 400 with one message; a
full queue is a 429 with Retry-After; a client gone mid-stream frees its row."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from server_fixture import start_server, word_tokenizer

from specsel.testing import random_prompts

from conftest import hf_greedy, target_model

TOK = word_tokenizer()


@pytest.fixture(scope="module")
def running():
    r = start_server()
    yield r
    r.stop()


def want_text(prompt: list[int], n: int) -> str:
    return TOK.decode(hf_greedy(target_model("llama"), prompt, n), skip_special_tokens=True)


PROMPTS = [[3 + (i % 100) for i in p] for p in random_prompts(16, min_len=3, max_len=9, seed=21)]


def test_completions_are_the_targets_greedy_output(running):
    client = running.client()
    for prompt in PROMPTS[:3]:
        out = client.completions.create(model="tiny", prompt=prompt, max_tokens=12)
        assert out.choices[0].text == want_text(prompt, 12)
        assert out.usage.prompt_tokens == len(prompt) and 1 <= out.usage.completion_tokens <= 12
        assert out.choices[0].finish_reason in ("stop", "length")
        stats = out.model_extra["specsel"]
        assert stats["rounds"] >= 1 and sum(stats["arms"].values()) == stats["rounds"]


def test_chat_and_streaming_give_the_same_text(running):
    client = running.client()
    messages = [{"role": "user", "content": "w9 w10 w11 w9 w10"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10)
    ids = TOK(TOK.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
              add_special_tokens=False)["input_ids"]
    assert whole.choices[0].message.content == want_text(ids, 10)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    streamed = "".join(c.choices[0].text for c in running.client().completions.create(
        model="tiny", prompt=PROMPTS[4], max_tokens=9, stream=True))
    assert streamed == want_text(PROMPTS[4], 9)


def test_sixteen_concurrent_clients_are_each_lossless(running):
    client = running.client()

    def ask(prompt):
        return client.completions.create(model="tiny", prompt=prompt, max_tokens=10).choices[0].text

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(ask, PROMPTS))
    assert got == [want_text(p, 10) for p in PROMPTS]


def test_each_request_samples_with_its_own_settings_and_seed(running):
    """On a greedy server: a seeded request at temperature 1 gets the same text again, whatever
    decodes it (the policy, or a pinned arm) and whatever runs beside it; other seeds differ;
    greedy requests running beside sampled ones stay the target's greedy output."""
    client = running.client()

    def ask(prompt, **kw):
        return client.completions.create(model="tiny", prompt=prompt, max_tokens=10, **kw).choices[0].text

    sampled = dict(temperature=1.0)
    alone = ask(PROMPTS[8], seed=11, **sampled)
    assert ask(PROMPTS[8], seed=11, **sampled, extra_body={"specsel": {"arm": "autoregressive"}}) == alone
    jobs = [(PROMPTS[8], dict(seed=11, **sampled))] + [(p, {}) for p in PROMPTS[9:12]] + \
        [(PROMPTS[8], dict(seed=s, **sampled)) for s in range(12, 16)] + [(PROMPTS[12], dict(temperature=0))]
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(lambda job: ask(job[0], **job[1]), jobs))
    assert got[0] == alone
    assert got[1:4] == [want_text(p, 10) for p in PROMPTS[9:12]] and got[-1] == want_text(PROMPTS[12], 10)
    assert len(set(got[:-1][4:]) | {alone}) > 1
    # top_k 1 and a tiny top_p leave only the most likely token: sampling them is greedy decoding
    assert ask(PROMPTS[9], temperature=1.0, seed=3, extra_body={"top_k": 1}) == want_text(PROMPTS[9], 10)
    assert ask(PROMPTS[10], temperature=1.0, top_p=1e-6) == want_text(PROMPTS[10], 10)


def test_a_pinned_arm_decodes_its_request(running):
    out = running.client().completions.create(model="tiny", prompt=PROMPTS[5], max_tokens=8,
                                              extra_body={"specsel": {"arm": "ngram@3"}})
    assert set(out.model_extra["specsel"]["arms"]) == {"ngram@3"}
    assert out.choices[0].text == want_text(PROMPTS[5], 8)


def test_stop_strings_cut_the_text(running):
    full = running.client().completions.create(model="tiny", prompt=PROMPTS[6], max_tokens=12).choices[0].text
    words = full.split()
    if len(words) < 3:
        pytest.skip("the tiny target ended too early to place a stop string")
    out = running.client().completions.create(model="tiny", prompt=PROMPTS[6], max_tokens=12, stop=[words[2]])
    assert out.choices[0].text == full[: full.find(words[2])] and out.choices[0].finish_reason == "stop"


def test_models_health_and_metrics(running):
    from prometheus_client.parser import text_string_to_metric_families
    client = running.client()
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(running.url + "/health").json()["status"] == "ok"
    client.completions.create(model="tiny", prompt=PROMPTS[7], max_tokens=8)
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(running.url + "/metrics").text)}
    for name in ("specsel:spec_decode_num_drafts", "specsel:spec_decode_num_accepted_tokens",
                 "specsel:arm_choices", "specsel:counterfactual_acceptance", "specsel:time_to_first_token_seconds",
                 "specsel:num_requests_running"):
        assert name in families, name
    drafters = {s.labels["drafter"] for s in families["specsel:counterfactual_acceptance"].samples}
    assert drafters == {"ngram", "model"}                  # HedgeSpec scores every drafter


BAD = [
    (b"{not json", "not valid JSON"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "colour": "red"}), "unknown field 'colour'"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "max_tokens": 0}), "max_tokens"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "top_p": 2}), "top_p"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "temperature": -0.5}), "temperature"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "top_k": -2}), "top_k"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "seed": "x"}), "seed"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "n": 2}), "n"),
    (json.dumps({"model": "tiny", "prompt": [5, 9999]}), "token"),
    (json.dumps({"model": "tiny", "prompt": [5] * 600}), "context"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "specsel": {"arm": "eagle@4"}}), "no drafter 'eagle'"),
    (json.dumps({"model": "tiny", "prompt": [5, 6], "specsel": {"arm": "fast"}}), "drafter@gamma"),
    (json.dumps([1, 2]), "JSON object"),
]


@pytest.mark.parametrize("body,message", BAD)
def test_bad_requests_get_a_400_with_one_message(running, body, message):
    r = httpx.post(running.url + "/v1/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    text = r.json()["error"]["message"]
    assert message in text and "\n" not in text
    assert httpx.get(running.url + "/health").status_code == 200      # and the server lives on


def test_the_openai_client_sees_a_bad_request_error(running):
    with pytest.raises(openai.BadRequestError, match="unknown field"):
        running.client().completions.create(model="tiny", prompt=[5, 6], max_tokens=4, extra_body={"colour": 1})


def test_a_client_gone_mid_stream_frees_its_row(running):
    from prometheus_client.parser import text_string_to_metric_families

    def aborted() -> float:
        text = httpx.get(running.url + "/metrics").text
        return sum(s.value for f in text_string_to_metric_families(text) if f.name == "specsel:request_success"
                   for s in f.samples if s.labels.get("finished_reason") == "abort" and s.name.endswith("_total"))

    # a prompt the target does not end within 300 tokens: only the hang-up can end it early
    prompt = next(p for p in PROMPTS if 1 not in hf_greedy(target_model("llama"), p, 300))
    before = aborted()
    with httpx.stream("POST", running.url + "/v1/completions", json={"model": "tiny", "prompt": prompt,
                                                                      "max_tokens": 300, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                break                                    # the first chunk came: hang up
    deadline = time.monotonic() + 20
    while (running.service.stream.active or aborted() == before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.service.stream.active == 0 and aborted() == before + 1


def test_a_full_queue_gets_a_429_with_retry_after():
    r = start_server(policy="ngram@2", max_batch=1, max_queue=0)
    try:
        resp = httpx.post(r.url + "/v1/completions", json={"model": "tiny", "prompt": [5, 6], "max_tokens": 4})
        assert resp.status_code == 429 and resp.headers["retry-after"] == "1"
        assert "waiting" in resp.json()["error"]["message"]
    finally:
        r.stop()


def test_a_request_running_when_the_engine_dies_gets_a_503_and_the_server_lives_on():
    from specsel.core.policy import ArmPolicy

    class Broken(ArmPolicy):
        def select(self, rows):
            raise RuntimeError("a broken policy")

    r = start_server(policy="broken", build=lambda pool: Broken())
    try:
        resp = httpx.post(r.url + "/v1/completions", json={"model": "tiny", "prompt": [5, 6], "max_tokens": 4},
                          timeout=30)
        assert resp.status_code == 503 and "a broken policy" in resp.json()["error"]["message"]
        assert httpx.get(r.url + "/health").status_code == 503
        again = httpx.post(r.url + "/v1/completions", json={"model": "tiny", "prompt": [5, 6], "max_tokens": 4})
        assert again.status_code == 503
    finally:
        r.stop()
