"""A real server for the tests: uvicorn on a free port, in a thread, decoding a tiny random target
with a word-level tokenizer (token i is the word `w<i>`, id 1 the end of sequence)."""
from __future__ import annotations

import socket
import threading
import time

from drafters import ModelDrafter, NgramDrafter
from specsel import SpecEngine
from specsel.serve.state import ServerState

from conftest import drafter_models, target_model

VOCAB = 128


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = {"<pad>": 0, "</s>": 1, "<s>": 2, **{f"w{i}": i for i in range(3, VOCAB)}}
    tok = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<pad>", pad_token="<pad>", eos_token="</s>",
                                   bos_token="<s>")
    fast.chat_template = ("{% for m in messages %}w5 {{ m.content }} w6 {% endfor %}"
                          "{% if add_generation_prompt %}w7{% endif %}")
    return fast


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A started server: its base URL, its Service, and how to stop it."""
    def __init__(self, service, server, thread, port):
        self.service, self.server, self.thread = service, server, thread
        self.url = f"http://127.0.0.1:{port}"

    def client(self):
        from openai import OpenAI
        return OpenAI(base_url=self.url + "/v1", api_key="none", max_retries=0, timeout=60)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)
        self.service.stop()


def start_server(policy: str = "hedgespec", max_batch: int = 4, max_queue: int = 64, state_path=None,
                 sampling=None, build=None) -> Running:
    """A server of `policy` (or of the policy `build(pool)` returns)."""
    import uvicorn

    from specsel.cli.serve import build_policy
    from specsel.serve.app import create_app
    from specsel.serve.service import ServeConfig, Service
    target = target_model("llama")
    pool = {"ngram": NgramDrafter(), "model": ModelDrafter(drafter_models("llama")["noisy"])}
    engine = SpecEngine(target, pool, eos_token_id=1)
    expect = ServerState("tiny", sorted(pool), policy, 0)
    state = ServerState.load(state_path, expect) if state_path else expect
    cfg = ServeConfig(policy, max_batch, max_queue, sampling, 0, state_path, 3600.0, 10.0)
    chosen = build(pool) if build is not None else build_policy(policy, pool, [1, 3], 0)
    service = Service(engine, word_tokenizer(), chosen, cfg, state)
    service.start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service, "tiny", 16), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the test server did not start"
    return Running(service, server, thread, port)
