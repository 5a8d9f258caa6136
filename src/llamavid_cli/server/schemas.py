"""The request body `POST /v1/chat/completions` takes, and the objects it answers with.

The body is OpenAI's chat-completions request; fields we do not use (`user`, `logprobs`, …) are
ignored, as vLLM and llama-server do. Ours ride along in the same body (the OpenAI client's
`extra_body`): `fps`, `max_frames`, `start`, `end`, `fit`, `cache`, and vLLM's
`mm_processor_kwargs: {"fps": …}`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .. import defaults


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[dict[str, Any]], None] = None


class ProcessorKwargs(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fps: Optional[float] = Field(None, ge=0)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None  # one model is served: answered by it whatever is named
    messages: list[Message] = Field(min_length=1)
    temperature: Optional[float] = Field(None, ge=0, le=2)
    top_p: Optional[float] = Field(None, ge=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[dict[str, Any]] = None
    n: int = Field(1, ge=1, le=1)
    # ours
    fps: Optional[float] = Field(None, ge=0)
    max_frames: Optional[int] = Field(None, ge=1)
    start: Union[float, str, None] = None
    end: Union[float, str, None] = None
    fit: bool = False
    cache: bool = True
    evidence: bool = False  # `ask --evidence`: the answer object gets an `evidence` field
    moments: Optional[int] = Field(None, ge=1)  # how many moments (implies evidence)
    mm_processor_kwargs: Optional[ProcessorKwargs] = None

    def max_new_tokens(self) -> int:
        return self.max_completion_tokens or self.max_tokens or defaults.MAX_NEW_TOKENS

    def frames_per_second(self) -> float:
        if self.fps is not None:
            return self.fps
        if self.mm_processor_kwargs and self.mm_processor_kwargs.fps is not None:
            return self.mm_processor_kwargs.fps
        return defaults.FPS

    def wants_evidence(self) -> bool:
        return self.evidence or self.moments is not None

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(ident: str, created: int, model: str, text: str, finish: str, used: dict, answer: dict) -> dict:
    """A `chat.completion`; `llamavid` holds the answer object `ask --json` prints (docs/json.md)."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
        ],
        "usage": used,
        "llamavid": answer,
    }


def chunk(ident: str, created: int, model: str, delta: dict, finish: str | None = None, **extra: Any) -> dict:
    """One `chat.completion.chunk` of a streamed answer."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }
