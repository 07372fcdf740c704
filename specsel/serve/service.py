"""The serving core: the engine decoding a RequestStream (SpecEngine.serve; on the main thread in
`specsel serve`, else on a thread of its own) under the server's policy, and the asyncio side that
feeds it requests and hears their tokens.

Requests from HTTP handlers are submitted to the stream with a listener; the engine thread calls
the listener each round, which hands the event to the handler's asyncio queue. A handler that goes
away (a client disconnect) cancels its request, and the row is free at the next round. What the
policy learns is saved in the state file every `save_every` seconds and at shutdown, and restored
at start (specsel.serve.state)."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import AsyncIterator

from specsel.core.arms import Arm
from specsel.core.policy import ArmPolicy, FixedArms
from specsel.core.records import RoundRecord
from specsel.core.sampling import RequestSampling, Sampling
from specsel.engine.stream import RequestStream, StreamEvent
from specsel.serve.metrics import ServerMetrics
from specsel.serve.pinning import PinnedPolicy
from specsel.serve.state import ServerState


class EngineStopped(RuntimeError):
    """The engine thread ended while a request was running (its error is the message)."""


@dataclass
class ServeConfig:
    """What a server decodes with (specsel serve's flags)."""
    policy: str = "hedgespec"
    max_batch: int = 16
    max_queue: int = 256
    sampling: Sampling | None = None
    seed: int = 0
    state: Path | None = None
    save_every: float = 60.0
    drain_s: float = 30.0


@dataclass
class Delta:
    """What a handler streams: new text, and at the end the finish reason and the request's numbers."""
    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stats: dict | None = None


def speculation_stats(records: list[RoundRecord]) -> dict:
    """One request's speculation: rounds, drafts, draft and accepted tokens, MAT, arms played."""
    arms: dict[str, int] = {}
    for r in records:
        key = str(Arm(r.drafter, r.gamma)) if r.drafter else "autoregressive"
        arms[key] = arms.get(key, 0) + 1
    rounds, committed = len(records), sum(r.committed for r in records)
    return {"rounds": rounds, "num_drafts": sum(1 for r in records if r.drafted),
            "num_draft_tokens": sum(r.drafted for r in records),
            "num_accepted_tokens": sum(r.accepted for r in records),
            "mean_accepted_tokens": committed / rounds if rounds else None, "arms": arms}


class Service:
    def __init__(self, engine, tokenizer, policy: ArmPolicy | Arm, cfg: ServeConfig, state: ServerState):
        self.engine, self.tokenizer, self.cfg, self.state = engine, tokenizer, cfg, state
        self.metrics = ServerMetrics()
        self.stream = RequestStream(cfg.max_batch, cfg.max_queue, on_round=self.metrics.round)
        self.base = policy
        self.policy = PinnedPolicy(policy if isinstance(policy, ArmPolicy) else FixedArms(policy, 0), self.stream.tag)
        self._records: dict[int, list[RoundRecord]] = {}
        self._outbox: dict = {}                 # loop -> events for its handlers, not yet delivered
        self._outbox_lock = threading.Lock()
        self._lock = threading.Lock()
        self.failure: BaseException | None = None
        self._started, self._decoding, self._stopped = False, False, threading.Event()
        self._last_save = time.monotonic()

    # -- lifecycle
    def start(self, thread: bool = True) -> None:
        """Restore the policy's state; with `thread`, decode on a thread of its own (else the caller
        runs decode() on its thread: `specsel serve` gives the engine the main thread, where torch
        decodes faster than on another thread of the same process)."""
        if isinstance(self.base, ArmPolicy):
            self.state.restore(self.base)
        self._started = True
        if thread:
            threading.Thread(target=self.decode, name="specsel-engine", daemon=True).start()

    def decode(self) -> None:
        """The engine loop: decode the stream's requests until it is closed and they have ended."""
        self._decoding = True
        try:
            self.engine.serve(self.stream, self.policy, sampling=self.cfg.sampling, seed=self.cfg.seed)
        except BaseException as e:              # the server answers 503 from now on, and says why
            self.failure = e
        finally:
            self._stopped.set()

    @property
    def healthy(self) -> bool:
        return self._started and self.failure is None and not self._stopped.is_set()

    def shut(self) -> None:
        """No new requests; the running ones get `drain_s` to finish, then are cut. Returns once the
        engine has stopped (or 10 s after the cut)."""
        self.stream.close()
        if not self._decoding:                  # the engine never ran (the server did not start)
            return
        if not self._stopped.wait(self.cfg.drain_s):
            self.stream.drop_queued()
            self.stream.cancel_all()
            self._stopped.wait(10.0)

    def stop(self) -> None:
        """shut(), then save the state."""
        self.shut()
        self.save()

    def save(self) -> None:
        if self.cfg.state is not None and isinstance(self.base, ArmPolicy):
            with self._lock:
                self.state.save(self.cfg.state)
            self._last_save = time.monotonic()

    # -- requests
    def check(self, prompt: list[int], max_tokens: int) -> None:
        self.engine.check_request(prompt, max_tokens)

    def _listener(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        """The engine thread's side of one request: its records, metrics, then the handler's queue."""
        def hear(event: StreamEvent) -> None:
            recs = self._records.setdefault(event.index, [])
            if event.record is not None:
                recs.append(event.record)
            final = None
            if event.ended is not None:         # the request's records leave with its last event
                final = self._records.pop(event.index, [])
                self._ended(event, final)
            self._hand_over(loop, queue, (event, final))
        return hear

    def _hand_over(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, item) -> None:
        """Queue an event for its handler. The events of one round reach a loop in one wake-up (the
        first schedules the delivery; those that come before it runs join it): every wake-up of the
        loop's thread takes a core from the decoding threads, and a parallel forward then waits."""
        with self._outbox_lock:
            due = loop in self._outbox
            self._outbox.setdefault(loop, []).append((queue, item))
        if due:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, loop)
        except RuntimeError:                    # the handlers' loop is gone: nobody to tell
            with self._outbox_lock:
                self._outbox.pop(loop, None)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._outbox_lock:
            items = self._outbox.pop(loop, [])
        for queue, item in items:
            queue.put_nowait(item)

    def _ended(self, event: StreamEvent, recs: list[RoundRecord]) -> None:
        t = event.ended.timing
        if t.first_token_s is not None:
            self.metrics.ttft.observe(t.first_token_s - t.arrival_s)
        if t.finish_s is not None:
            self.metrics.e2e.observe(t.finish_s - t.arrival_s)
        self.metrics.prompt_tokens.inc(len(event.ended.prompt))
        if recs:
            with self._lock:
                self.state.add(recs)
        if time.monotonic() - self._last_save > self.cfg.save_every:
            self._last_save = time.monotonic()          # one save at a time, not one per ended request
            threading.Thread(target=self.save, daemon=True).start()

    def run(self, prompt: list[int], max_tokens: int, stops: list[str], pin: Arm | None,
            records: bool = False, decoding: RequestSampling | None = None) -> AsyncIterator[Delta]:
        """Queue one request now (QueueFull, StreamClosed) and return its deltas: text as rounds
        commit, then the final Delta (with its token ids and round records when `records`).
        `decoding`: its own sampling and seed (None: the server's). Call from the event loop's thread."""
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        index = self.stream.submit(prompt, max_tokens, self._listener(loop, queue), tag=pin, decoding=decoding)
        return self._deltas(index, queue, len(prompt), stops, records)

    async def _deltas(self, index: int, queue: asyncio.Queue, prompt_len: int, stops: list[str], records: bool):
        tokens, sent, stopped, ended = [], "", False, False
        hold = max((len(s) for s in stops), default=1) - 1       # a stop string may be forming there
        try:
            while True:
                try:
                    event, recs = await asyncio.wait_for(queue.get(), timeout=1.0)
                except asyncio.TimeoutError:
                    if not self.healthy:        # the engine died: this request will never end
                        raise EngineStopped(f"the engine stopped: {self.failure!r}") from None
                    continue
                if event.ended is not None:
                    ended = True
                    text = self._text(event.ended.tokens, stops)[0]
                    reason = "stop" if stopped or event.ended.by_eos else "length"
                    stats = speculation_stats(recs)
                    if records:
                        stats.update(token_ids=event.ended.tokens, by_eos=event.ended.by_eos,
                                     records=[asdict(r) for r in recs])
                    self.metrics.requests.labels(reason).inc()
                    yield Delta(text[len(sent):], reason, prompt_len, len(event.ended.tokens), stats)
                    return
                if stopped:
                    continue
                tokens += event.tokens
                text, hit = self._text(tokens, stops)
                if hit:
                    stopped = True
                    self.stream.cancel(index)
                    continue
                safe = text[: max(len(sent), len(text) - hold)].rstrip("\ufffd")
                if len(safe) > len(sent):
                    yield Delta(safe[len(sent):])
                    sent = safe
        finally:
            if not ended:                   # the client went away: free the row now
                self.stream.cancel(index)
                self.metrics.requests.labels("abort").inc()

    def _text(self, tokens: list[int], stops: list[str]) -> tuple[str, bool]:
        """The decoded text, cut before the first stop string; whether one was hit."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cuts = [text.find(s) for s in stops if s and s in text]
        return (text[: min(cuts)], True) if cuts else (text, False)
