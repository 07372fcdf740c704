"""RaggedKVCache driven directly: ragged forwards, multi-forward tails, per-row rollback.

A `Mirror` keeps, for every row, the committed tokens and the tentative tail tokens the
cache should hold. After every forward the cached logits must equal a fresh full forward
(no cache) over the row's sequence; after every `keep` one more forward of each row's
next token must too, and the cache must be exactly as wide as its longest row.
"""
import functools
import random

import pytest
import torch

from specsel.modeling.kvcache import RaggedKVCache
from specsel.testing import tiny_model

ATOL = 1e-4
VOCAB = 128
PROMPT_LENS = [1, 6, 11, 3]       # the length-1 row has an empty prefill (its only token is the next input)


@functools.lru_cache(maxsize=None)
def model(arch: str, attn: str = "sdpa"):
    return tiny_model(arch, seed=0, attn_implementation=attn)


@torch.no_grad()
def full_logits(m, seq: list[int]) -> torch.Tensor:
    """Logits of a fresh forward over `seq` alone, no cache: [len(seq), V]."""
    return m(torch.tensor([seq])).logits[0]


class Mirror:
    """What the cache should hold: committed tokens and the tentative tail of each row."""

    def __init__(self, m, batch_size: int):
        self.m = m
        self.kv = RaggedKVCache(m, batch_size)
        self.committed = [[] for _ in range(batch_size)]
        self.tail = [[] for _ in range(batch_size)]
        self.rng = random.Random(0)
        self.logits_seen = []      # every cached logit checked, for comparing attention paths

    @property
    def B(self) -> int:
        return len(self.committed)

    def random_tokens(self, n: int) -> list[int]:
        return [self.rng.randrange(2, VOCAB) for _ in range(n)]

    @torch.no_grad()
    def forward(self, rows_tokens: list[list[int]]) -> None:
        """One cache forward; rows_tokens[r] are row r's new tokens (may be empty)."""
        widths = torch.tensor([len(t) for t in rows_tokens])
        W = max(1, int(widths.max()))
        tokens = torch.zeros(self.B, W, dtype=torch.long)
        for r, t in enumerate(rows_tokens):
            tokens[r, : len(t)] = torch.tensor(t, dtype=torch.long)
            # padding columns get junk ids: masking, not the id, must hide them
            tokens[r, len(t):] = VOCAB - 1
        width_before = self.kv.width
        out = self.kv.forward(tokens, widths).logits
        assert out.shape[:2] == (self.B, W)
        assert self.kv.width == width_before + W
        for r, t in enumerate(rows_tokens):
            self.tail[r] += t
            if t:
                seq = self.committed[r] + self.tail[r]
                ref = full_logits(self.m, seq)[-len(t):]
                torch.testing.assert_close(out[r, : len(t)], ref, atol=ATOL, rtol=0,
                                           msg=lambda s: f"row {r} forward logits: {s}")
                self.logits_seen.append(out[r, : len(t)].clone())
        assert self.kv.next_positions().tolist() == [len(c) + len(t) for c, t in zip(self.committed, self.tail)]

    def keep(self, n_keep: list[int]) -> None:
        self.kv.keep(torch.tensor(n_keep, dtype=torch.long))
        for r, n in enumerate(n_keep):
            self.committed[r] += self.tail[r][:n]
            self.tail[r] = []
        self.check_committed()

    def check_committed(self) -> None:
        """Lengths and width are tight, and every row's cache equals a fresh forward of its sequence."""
        kv = self.kv
        assert kv.lengths.tolist() == [len(c) for c in self.committed]
        longest = max((len(c) for c in self.committed), default=0)
        assert kv.width == kv.committed_width == longest, "memory must not keep rejected tokens"
        for layer in kv.cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                assert layer.keys.shape[0] == self.B and layer.keys.shape[2] == longest
                assert layer.values.shape[2] == longest
        # one more forward of each row's next token, then roll it back
        nxt = self.random_tokens(self.B)
        self.forward([[t] for t in nxt])
        kv.keep(torch.zeros(self.B, dtype=torch.long))
        self.tail = [[] for _ in range(self.B)]
        assert kv.width == longest and kv.lengths.tolist() == [len(c) for c in self.committed]

    def select_rows(self, rows: list[int]) -> None:
        self.kv.select_rows(torch.tensor(rows, dtype=torch.long))
        self.committed = [self.committed[r] for r in rows]
        self.tail = [self.tail[r] for r in rows]

    def prefill(self, prompt_lens: list[int]) -> None:
        """Like the engine: cache every prompt token but the last (a length-1 prompt caches nothing)."""
        prompts = [self.random_tokens(n) for n in prompt_lens]
        self.forward([p[:-1] for p in prompts])
        self.keep([len(p) - 1 for p in prompts])

    def random_round(self, rng: random.Random) -> None:
        """One wide forward with ragged widths (some rows 0), then 0-3 width-1 forwards, then keep."""
        widths = [rng.choice([0, 1, 2, 3, 5]) for _ in range(self.B)]
        busy, *idle = rng.sample(range(self.B), min(2, self.B))
        widths[busy] = rng.choice([1, 2, 5])                    # at least one row does something
        for r in idle:
            widths[r] = 0                                       # and, with 2+ rows, one is idle
        self.forward([self.random_tokens(w) for w in widths])
        gammas = [rng.randint(0, 4) for _ in range(self.B)]
        for k in range(rng.randint(0, 3)):                      # drafter-like single-token steps
            self.forward([self.random_tokens(1) if gammas[r] > k else [] for r in range(self.B)])
        avail = [len(t) for t in self.tail]
        mode = rng.random()
        if mode < 0.2:
            n_keep = [0] * self.B                                # reject everything
        elif mode < 0.4:
            n_keep = avail                                       # accept everything
        else:
            n_keep = [rng.randint(0, a) for a in avail]
        self.keep(n_keep)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rollback_matches_fresh_forward(arch, seed):
    rng = random.Random(seed)
    mirror = Mirror(model(arch), len(PROMPT_LENS))
    mirror.rng.seed(seed)
    mirror.prefill(PROMPT_LENS)
    assert mirror.kv.lengths.tolist() == [n - 1 for n in PROMPT_LENS]
    for _ in range(8):
        mirror.random_round(rng)


