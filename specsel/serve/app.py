"""The HTTP layer of `specsel serve` (FastAPI): OpenAI's completions and chat completions, with
streaming as server-sent events, /v1/models, /health and /metrics (Prometheus text).

Every request body is checked before anything is queued: bad JSON, an unknown field, a bad number,
a prompt too long for the context, or an unknown pinned arm is a 400 with one message; a full
queue is a 429 with Retry-After; a server whose engine stopped answers 503. Sampling settings
(temperature, top_p, top_k, seed) are each request's own; unset ones are the server's."""
from __future__ import annotations

import json
import os
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from specsel.core.arms import Arm
from specsel.core.sampling import RequestSampling, Sampling
from specsel.core.seeds import MAX_SEED
from specsel.data import Query, encode_prompts
from specsel.engine.stream import QueueFull, StreamClosed
from specsel.serve.protocol import ChatRequest, CompletionRequest, error_body, first_error
from specsel.serve.service import Delta, EngineStopped, Service


class BadRequest(ValueError):
    """A request the server refuses with a 400 (its message is the response's)."""


def _error(message: str, code: int = 400, headers: dict | None = None) -> JSONResponse:
    kind = {400: "invalid_request_error", 429: "rate_limit_exceeded", 503: "service_unavailable"}.get(code, "error")
    return JSONResponse(error_body(message, kind, code), status_code=code, headers=headers)


def _sse(obj) -> str:
    return f"data: {json.dumps(obj)}\n\n"


def create_app(service: Service, model_name: str, default_max_tokens: int = 256) -> FastAPI:
    app = FastAPI(title="specsel", docs_url=None, redoc_url=None)
    pool = set(service.engine.drafters)

    def decoding(body) -> RequestSampling | None:
        """The request's own sampling (None: the server's). A field left unset takes the server's
        setting; temperature 0 is greedy; top_k 0 or -1 is off; a seed makes the request's tokens
        depend on its prompt, settings and seed alone (specsel.engine.verify.seeded_choice)."""
        if body.temperature is None and body.top_p is None and body.top_k is None and body.seed is None:
            return None
        s = service.cfg.sampling
        temp = body.temperature if body.temperature is not None else (0.0 if s is None else s.temperature)
        if temp == 0:
            return RequestSampling()
        top_p = body.top_p if body.top_p is not None else (1.0 if s is None else s.top_p)
        top_k = body.top_k if body.top_k is not None else (0 if s is None else s.top_k)
        try:
            sampling = Sampling(temp, top_p, max(top_k, 0), 0.0 if s is None else s.min_p)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return RequestSampling(sampling, None if body.seed is None else body.seed % (MAX_SEED + 1))

    def check_pin(body) -> Arm | None:
        pin = body.specsel
        if pin is None or (pin.arm is None and pin.policy is None):
            return None
        name = pin.arm if pin.arm is not None else pin.policy
        if pin.policy is not None and pin.policy == service.cfg.policy:
            return None
        try:
            arm = Arm.autoregressive() if name in ("autoregressive", "none") else Arm.parse(name)
        except (ValueError, TypeError):
            raise BadRequest(f"specsel.{'arm' if pin.arm is not None else 'policy'} {name!r}: pin an arm as "
                             f"drafter@gamma (e.g. ngram@4), autoregressive, or the server's policy "
                             f"{service.cfg.policy!r}") from None
        if arm.drafter is not None and arm.drafter not in pool:
            raise BadRequest(f"specsel arm {name!r}: no drafter {arm.drafter!r}; this server has: "
                             f"{', '.join(sorted(pool)) or 'none'}")
        return arm

    async def parse(request: Request, model):
        raw = await request.body()
        try:
            obj = json.loads(raw)
        except ValueError:
            raise BadRequest("the body is not valid JSON") from None
        if not isinstance(obj, dict):
            raise BadRequest("the body must be a JSON object")
        try:
            return model.model_validate(obj)
        except ValidationError as e:
            raise BadRequest(first_error(e)) from None

    def prompt_ids(body) -> list[int]:
        if isinstance(body, ChatRequest):               # encoded as every study prompt is
            msgs = [m.model_dump(exclude_none=True) for m in body.messages]
            return encode_prompts(service.tokenizer, [Query("chat", "request", msgs, "")])[0]
        if isinstance(body.prompt, str):
            return list(service.tokenizer(body.prompt)["input_ids"])
        return list(body.prompt)

    async def handle(request: Request, model, chat: bool):
        try:
            body = await parse(request, model)
            own = decoding(body)
            pin = check_pin(body)
            ids = prompt_ids(body)
            budget = (body.budget() if chat else body.max_tokens) or default_max_tokens
            try:
                service.check(ids, budget)
            except (ValueError, TypeError) as e:
                raise BadRequest(str(e).splitlines()[0]) from None
            if not service.healthy:
                return _error(f"the engine stopped: {service.failure!r}" if service.failure else
                              "the server is not running", 503)
            deltas = service.run(ids, budget, body.stops(), pin, bool(body.specsel and body.specsel.records), own)
        except BadRequest as e:
            return _error(str(e))
        except QueueFull as e:
            return _error(f"{e}; retry later", 429, {"Retry-After": "1"})
        except StreamClosed as e:
            return _error(str(e), 503, {"Retry-After": "5"})
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        head = {"id": rid, "created": int(time.time()), "model": model_name}
        if body.stream:
            return StreamingResponse(_stream(deltas, head, chat, body.include_usage()), media_type="text/event-stream")
        text, last = [], None
        try:
            async for d in deltas:
                text.append(d.text)
                last = d
        except EngineStopped as e:
            return _error(str(e), 503)
        return JSONResponse(_whole(head, chat, "".join(text), last))

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, CompletionRequest, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, ChatRequest, chat=True)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "specsel"}]}

    @app.get("/health")
    async def health():
        if service.healthy:         # and what a load sweep over HTTP needs to know of this server
            return {"status": "ok", "policy": service.cfg.policy, "pool": sorted(pool), "pid": os.getpid(),
                    "max_batch": service.cfg.max_batch}
        return _error("the engine stopped" if service.failure else "the server is not running", 503)

    @app.get("/metrics")
    async def metrics():
        service.metrics.waiting.set(service.stream.waiting)
        service.metrics.running.set(max(0, service.stream.active - service.stream.waiting))
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def _usage(d: Delta) -> dict:
    return {"prompt_tokens": d.prompt_tokens, "completion_tokens": d.completion_tokens,
            "total_tokens": d.prompt_tokens + d.completion_tokens}


