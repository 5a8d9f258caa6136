"""The FastAPI app (`create_app`) and the uvicorn runner (`run`) that prints the readiness line.

    POST /v1/chat/completions   stream and not; SSE as OpenAI sends it (`data: {chunk}`, `data: [DONE]`)
    GET  /v1/models             the one model served
    GET  /health                up, and the queue (no key needed)

Every failure, ours or the framework's (an unknown route, a bug), is an OpenAI-shaped JSON
error; a request never sees a traceback, and the server keeps answering.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from .. import defaults, pipeline
from ..cli.entry import unexpected
from ..cli.options import parse_time
from ..errors import LlamaVidError
from ..loader import Loaded
from ..video import Sampling
from . import schemas
from .engine import Engine, Job
from .errors import ApiError, error_object, from_llamavid
from .media import open_media, turns
from .security import Policy

POLL_S = 0.25  # how often a waiting request looks whether its client is still there


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


def create_app(loaded: Loaded, policy: Policy, *, max_queue: int = 16) -> FastAPI:
    engine = Engine(loaded, max_queue)
    uploads = Path(tempfile.mkdtemp(prefix="llamavid-serve-"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        shutil.rmtree(uploads, ignore_errors=True)

    app = FastAPI(title="llamavid", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = engine

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(LlamaVidError)
    async def llamavid_error(request: Request, exc: LlamaVidError) -> JSONResponse:
        return await api_error(request, from_llamavid(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": error_object(exc.status_code, str(exc.detail), code)}, status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        message = unexpected(exc)
        print(f"llamavid serve: {message}", file=sys.stderr, flush=True)
        return JSONResponse({"error": error_object(500, message, "internal_error")}, status_code=500)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": loaded.name, **engine.status()}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        policy.check_key(request.headers.get("authorization"))
        created = schemas.now()
        return {
            "object": "list",
            "data": [{"id": loaded.name, "object": "model", "created": created, "owned_by": "llamavid"}],
        }

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        policy.check_key(request.headers.get("authorization"))
        body = await _read(request, policy)
        asked = _parse(body)
        said = turns(asked.messages)
        sampling = _sampling(asked)
        generation = pipeline.GenerationSettings(
            defaults.TEMPERATURE if asked.temperature is None else asked.temperature,
            defaults.TOP_P if asked.top_p is None else asked.top_p,
            asked.max_new_tokens(),
            asked.seed,
        )
        media = await asyncio.to_thread(open_media, said.part, policy, uploads)  # last: an upload is written
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        job = Job(
            media=media,
            question=said.question,
            history=said.history,
            sampling=sampling,
            generation=generation,
            fit=asked.fit,
            use_cache=asked.cache,
            emit=_emitter(asyncio.get_running_loop(), events),
            evidence=asked.wants_evidence(),
            moments=asked.moments or defaults.EVIDENCE_MOMENTS,
        )
        try:
            engine.submit(job)
        except ApiError:
            media.release()
            raise
        try:
            event = await _next(request, events, job)  # through decoding: its failures get their status
            if event[0] == "error":
                _result(event)
            ident, created = schemas.new_id(), schemas.now()
            if asked.stream:
                stream = _sse(event, events, job, ident, created, loaded, asked.include_usage())
                return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
            while event[0] == "text":
                event = await _next(request, events, job)
        except ClientGone:  # nobody reads this; the status is for the access log
            return JSONResponse({"error": error_object(499, "the client went away", "client_closed")}, 499)
        result = _result(event)
        answer = pipeline.answer_object(result, loaded)
        return schemas.completion(
            ident,
            created,
            loaded.name,
            result.answer,
            _finish(result, loaded),
            schemas.usage(len(result.prompt_ids), len(result.output_ids)),
            answer,
        )

    return app


# An oversize body is still read, and dropped, up to this many bytes past the cap before the
# 413 goes out: a server that answers and closes with the body unread resets the connection
# under a client still sending (urllib, `Connection: close`), which then sees no answer at all.
_DRAIN_BYTES = 256 * 1024 * 1024


async def _read(request: Request, policy: Policy) -> Any:
    """The body as JSON, kept no further than the upload cap allows (413 beyond it)."""
    limit = policy.body_limit()
    declared = request.headers.get("content-length")
    size = int(declared) if declared and declared.isdigit() else 0
    data, seen = bytearray(), 0
    async for piece in request.stream():
        seen += len(piece)
        if size > limit or seen > limit:
            if seen > limit + _DRAIN_BYTES:
                break
            continue
        data += piece
    if size > limit or seen > limit:
        policy.check_upload(max(size, seen) * 3 // 4)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON", "invalid_json") from None


def _parse(body: Any) -> schemas.ChatRequest:
    try:
        return schemas.ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, f"{where}: {first['msg']}", "invalid_request_body") from None


def _sampling(asked: schemas.ChatRequest) -> Sampling:
    def seconds(value: float | str | None, name: str) -> float | None:
        if value is None or isinstance(value, (int, float)):
            return value
        try:
            return parse_time(value, name)
        except Exception as exc:  # noqa: BLE001 - typer's BadParameter: its message is the one line
            raise ApiError(422, f"{name}: {getattr(exc, 'message', exc)}", "invalid_request_body") from None

    return Sampling(
        asked.frames_per_second(), asked.max_frames, seconds(asked.start, "start"), seconds(asked.end, "end")
    )


def _emitter(loop: asyncio.AbstractEventLoop, events: asyncio.Queue) -> Callable[[str, Any], None]:
    def emit(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone (shutting down): nobody is listening
            pass

    return emit


async def _next(request: Request, events: asyncio.Queue, job: Job) -> tuple[str, Any]:
    """The job's next event; a client that leaves meanwhile cancels the job."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), POLL_S)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                job.cancelled.set()
                raise ClientGone from None


