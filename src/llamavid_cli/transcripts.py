"""A chat's transcript on disk: Markdown to read, or the JSON pairs `ask --history` reads back.

Shared by the local chat (chat.ChatSession) and the one answered by a server (client.RemoteChat);
imports nothing heavy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from . import paths


def markdown(source: str, model: str, history: Sequence[tuple[str, str]]) -> str:
    lines = [f"# llamavid chat: {source}", "", f"Model: {model}", ""]
    for question, answer in history:
        lines += [f"**You:** {question}", "", f"**LLaMA-VID:** {answer}", ""]
    return "\n".join(lines)


def save(path: Path, source: str, model: str, history: Sequence[tuple[str, str]]) -> Path:
    """Markdown transcript, or the JSON [question, answer] pairs `ask --history` reads (.json)."""
    path = Path(path)
    if path.suffix == ".json":
        text = json.dumps([list(turn) for turn in history], indent=2, ensure_ascii=False)
    else:
        text = markdown(source, model, history)
    return paths.write_text(path, text + "\n")
