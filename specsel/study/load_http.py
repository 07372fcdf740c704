"""The load sweep over HTTP: `specsel load --url` sends each chunk's requests to a running
`specsel serve` with the openai client, instead of decoding them in this process.

The executor, the plan and the summary are the load study's; only the Decoder differs. A closed
loop keeps `cap` requests in flight (a client thread sends the next one as soon as its last one
ended, as benchmark_serving --max-concurrency); an open loop sends each request at its Poisson
arrival time; static batches of n send n, and the next n when all have ended. Plain decoding and
the fixed arms are the same server's, pinned per request (`{"specsel": {"arm": ...}}`); the
learner is the server's own policy. Each response carries its token ids and round records, so
the lines, the lossless verdict and the speculation counters are those of an in-process sweep;
TTFT, ITL and end-to-end latency are measured here, by the client. A server on this machine
counts as this run's process when the machine's load is judged."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Sequence

import httpx

from specsel.core.records import RoundRecord
from specsel.engine.batch import RequestTiming
from specsel.study.config import StudyError
from specsel.study.executor import Decoder, RunSpec

SERVER = "server"           # RunSpec.kind of the server's own policy


def server_info(url: str) -> dict:
    """What the server says of itself (/health): its policy, pool, pid, max_batch; a one-line
    StudyError when there is no specsel server at `url`."""
    try:
        r = httpx.get(url.rstrip("/") + "/health", timeout=10)
        info = r.json()
    except (httpx.HTTPError, ValueError) as e:
        raise StudyError(f"--url {url}: no specsel server answers there ({type(e).__name__}); start one with "
                         "`specsel serve`, or fix the address") from None
    if r.status_code != 200 or not isinstance(info, dict) or "policy" not in info:
        raise StudyError(f"--url {url}: the server is not ready (HTTP {r.status_code}); check its log")
    return info


class HttpLoadDecoder(Decoder):
    point = None                # the load point being swept (set by specsel.study.load_run.sweep)

    def __init__(self, url: str, max_new_tokens: int, info: dict):
        from openai import OpenAI
        self.client = OpenAI(base_url=url.rstrip("/") + "/v1", api_key="none", max_retries=0, timeout=3600)
        self.max_new_tokens, self.info = max_new_tokens, info

    def processes(self) -> list[int]:
        import psutil
        pid = self.info.get("pid")
        return [pid] if isinstance(pid, int) and psutil.pid_exists(pid) else []

    def warm_up(self, prompt: Sequence[int]) -> None:
        self._one(list(prompt), None, 4, time.perf_counter())

    def policy(self, spec: RunSpec, bsz: int) -> str | None:
        """The arm a request of this run pins (None: the server's policy chooses)."""
        return None if spec.kind == SERVER else spec.arm

    def decode(self, spec: RunSpec, pin, prompts: list[list[int]], seed: int):
        from specsel.engine import GenerationResult
        n, static = len(prompts), dict(spec.options).get("static")
        out: list = [None] * n
        t0 = time.perf_counter()
        if static:
            for start in range(0, n, static):
                self._send(prompts, range(start, min(start + static, n)), pin, t0, out, [0.0] * n, static)
        else:
            arrivals = self.point.arrivals(n, seed)
            lanes = n if self.point.concurrency is None else self.point.cap   # open loop: the server queues
            self._send(prompts, range(n), pin, t0, out, arrivals, lanes)
        wall = time.perf_counter() - t0
        tokens, eos, records, timing = zip(*out)
        rows = [replace(r, row=i, query=i) for i, recs in enumerate(records) for r in recs]
        return GenerationResult(list(tokens), rows, wall, 0.0, list(eos), list(timing))

    def _send(self, prompts, indices, pin, t0: float, out: list, arrivals: list[float], lanes: int) -> None:
        def one(i: int) -> None:
            wait = arrivals[i] - (time.perf_counter() - t0)
            if wait > 0:
                time.sleep(wait)
            out[i] = self._one(prompts[i], pin, self.max_new_tokens, t0, arrivals[i])

        with ThreadPoolExecutor(max_workers=max(1, lanes)) as pool:
            for f in [pool.submit(one, i) for i in indices]:
                f.result()

    def _one(self, prompt: list[int], pin, max_tokens: int, t0: float, arrival: float = 0.0):
        """One request, streamed: (tokens, by_eos, its records on this clock, its timing)."""
        sent = time.perf_counter() - t0
        options = {"records": True, **({"arm": pin} if pin else {})}
        first = final = None
        try:
            for chunk in self.client.completions.create(model="specsel", prompt=prompt, max_tokens=max_tokens,
                                                        stream=True, extra_body={"specsel": options}):
                if first is None and chunk.choices and chunk.choices[0].text:
                    first = time.perf_counter() - t0
                extra = chunk.model_extra or {}
                if extra.get("specsel"):
                    final = extra["specsel"]
        except Exception as e:                      # the openai client's errors carry the server's message
            raise StudyError(f"the server refused a request: {e}") from None
        finish = time.perf_counter() - t0
        if not final or "token_ids" not in final:
            raise StudyError("the server's response has no token ids: is it an older specsel serve?")
        recs = [RoundRecord.from_dict(r) for r in final["records"]]
        shift = finish - max((r.time_s or 0.0) for r in recs) if recs else 0.0     # its clock onto ours
        recs = [replace(r, time_s=None if r.time_s is None else round(r.time_s + shift, 6)) for r in recs]
        timing = RequestTiming(arrival, sent, finish if first is None else first, finish)
        return final["token_ids"], bool(final.get("by_eos")), recs, timing

