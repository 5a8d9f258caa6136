"""The CLI as a client of `llamavid serve` (`--server URL`): the request any OpenAI client sends.

The video goes as a `file://` URL (no copy) when the server allows its folder, else its bytes
go in the body (`input_video`). The answer streams back over SSE; its last chunk carries the
answer object `ask --json` prints, and a failure comes back as the exception class the server
met, so the exit code is the one `ask` would have given. Standard library only.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import errors, settings
from .errors import LlamaVidError


def _failure(body: bytes, status: int) -> LlamaVidError:
    """The server's error object as the LlamaVidError subclass it names."""
    try:
        error = json.loads(body)["error"]
        message, kind, code = error["message"], error.get("llamavid_type"), error.get("code")
    except (ValueError, KeyError, TypeError):
        return LlamaVidError(f"the server answered HTTP {status}")
    cls = getattr(errors, str(kind), LlamaVidError)
    if not (isinstance(cls, type) and issubclass(cls, LlamaVidError)):
        cls = LlamaVidError
    exc = cls(message)
    exc.code = code  # type: ignore[attr-defined]
    return exc


class Remote:
    def __init__(self, url: str, api_key: str | None = None):
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(settings.API_KEY_VAR)

    def _post(self, path: str, body: dict) -> Iterator[bytes]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url + path, json.dumps(body).encode(), headers, method="POST")
        try:
            response = urllib.request.urlopen(request, timeout=None)  # an answer may take minutes to start
        except urllib.error.HTTPError as exc:
            raise _failure(exc.read(), exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LlamaVidError(
                f"cannot reach the llamavid server at {self.url} ({reason}); is `llamavid serve` running?"
            ) from None
        with response:
            yield from response

    def ask(
        self,
        source: Path,
        question: str,
        *,
        history: list[tuple[str, str]] | None = None,
        sampling: dict[str, Any] | None = None,
        generation: Any = None,
        fit: bool = False,
        use_cache: bool = True,
        on_text: Callable[[str], None] | None = None,
        on_note: Callable[[str], None] | None = None,
        moments: int | None = None,
    ) -> dict:
        """One question about `source`; returns the answer object, `source` as given here; with
        `moments`, its `evidence` with that many moments (`ask --evidence`)."""
        if moments is not None:
            sampling = {**(sampling or {}), "evidence": True, "moments": moments}
        try:
            return self._ask(
                self._by_path(source), source, question, history, sampling, generation, fit, use_cache, on_text, on_note
            )
        except LlamaVidError as exc:
            if getattr(exc, "code", None) != "media_path_not_allowed":
                raise
        return self._ask(
            self._upload(source), source, question, history, sampling, generation, fit, use_cache, on_text, on_note
        )

    @staticmethod
    def _by_path(source: Path) -> dict:
        return {"type": "video_url", "video_url": {"url": Path(source).resolve().as_uri()}}

    @staticmethod
    def _upload(source: Path) -> dict:
        suffix = Path(source).suffix.lstrip(".")
        data = base64.b64encode(Path(source).read_bytes()).decode()
        return {"type": "input_video", "input_video": {"data": data, "format": suffix if suffix.isalnum() else "bin"}}

    def _ask(self, part, source, question, history, sampling, generation, fit, use_cache, on_text, on_note) -> dict:
        messages: list[dict] = []
        for asked, answered in history or []:
            messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
        messages.append({"role": "user", "content": [part, {"type": "text", "text": question}]})
        body: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "fit": fit,
            "cache": use_cache,
            **(sampling or {}),
        }
        if generation is not None:
            body.update(
                temperature=generation.temperature,
                top_p=generation.top_p,
                max_tokens=generation.max_new_tokens,
                seed=generation.seed,
            )
        answer = None
        for line in self._post("/v1/chat/completions", body):
            text = line.decode("utf-8").strip()
            if not text.startswith("data:"):
                continue
            data = text[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise _failure(data.encode(), 500)
            for note in chunk.get("llamavid_notes", []):
                if on_note:
                    on_note(note)
            if "llamavid" in chunk:
                answer = chunk["llamavid"]
            for choice in chunk.get("choices", []):
                piece = choice.get("delta", {}).get("content")
                if piece and on_text:
                    on_text(piece)
        if answer is None:
            raise LlamaVidError(f"the server at {self.url} ended the answer early")
        return {**answer, "source": str(source)}


def sampling_fields(sampling: Any) -> dict[str, Any]:
    """video.Sampling as the request's fields (`fps`, `max_frames`, `start`, `end`)."""
    return {k: v for k, v in sampling.as_dict().items() if v is not None}


class RemoteChat:
    """`chat --server`: the conversation is kept here, each turn answered by the server (whose
    encode cache keeps the video's features, so only the first turn decodes it)."""

    def __init__(self, remote: Remote, source: Path, *, sampling: Any, generation: Any, fit: bool, use_cache: bool):
        self.remote, self.source, self.generation = remote, source, generation
        self.sampling, self.fit, self.use_cache = sampling, fit, use_cache
        self.history: list[tuple[str, str]] = []
        self.model, self.frames = "", None

    def ask(self, question: str, on_text: Callable[[str], None] | None = None) -> dict:
        answer = self.remote.ask(
            self.source,
            question,
            history=self.history,
            sampling=sampling_fields(self.sampling),
            generation=self.generation,
            fit=self.fit,
            use_cache=self.use_cache,
            on_text=on_text,
        )
        self.history.append((question, answer["answer"].strip()))
        self.model, self.frames = answer["model"], answer["frames"]
        return answer

    def reset(self) -> None:
        self.history = []

    def save(self, path: Path) -> Path:
        from .transcripts import save

        return save(path, str(self.source), self.model, self.history)