def _whole(head: dict, chat: bool, text: str, last: Delta) -> dict:
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": last.finish_reason}
        return {**head, "object": "chat.completion", "choices": [choice], "usage": _usage(last), "specsel": last.stats}
    choice = {"index": 0, "text": text, "finish_reason": last.finish_reason, "logprobs": None}
    return {**head, "object": "text_completion", "choices": [choice], "usage": _usage(last), "specsel": last.stats}


async def _stream(deltas, head: dict, chat: bool, include_usage: bool):
    """Server-sent events: a chunk per delta, the last with the finish reason (and the request's
    speculation numbers), an optional usage chunk, then [DONE]. Closing it (a client gone) cancels
    the request (Service.run's finally)."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    if chat:
        yield _sse({**head, "object": kind, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                          "finish_reason": None}]})
    last = None
    try:
        async for d in deltas:
            last = d
            piece = {"delta": {"content": d.text} if d.text or not d.finish_reason else {}} if chat else \
                {"text": d.text, "logprobs": None}
            chunk = {**head, "object": kind, "choices": [{"index": 0, **piece, "finish_reason": d.finish_reason}]}
            if d.finish_reason:
                chunk["specsel"] = d.stats
            yield _sse(chunk)
    except EngineStopped as e:              # the status line is sent: say it in the stream
        yield _sse(error_body(str(e), "service_unavailable", 503))
    if include_usage and last is not None:
        yield _sse({**head, "object": kind, "choices": [], "usage": _usage(last)})
    yield "data: [DONE]\n\n"