def test_keep_zero_and_full_and_empty_rows(arch):
    """Deterministic edge cases: keep 0 everywhere, keep all, rows whose tail is empty."""
    mirror = Mirror(model(arch), 4)
    mirror.prefill(PROMPT_LENS)
    m = mirror
    # a row with tail only in later single-token steps (width 0 in the wide forward)
    m.forward([m.random_tokens(4), [], m.random_tokens(2), m.random_tokens(1)])
    m.forward([m.random_tokens(1), m.random_tokens(1), [], []])
    m.forward([m.random_tokens(1), m.random_tokens(1), [], []])
    m.keep([0, 0, 0, 0])
    m.forward([m.random_tokens(3), [], m.random_tokens(2), m.random_tokens(5)])
    m.forward([[], m.random_tokens(1), m.random_tokens(1), []])
    m.forward([[], [], [], []])                    # an all-idle forward adds one dead column
    m.keep([len(t) for t in m.tail])
    # keep a middle part of a tail that is interleaved across forwards
    m.forward([m.random_tokens(2), m.random_tokens(1), [], m.random_tokens(3)])
    m.forward([m.random_tokens(1), m.random_tokens(1), m.random_tokens(1), []])
    m.forward([m.random_tokens(1), [], m.random_tokens(1), m.random_tokens(1)])
    m.keep([3, 1, 1, 2])


def test_from_all_empty_rows(arch):
    """Every prompt has length 1: the cache starts empty and may be cropped back to width 0."""
    m = Mirror(model(arch), 3)
    m.forward([m.random_tokens(1) for _ in range(3)])
    m.keep([0, 0, 0])
    assert m.kv.width == 0
    m.forward([m.random_tokens(1), m.random_tokens(3), []])
    m.forward([m.random_tokens(1), [], []])
    m.keep([2, 1, 0])
    m.forward([m.random_tokens(2), m.random_tokens(2), m.random_tokens(2)])
    m.keep([1, 2, 2])


def test_select_rows_drops_rows_and_stays_correct(arch):
    rng = random.Random(5)
    m = Mirror(model(arch), 4)
    m.prefill(PROMPT_LENS)
    m.random_round(rng)
    m.random_round(rng)
    # drop the longest row and reorder: the cache must shrink to the new longest row
    longest = max(range(4), key=lambda r: len(m.committed[r]))
    rows = [r for r in (3, 1, 0, 2) if r != longest]
    m.select_rows(rows)
    assert m.kv.batch_size == 3
    m.check_committed()
    for _ in range(3):
        m.random_round(rng)
    m.select_rows([1])
    m.check_committed()
    m.random_round(rng)


def test_select_rows_with_a_pending_tail(arch):
    """select_rows between a forward and its keep keeps the tail of the surviving rows."""
    m = Mirror(model(arch), 4)
    m.prefill(PROMPT_LENS)
    m.forward([m.random_tokens(2), m.random_tokens(3), [], m.random_tokens(1)])
    m.forward([m.random_tokens(1), [], [], m.random_tokens(1)])
    m.select_rows([3, 0, 2])
    m.keep([2, 1, 0])


def test_keep_more_than_available_raises(arch):
    m = Mirror(model(arch), 3)
    m.prefill([4, 1, 2])
    m.forward([m.random_tokens(2), [], m.random_tokens(1)])
    m.forward([m.random_tokens(1), [], []])
    with pytest.raises(RuntimeError, match="more tokens than a row has"):
        m.kv.keep(torch.tensor([3, 1, 0]))       # row 1 has nothing in its tail
    with pytest.raises(RuntimeError, match="more tokens than a row has"):
        m.kv.keep(torch.tensor([4, 0, 0]))       # row 0 has 3
    # the failed keeps changed nothing
    m.keep([3, 0, 1])


