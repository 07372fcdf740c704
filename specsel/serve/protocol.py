"""The OpenAI-compatible request bodies `specsel serve` accepts (pydantic: an unknown field, a wrong
type or a number out of range is a 400 with one message), and the pieces of its responses.

A request may pin what decodes it, for A/B tests, in its extra body: ``{"specsel": {"arm":
"eagle@4"}}`` or ``{"specsel": {"policy": "autoregressive"}}`` (the openai client's
``extra_body``)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Pin(BaseModel):
    """specsel's own request options: what decodes this request instead of the server's policy (an
    arm, `drafter@gamma` or `autoregressive`, or a policy name: the server's own, or
    `autoregressive`), and whether the response carries its token ids and round records (what
    `specsel load --url` reads)."""
    model_config = ConfigDict(extra="forbid")
    arm: str | None = None
    policy: str | None = None
    records: bool = False


class _Sampled(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=100)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: dict | None = None
    user: str | None = None
    specsel: Pin | None = None

    def stops(self) -> list[str]:
        return [] if self.stop is None else [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


class CompletionRequest(_Sampled):
    prompt: str | list[int] = Field(min_length=1)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "developer"]
    content: str
    name: str | None = None


class ChatRequest(_Sampled):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def error_body(message: str, kind: str = "invalid_request_error", code: int = 400) -> dict:
    """OpenAI's error shape (the openai client raises BadRequestError etc. with `message`)."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def first_error(exc) -> str:
    """One line from a pydantic ValidationError: the first field's path and what is wrong."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return str(exc).splitlines()[0]
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
    if e.get("type") == "extra_forbidden":
        return f"unknown field '{where}': drop it (specsel options go in the 'specsel' object of the body)"
    if e.get("type") == "json_invalid":
        return "the body is not valid JSON"
    return f"{where or 'body'}: {e.get('msg', 'invalid')}"
