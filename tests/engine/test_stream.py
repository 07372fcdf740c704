"""Requests submitted while the engine runs (SpecEngine.serve on a RequestStream, what a server
uses): each request's tokens are its own greedy output at its own budget, heard round by round; a
cancelled request leaves its row at once; nothing of an ended request is kept."""
from __future__ import annotations

import threading
import time

import pytest

from drafters import ModelDrafter, NgramDrafter
from specsel import Arm, SpecEngine
from specsel.engine.stream import QueueFull, RequestStream, StreamClosed
from specsel.learners.factored import FactoredHedge
from specsel.testing import random_prompts

from conftest import drafter_models, hf_greedy, target_model


@pytest.fixture(scope="module")
def engine():
    target = target_model("llama")
    return SpecEngine(target, {"ngram": NgramDrafter(), "model": ModelDrafter(drafter_models("llama")["noisy"])},
                      eos_token_id=1)


class Heard:
    """A listener that keeps what it hears."""
    def __init__(self):
        self.tokens, self.ended, self.done = [], [], threading.Event()

    def __call__(self, event):
        self.tokens += event.tokens
        if event.ended is not None:
            self.ended.append(event.ended)
            self.done.set()


def serving(engine, stream, policy, **options) -> threading.Thread:
    thread = threading.Thread(target=engine.serve, args=(stream, policy), kwargs=options, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("policy", ["arm", "hedge"])
def test_requests_submitted_while_serving_are_each_their_own_greedy_output(engine, policy):
    prompts = [p + p[:3] for p in random_prompts(6, min_len=3, max_len=10, seed=5)]
    budgets = [5, 12, 3, 9, 12, 7]
    arms = Arm("model", 3) if policy == "arm" else FactoredHedge(["ngram", "model"], [1, 3], seed=0)
    stream = RequestStream(max_batch=3)
    thread = serving(engine, stream, arms)
    heard = []
    for i, (p, b) in enumerate(zip(prompts, budgets)):
        heard.append(Heard())
        stream.submit(p, b, heard[-1])
        time.sleep(0.01 * (i % 3))                  # some join a running batch, some wait for a row
    for h in heard:
        assert h.done.wait(60)
    stream.close()
    thread.join(30)
    assert not thread.is_alive()
    for p, b, h in zip(prompts, budgets, heard):
        want = hf_greedy(target_model("llama"), p, b)
        assert len(h.ended) == 1 and h.ended[0].tokens == want[: len(h.ended[0].tokens)]
        assert h.tokens == h.ended[0].tokens                     # heard round by round, nothing lost
        assert len(h.tokens) == b or h.ended[0].by_eos
        t = h.ended[0].timing
        assert t.arrival_s <= t.admitted_s <= t.first_token_s <= t.finish_s
    assert stream.active == 0 and stream.waiting == 0          # nothing of an ended request is kept


def test_a_cancelled_request_leaves_at_once_and_the_others_are_untouched(engine):
    prompts = [p + p[:3] for p in random_prompts(3, min_len=3, max_len=8, seed=9)]
    stream = RequestStream(max_batch=4)
    first, other = Heard(), Heard()
    gate = threading.Event()

    def cancel_after_first_round(event):
        first(event)
        gate.set()

    index = stream.submit(prompts[0], 60, cancel_after_first_round)
    stream.submit(prompts[1], 10, other)
    thread = serving(engine, stream, Arm("ngram", 2))
    assert gate.wait(30)
    stream.cancel(index)
    assert first.done.wait(30) and other.done.wait(30)
    stream.close()
    thread.join(30)
    assert len(first.ended[0].tokens) < 60 and first.ended[0].by_eos is False
    assert other.ended[0].tokens == hf_greedy(target_model("llama"), prompts[1], 10)[: len(other.ended[0].tokens)]
    assert stream.active == 0


def test_a_full_queue_and_a_closed_stream_refuse_in_one_line():
    stream = RequestStream(max_batch=1, max_queue=1)
    stream.submit([3, 4], 4, lambda e: None)
    with pytest.raises(QueueFull, match="already waiting"):
        stream.submit([3, 4], 4, lambda e: None)
    stream.drop_queued()
    stream.close()
    with pytest.raises(StreamClosed, match="shutting down"):
        stream.submit([3, 4], 4, lambda e: None)
    assert not stream.pending


def test_serve_refuses_options_that_belong_to_the_stream(engine):
    with pytest.raises(TypeError, match="from its stream"):
        engine.serve(RequestStream(2), Arm("ngram", 2), max_batch=4)
