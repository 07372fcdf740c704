"""The n-gram drafter's state is a function of its tokens alone (what exact greedy replay needs)."""
import random

import pytest

from drafters.ngram import NgramDrafter, NgramIndex
from specsel import Arm, SpecEngine


def fresh(tokens, **kw):
    index = NgramIndex(**kw)
    for t in tokens:
        index.append(t)
    return index


@pytest.mark.parametrize("prefer", ["latest", "earliest"])
@pytest.mark.parametrize("min_n", [1, 2])
def test_append_truncate_equals_fresh_build(prefer, min_n):
    rng = random.Random(0)
    kw = dict(max_n=3, min_n=min_n, prefer=prefer)
    index = NgramIndex(**kw)
    tokens = []
    for step in range(400):
        if tokens and rng.random() < 0.3:
            cut = rng.randrange(len(tokens) + 1)
            index.truncate(cut)
            del tokens[cut:]
        else:
            t = rng.randrange(6)
            index.append(t)
            tokens.append(t)
        ref = fresh(tokens, **kw)
        assert index.predict() == ref.predict(), f"step {step}"
        assert index.pointers == ref.pointers and index.seen == ref.seen


def test_copies_the_span_after_the_latest_match():
    index = fresh([5, 6, 7, 8, 9, 5, 6, 1, 2, 5, 6], max_n=3, min_n=2, prefer="latest")
    assert index.predict() == 1          # "5 6" last seen before followed by 1
    index.append(1)
    assert index.predict() == 2          # keeps copying the same span
    earliest = fresh([5, 6, 7, 8, 9, 5, 6, 1, 2, 5, 6], max_n=3, min_n=2, prefer="earliest")
    assert earliest.predict() == 7


def test_no_draft_rounds_run_a_one_token_forward(monkeypatch):
    """A round where no row drafts must cost a 1-wide target forward, not 1 + gamma."""
    from specsel.modeling import kvcache

    from conftest import target_model
    widths = []
    forward = kvcache.RaggedKVCache.forward

    def spy(self, tokens, *a, **k):
        widths.append(tokens.shape[1])
        return forward(self, tokens, *a, **k)
    monkeypatch.setattr(kvcache.RaggedKVCache, "forward", spy)
    engine = SpecEngine(target_model("llama"), {"ngram": NgramDrafter()}, eos_token_id=1)
    result = engine.generate([[10, 11, 12, 13]], Arm("ngram", 8), max_new_tokens=12)   # nothing to copy at first
    first = result.records[0]
    assert first.drafted == 0 and widths[1] == 1      # widths[0] is the prefill
    assert len(widths) == 1 + len(result.records)
