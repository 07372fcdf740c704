"""The running batch of one generate() call, and requests joining it (continuous batching).

Requests arrive over time (`Requests`: arrival seconds, at most `max_batch` running at once). Before
each round, every request that has arrived takes a free row: its prompt is prefilled (in length
groups, specsel.modeling.kvcache) into a cache of its own, which then joins the running cache
(`RaggedKVCache.extend`); its tokens join the draft context; every drafter (or family) admits it
(`admit(ctx, rows)`, with the new rows' prompt features in ctx.target_hidden). A finished row leaves
at once (step 7 of the round). When no row runs, the next request's arrival is awaited.

A batch whose requests all arrive at once, with no cap, is the special case: one admission of every
request, exactly the fixed-batch prefill (and a PrefillCache may stand in for it).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import torch

from specsel.core.drafting import DraftContext, ScoringWindow
from specsel.core.sampling import RequestSampling
from specsel.engine.prefill import PrefillCache
from specsel.modeling.kvcache import RaggedKVCache


@dataclass
class RequestTiming:
    """When one request arrived, was admitted, got its first token and finished (seconds since the
    generate() call began; None: not yet)."""
    arrival_s: float
    admitted_s: float | None = None
    first_token_s: float | None = None
    finish_s: float | None = None


@dataclass
class Request:
    """One request: its prompt, its token budget, its query id (RoundRecord.query) and its timing;
    the rounds it has played, and its tokens once it has ended."""
    prompt: list[int]
    budget: int
    query_id: object
    timing: RequestTiming
    rounds: int = 0
    tokens: list[int] | None = None
    by_eos: bool = False
    decoding: RequestSampling | None = None     # its own sampling and seed (None: the engine's)


@dataclass
class Batch:
    """The running batch of one call: caches, the active rows, and the requests they serve. The
    engine keeps host copies of what it decides on (which rows are active, their lengths, their
    rounds), so a round reads the device once for its records, not once per row."""
    ctx: DraftContext | None
    kv: RaggedKVCache | None
    rows: list[int]                 # [A] request index of each active (local) row
    lens: list[int]                 # [A] committed length of each active row (= ctx.seq_lens, on the host)
    live: dict[int, Request]        # the active rows' requests, by request index
    records: list = field(default_factory=list)
    prefill_s: float = 0.0          # seconds of every admission's prefill (a reused one's charged as first paid)
    reused_s: float = 0.0           # seconds of a reused target prefill, charged to prefill_s and wall_s

    def remaining(self) -> list[int]:
        """[A] tokens each active row may still commit."""
        return [self.live[r].budget - g for r, g in zip(self.rows, self.generated())]

    def generated(self) -> list[int]:
        """[A] tokens each active row has generated so far."""
        return [n - len(self.live[r].prompt) for r, n in zip(self.rows, self.lens)]

    def decodings(self, sampling) -> list[RequestSampling] | None:
        """Each active row's decoding when some row's differs from the engine's `sampling` (None:
        every row decodes with it, the common case, verified for the whole batch at once)."""
        default = RequestSampling(sampling)
        own = [self.live[r].decoding or default for r in self.rows]
        return None if all(d == default for d in own) else own


class Requests:
    """The requests of one generate() call in arrival order (ties: prompt order), at most
    `max_batch` running. A request source: the engine asks it which requests are due, tells it what
    each round committed and when a request ends, and asks which running ones were cancelled
    (`RequestStream`, specsel.engine.stream, is the source a server feeds while the engine runs)."""
    listens = False                 # whether committed() wants each round's tokens
    forgets = False                 # whether the policy drops an ended row's state (policy.forget)

    def __init__(self, items: Sequence[Request], max_batch: int):
        self.items, self.max_batch = list(items), max_batch
        self.queue = deque(sorted(range(len(self.items)), key=lambda i: (self.items[i].timing.arrival_s, i)))

    @property
    def pending(self) -> bool:
        """Whether requests may still come."""
        return bool(self.queue)

    def get(self, index: int) -> Request:
        return self.items[index]

    def due(self, now: float, running: int) -> list[int]:
        """The requests that have arrived by `now` and fit in the free rows."""
        out = []
        while self.queue and running + len(out) < self.max_batch and self.items[self.queue[0]].timing.arrival_s <= now:
            out.append(self.queue.popleft())
        return out

    def wait(self, now: float) -> None:
        """Nothing runs: sleep until the next request arrives."""
        if self.queue:
            time.sleep(max(0.0, self.items[self.queue[0]].timing.arrival_s - now))

    def cancelled(self, rows: Sequence[int]) -> list[int]:
        """Which of the running requests `rows` their clients gave up on (none here)."""
        return []

    def started(self, t_start: float) -> None:
        """The decode loop began at this time.perf_counter() (request times count from it)."""

    def committed(self, records: list, tokens: list[list[int]]) -> None:
        """A round committed tokens[i][:records[i].committed] to request records[i].row (called only
        when `listens`)."""

    def ended(self, index: int) -> None:
        """Request `index` has ended (its tokens, by_eos and timing are final)."""


def clock(device: torch.device) -> float:
    """time.perf_counter() once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def prompt_tensor(prompts: Sequence[Sequence[int]], capacity: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(seqs [n, capacity] with each prompt left-aligned, lengths [n])."""
    lens = torch.tensor([len(p) for p in prompts], device=device)
    seqs = torch.zeros(len(prompts), capacity, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        seqs[i, : len(p)] = torch.tensor(p, device=device)
    return seqs, lens


def prefill_rows(target, seqs: torch.Tensor, lens: torch.Tensor, draft_layers, reuse: PrefillCache | None,
                 prompts) -> tuple[RaggedKVCache, dict | None, float]:
    """A cache of every prompt token but the last (or a copy of a reused prefill): (cache, the
    prompts' features drafters start from, seconds to charge on top for a reused prefill)."""
    dev = seqs.device
    kv = RaggedKVCache(target, len(lens))
    widths = lens - 1              # the cache holds every committed token but the last
    key = PrefillCache.key(prompts, draft_layers, target.dtype)
    entry = reuse.get(key) if reuse is not None else None
    t0 = clock(dev)
    hidden, reused = None, 0.0
    if entry is not None:
        kv.restore(entry.snapshot)
        hidden = {k: v.clone() for k, v in entry.hidden.items()} or None
        reused = entry.seconds - (clock(dev) - t0)      # charge the prefill, not the copy
    elif int(widths.max()) > 0:
        # in length groups: a long prompt does not make the short ones pay for its padding
        hidden = kv.prefill(seqs, widths, capture=draft_layers) or None   # features f_0..f_{P-2}
        if reuse is not None:
            reuse.put(key, kv.snapshot(), hidden, clock(dev) - t0)
    return kv, hidden, reused


def join_context(ctx: DraftContext, seqs: torch.Tensor, lens: torch.Tensor) -> None:
    """New rows (their prompts) join the draft context after its rows; nothing of theirs is scored yet."""
    cap = max(ctx.seqs.shape[1], seqs.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, cap - t.shape[1]))       # noqa: E731
    ctx.seqs = torch.cat([pad(ctx.seqs), pad(seqs)])
    ctx.seq_lens, ctx.prev_lens = torch.cat([ctx.seq_lens, lens]), torch.cat([ctx.prev_lens, lens])
    window = ctx.scoring
    if window is not None and window.start is not None:
        ctx.scoring = ScoringWindow(window.drafters, torch.cat([window.start, lens]))
