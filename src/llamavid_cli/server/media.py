"""A chat request's messages → the history, the question and the one video (or still, or .vidtok).

The video may come in any user message, as clients put it in the first one; it travels with the
latest question, as in `ask` (method.md §6). Earlier user and assistant messages become the
[question, answer] pairs `ask --history` reads, so the same conversation gives the same prompt.
System messages are left out: the released models have their own fixed system prompt.

Content parts taken, in the shapes clients send them:
    {"type": "video_url", "video_url": {"url": "file:///…" | "data:video/mp4;base64,…"}}   vLLM, SGLang, mlx-vlm, Ray
    {"type": "input_video", "input_video": {"data": "<base64>", "format": "mp4"}}         llama.cpp
    {"type": "image_url", "image_url": {"url": "file:///…" | "data:image/png;base64,…"}}  a still
and a plain absolute path as the url (a .vidtok, say). What a file is comes from opening it,
never from its part type or name.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import ApiError
from .schemas import Message
from .security import Policy

MEDIA_PARTS = ("video_url", "input_video", "image_url")


@dataclass(frozen=True)
class Turns:
    history: list[tuple[str, str]]
    question: str
    part: dict[str, Any]  # the media content part


@dataclass
class Media:
    """A local file for the pipeline: the client's own (file://) or an upload written by us."""

    path: Path
    label: str  # what the answer's `source` says
    temporary: bool = False

    def release(self) -> None:
        if self.temporary:
            self.path.unlink(missing_ok=True)


def _text(content: str | list[dict[str, Any]] | None, role: str, parts: list[dict[str, Any]]) -> str:
    """The message's text parts joined by newlines; media parts go to `parts`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise ApiError(400, "a text part needs a string `text`", "invalid_content")
            texts.append(part["text"])
        elif kind in MEDIA_PARTS:
            if role != "user":
                raise ApiError(400, f"a {kind} part can only be in a user message", "invalid_content")
            parts.append(part)
        else:
            raise ApiError(
                400, f"content part type {kind!r} is not taken (text, {', '.join(MEDIA_PARTS)})", "invalid_content"
            )
    return "\n".join(texts)


def turns(messages: list[Message]) -> Turns:
    """User and assistant messages, alternating, ending with the user's question."""
    parts: list[dict[str, Any]] = []
    said = [(m.role, _text(m.content, m.role, parts)) for m in messages if m.role not in ("system", "developer")]
    if not said or said[-1][0] != "user":
        raise ApiError(400, "the last message must be the user's question", "invalid_messages")
    expected = "user"
    for role, _ in said:
        if role != expected:
            raise ApiError(
                400, "user and assistant messages must alternate, starting with the user", "invalid_messages"
            )
        expected = "assistant" if role == "user" else "user"
    if len(parts) != 1:
        raise ApiError(
            400,
            f"a conversation needs exactly one video, image or .vidtok part ({len(parts)} given): "
            + ", ".join(MEDIA_PARTS),
            "invalid_content",
        )
    history = [(said[i][1], said[i + 1][1]) for i in range(0, len(said) - 1, 2)]
    return Turns(history, said[-1][1], parts[0])


def _payload(part: dict[str, Any]) -> tuple[str, str | None]:
    """(url or data URL, upload suffix from input_video's format)."""
    kind = part["type"]
    value = part.get(kind)
    if kind == "input_video":
        if not isinstance(value, dict) or not isinstance(value.get("data"), str):
            raise ApiError(400, 'input_video needs {"data": "<base64>", "format": "mp4"}', "invalid_content")
        fmt = str(value.get("format") or "mp4").strip(".")
        return "data:;base64," + value["data"], "." + fmt if fmt.isalnum() else ".bin"
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise ApiError(400, f'{kind} needs {{"url": "file:///…" or "data:…;base64,…"}}', "invalid_content")
    return url, None


def open_media(part: dict[str, Any], policy: Policy, folder: Path) -> Media:
    """The part as a local file: a permitted path, or the decoded upload written into `folder`."""
    url, suffix = _payload(part)
    if url.startswith("data:"):
        return _upload(url, suffix, policy, folder)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        raise ApiError(
            400,
            "http(s) URLs are not fetched: this server reads no network; send a file:// path under "
            "--allowed-media-path or the bytes as a data: URL",
            "unsupported_url",
        )
    if scheme == "file":
        parsed = urlsplit(url)
        if parsed.netloc not in ("", "localhost"):
            raise ApiError(400, f"{url} names another host; file:// URLs must be local", "invalid_url")
        raw = unquote(parsed.path)
    elif url.startswith("/"):
        raw = url
    else:
        raise ApiError(400, f"{url[:80]!r} is neither a file://, a data: URL nor an absolute path", "invalid_url")
    return Media(policy.local_file(raw), raw)


def _upload(url: str, suffix: str | None, policy: Policy, folder: Path) -> Media:
    header, comma, data = url.partition(",")
    if not comma or not header.endswith(";base64"):
        raise ApiError(400, "data: URLs must be base64 (data:video/mp4;base64,…)", "invalid_url")
    policy.check_upload(len(data) * 3 // 4)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the upload is not valid base64", "invalid_media") from None
    policy.check_upload(len(raw))
    if not raw:
        raise ApiError(400, "the upload is empty", "invalid_media")
    mime = header[5:].split(";")[0]
    if suffix is None:
        subtype = mime.partition("/")[2]
        suffix = "." + subtype if subtype.isalnum() else ".bin"
    fd, name = tempfile.mkstemp(suffix=suffix, dir=folder)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    return Media(Path(name), "upload" + suffix, temporary=True)
