"""Requests submitted while the engine runs: the request source of a server (SpecEngine.serve).

A client thread submits a prompt with its token budget and a listener; the engine thread, in its
one decode loop, admits it as soon as a row is free, tells the listener each round's new tokens,
and tells it once more when the request ends (EOS, its budget, or a cancel). A cancelled request
leaves its row at the next round. Nothing of an ended request is kept, so a stream that serves for
days holds only what is queued or running.

The listener is called on the engine thread: it must only hand the event on (to an asyncio loop, a
queue), never block or raise.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from specsel.core.records import RoundRecord
from specsel.core.sampling import RequestSampling
from specsel.engine.batch import Request, Requests, RequestTiming


class QueueFull(RuntimeError):
    """The stream already holds as many waiting requests as it may: try again later."""


class StreamClosed(RuntimeError):
    """The stream takes no more requests (the server is shutting down)."""


@dataclass
class StreamEvent:
    """What a listener hears: new tokens (and the round's record of the request), or its end."""
    index: int
    tokens: list[int]
    record: RoundRecord | None = None
    ended: Request | None = None            # the request, when it has ended (tokens, by_eos, timing final)


Listener = Callable[[StreamEvent], None]


class RequestStream(Requests):
    """Thread-safe: `submit`, `cancel` and `close` from any thread; the rest is the engine's."""
    listens = True
    forgets = True

    def __init__(self, max_batch: int, max_queue: int = 256, on_round: Callable[[list], None] | None = None):
        super().__init__([], max_batch)
        self.max_queue, self.on_round = max_queue, on_round
        self._cond = threading.Condition()
        self._items: dict[int, Request] = {}            # queued or running requests
        self._listeners: dict[int, Listener] = {}
        self._cancel: set[int] = set()
        self._tags: dict = {}
        self._next, self._closed = 0, False
        self._t0 = time.perf_counter()

    # -- client side
    def submit(self, prompt: Sequence[int], max_new_tokens: int, listener: Listener, query_id=None,
               tag=None, decoding: RequestSampling | None = None) -> int:
        """Queue a request; returns its index. `tag`: anything the caller wants to find by index while
        the request lives (`tag(index)`; a server keeps a request's pinned arm there). `decoding`: its
        own sampling and seed (None: the engine's). QueueFull when `max_queue` wait already,
        StreamClosed after close()."""
        with self._cond:
            if self._closed:
                raise StreamClosed("the server is shutting down and takes no new requests")
            if len(self.queue) >= self.max_queue:
                raise QueueFull(f"{len(self.queue)} requests are already waiting for a row")
            index, self._next = self._next, self._next + 1
            timing = RequestTiming(time.perf_counter() - self._t0)
            self._items[index] = Request(list(prompt), int(max_new_tokens),
                                         index if query_id is None else query_id, timing, decoding=decoding)
            self._listeners[index] = listener
            if tag is not None:
                self._tags[index] = tag
            self.queue.append(index)
            self._cond.notify_all()
        return index

    def _drop(self, index: int) -> tuple[Request | None, Listener | None]:
        """Forget everything of request `index` (under the lock); its request and listener."""
        self._tags.pop(index, None)
        self._cancel.discard(index)
        return self._items.pop(index, None), self._listeners.pop(index, None)

    def tag(self, index: int):
        """The tag a live request was submitted with (None: none, or it has ended)."""
        return self._tags.get(index)

    def cancel(self, index: int) -> None:
        """The client gave up: a queued request is dropped, a running one leaves at the next round."""
        with self._cond:
            if index in self.queue:
                self.queue.remove(index)
                self._drop(index)
            elif index in self._items:
                self._cancel.add(index)
            self._cond.notify_all()

    def close(self) -> None:
        """No more submissions; the engine's serve() returns once the queued and running requests end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drop_queued(self) -> list[int]:
        """Forget every request still waiting for a row (a shutdown past its deadline); their indices."""
        with self._cond:
            gone = list(self.queue)
            self.queue.clear()
            for i in gone:
                self._drop(i)
            return gone

    def cancel_all(self) -> None:
        """Cancel every running request (a shutdown past its deadline)."""
        with self._cond:
            self._cancel.update(i for i in self._items if i not in self.queue)

    @property
    def active(self) -> int:
        """Requests queued or running."""
        with self._cond:
            return len(self._items)

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self.queue)

    # -- engine side (Requests)
    def started(self, t_start: float) -> None:
        with self._cond:
            for i in self.queue:                  # submitted before the loop began: their clock moves with it
                self._items[i].timing.arrival_s = max(0.0, self._items[i].timing.arrival_s - (t_start - self._t0))
            self._t0 = t_start

    @property
    def pending(self) -> bool:
        with self._cond:
            return bool(self.queue) or not self._closed

    def get(self, index: int) -> Request:
        with self._cond:
            return self._items[index]

    def due(self, now: float, running: int) -> list[int]:
        with self._cond:
            out = []
            while self.queue and running + len(out) < self.max_batch:
                out.append(self.queue.popleft())
            return out

    def wait(self, now: float) -> None:
        with self._cond:
            if not self.queue and not self._closed:
                self._cond.wait(timeout=0.5)

    def cancelled(self, rows: Sequence[int]) -> list[int]:
        with self._cond:
            if not self._cancel:
                return []
            gone = [r for r in rows if r in self._cancel]
            self._cancel.difference_update(gone)
            return gone

    def committed(self, records: list[RoundRecord], tokens: list[list[int]]) -> None:
        with self._cond:
            listeners = [self._listeners.get(r.row) for r in records]
        for rec, row_tokens, listener in zip(records, tokens, listeners):
            if listener is not None:
                listener(StreamEvent(rec.row, row_tokens[: rec.committed], rec))
        if self.on_round is not None:
            self.on_round(records)

    def ended(self, index: int) -> None:
        with self._cond:
            req, listener = self._drop(index)
        if listener is not None and req is not None:
            listener(StreamEvent(index, [], None, req))