def test_eager_attention_matches_sdpa(arch):
    """The eager branch of the mask builder (additive float mask) gives the same logits."""
    eager, sdpa = model(arch, "eager"), model(arch, "sdpa")
    assert eager.config._attn_implementation == "eager"
    assert all(torch.equal(a, b) for a, b in zip(eager.state_dict().values(), sdpa.state_dict().values()))
    seen = []
    for m_ in (sdpa, eager):
        rng = random.Random(11)
        m = Mirror(m_, 4)
        assert m.kv.attn_impl == m_.config._attn_implementation
        m.prefill(PROMPT_LENS)
        for _ in range(4):
            m.random_round(rng)
        seen.append(m.logits_seen)
    assert len(seen[0]) == len(seen[1]) > 0
    for a, b in zip(*seen):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.skip(reason="flash_attention_2 needs CUDA and flash-attn; its 2D-mask branch cannot run on CPU")
def test_flash_attention_2_branch():
    pass


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_capture_hidden_states_matches_hf_numbering(arch):
    from specsel.modeling.compat import capture_hidden_states
    model = tiny_model(arch)
    x = torch.randint(0, model.config.vocab_size, (2, 5))
    reference = model(x, output_hidden_states=True).hidden_states
    L = model.config.num_hidden_layers
    with capture_hidden_states(model, range(L + 1)) as got:
        model(x)
    assert sorted(got) == list(range(L + 1))
    for k in range(L + 1):
        torch.testing.assert_close(got[k], reference[k])
    with capture_hidden_states(model, [1]) as got:   # hooks are gone after the block
        pass
    model(x)
    assert got == {}
    with pytest.raises(ValueError, match="out of range"):
        with capture_hidden_states(model, [L + 1]):
            pass


def test_cache_kwargs_follows_the_installed_transformers_argument_name():
    from specsel.modeling.compat import cache_kwargs

    class Old(torch.nn.Module):
        def forward(self, x, past_key_values=None):
            return x

    class New(torch.nn.Module):
        def forward(self, x, cache=None):
            return x

    marker = object()
    assert cache_kwargs(Old(), marker) == {"past_key_values": marker}
    assert cache_kwargs(New(), marker) == {"cache": marker}


def test_length_groups_bound_the_padding_and_cover_every_row():
    from specsel.modeling.kvcache import length_groups
    widths = torch.tensor([40, 789, 0, 35, 700, 31, 2])
    groups = [g.tolist() for g in length_groups(widths, max_padding=0.25)]
    assert sorted(r for g in groups for r in g) == list(range(7))
    assert groups == [[1, 4], [0, 3, 5], [2, 6]]          # the empty row rides with the last group
    for g in groups:
        w = widths[g]
        real = w[w > 0]
        assert len(real) == 0 or int(real.min()) >= 0.75 * int(w.max())
    assert [g.tolist() for g in length_groups(torch.tensor([5, 4, 5]))] == [[0, 1, 2]]   # one forward


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_grouped_prefill_holds_what_one_padded_forward_holds(arch):
    """Prefill in length groups: the same cache (per valid column), lengths, width and captured
    features as one padded forward, and later forwards see the same logits."""
    m = model(arch)
    rng = random.Random(3)
    lens = [1, 30, 3, 28, 9, 2]
    tokens = torch.zeros(len(lens), max(lens), dtype=torch.long)
    for r, n in enumerate(lens):
        tokens[r, :n] = torch.tensor([rng.randrange(2, VOCAB) for _ in range(n)])
    widths = torch.tensor(lens)
    with torch.no_grad():
        grouped = RaggedKVCache(m, len(lens))
        captured = grouped.prefill(tokens, widths, capture=(1, 2))
        padded = RaggedKVCache(m, len(lens))
        out = padded.forward(tokens, widths, logits=False, capture=(1, 2))
        padded.keep(widths)
    assert grouped.lengths.tolist() == padded.lengths.tolist() == lens
    assert grouped.width == padded.width == max(lens)
    for a, b in zip(grouped.cache.layers, padded.cache.layers):
        for r, n in enumerate(lens):
            torch.testing.assert_close(a.keys[r, :, :n], b.keys[r, :, :n], atol=ATOL, rtol=0)
            torch.testing.assert_close(a.values[r, :, :n], b.values[r, :, :n], atol=ATOL, rtol=0)
    for k in (1, 2):
        for r, n in enumerate(lens):
            torch.testing.assert_close(captured[k][r, :n], out.captured[k][r, :n], atol=ATOL, rtol=0)
    nxt = torch.tensor([[rng.randrange(2, VOCAB)] for _ in lens])
    with torch.no_grad():
        la = grouped.forward(nxt, torch.ones(len(lens), dtype=torch.long)).logits
        lb = padded.forward(nxt, torch.ones(len(lens), dtype=torch.long)).logits
    torch.testing.assert_close(la, lb, atol=ATOL, rtol=0)
    with pytest.raises(RuntimeError, match="empty cache"):
        grouped.prefill(tokens, widths)