def _result(event: tuple[str, Any]) -> pipeline.Answer:
    kind, value = event
    if kind == "error":
        if isinstance(value, ApiError):
            raise value
        if isinstance(value, LlamaVidError):
            raise from_llamavid(value)
        raise value
    return value


def _finish(result: pipeline.Answer, loaded: Loaded) -> str:
    ids = result.output_ids
    return "stop" if ids and ids[-1] == loaded.config.llm.eos_token_id else "length"


async def _sse(
    first: tuple[str, Any],
    events: asyncio.Queue,
    job: Job,
    ident: str,
    created: int,
    loaded: Loaded,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The answer as OpenAI streams it; a failure after the first byte is an `error` event."""

    def data(obj: dict) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    try:
        yield data(schemas.chunk(ident, created, loaded.name, {"role": "assistant", "content": ""}))
        event = first
        while True:
            kind, value = event
            if kind == "text":
                yield data(schemas.chunk(ident, created, loaded.name, {"content": value}))
            elif kind == "done":
                used = schemas.usage(len(value.prompt_ids), len(value.output_ids))
                extra = {"llamavid": pipeline.answer_object(value, loaded), "llamavid_notes": value.notes}
                yield data(schemas.chunk(ident, created, loaded.name, {}, _finish(value, loaded), **extra))
                if include_usage:
                    yield data({**schemas.chunk(ident, created, loaded.name, {}), "choices": [], "usage": used})
                break
            else:
                try:
                    _result(event)
                except ApiError as exc:
                    yield data(exc.body())
                except Exception as exc:  # noqa: BLE001 - one line to the client, never a traceback
                    yield data({"error": error_object(500, unexpected(exc), "internal_error")})
                break
            event = await events.get()
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled.set()  # a client gone mid-stream: its generation stops after the next token


class _Server(uvicorn.Server):
    """uvicorn, saying on stderr when it is accepting connections (tests and scripts wait for it)."""

    ready_line = ""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            print(self.ready_line, file=sys.stderr, flush=True)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so `--port 0` can say which port it got."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LlamaVidError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    sock.listen(128)
    return sock


def run(app: FastAPI, sock: socket.socket, ready_line: str, *, verbose: bool = False) -> None:
    config = uvicorn.Config(app, log_level="info" if verbose else "warning", access_log=verbose, lifespan="on")
    server = _Server(config)
    server.ready_line = ready_line
    server.run(sockets=[sock])
