"""A conversation about one source: history, turns and transcripts (the REPL lives in cli/chat.py).

Every turn re-attends the stored features with the latest question, as the original did at
each chat turn (method.md §5), and the history holds clean answers (no doubled `</s>`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import context, pipeline, transcripts
from .encoded import EncodedVideo
from .loader import Loaded
from .model.prompt import Conversation


def open_source(
    loaded: Loaded,
    path: Path,
    sampling: pipeline.Sampling | None = None,
    *,
    max_new_tokens: int,
    fit: bool,
    use_cache: bool = True,
    subs: pipeline.SubtitleRequest | None = None,
    progress: pipeline.FrameProgress | None = None,
) -> EncodedVideo:
    """A source decoded once for every question to come, fitted to the context before decoding
    with room for a question not known yet (`pipeline.fit_source`); notes in `.notes`."""
    sampling, notes = pipeline.fit_source(
        loaded, path, sampling, question=None, history=None, max_new_tokens=max_new_tokens, fit=fit, subs=subs
    )
    prepared = pipeline.prepare(loaded, path, sampling, use_cache=use_cache, subs=subs, progress=progress)
    prepared, note = context.trim(
        loaded, prepared, question=None, history=None, max_new_tokens=max_new_tokens, allow=fit
    )
    return replace(prepared, notes=(*notes, *([note] if note else []), *prepared.notes))


@dataclass
class ChatSession:
    loaded: Loaded
    prepared: EncodedVideo
    source: str
    generation: pipeline.GenerationSettings = field(default_factory=pipeline.GenerationSettings)
    conversation: Conversation = field(default_factory=Conversation)
    full: EncodedVideo | None = None  # the whole source, when /range narrowed `prepared`
    evidence: bool = True  # gather each answer's evidence, for /evidence (evidence.py; cheap)
    last: pipeline.Answer | None = None  # the latest answer

    def __post_init__(self) -> None:
        self.full = self.full or self.prepared

    def ask(self, question: str, on_text: Callable[[str], None] | None = None) -> pipeline.Answer:
        result = pipeline.answer(
            self.loaded,
            self.prepared,
            question,
            history=self.conversation.history,
            generation=self.generation,
            on_text=on_text,
            source=self.source,
            evidence=self.evidence,
        )
        self.conversation.add(question, result.answer)
        self.last = result
        return result

    def reset(self) -> None:
        self.conversation = Conversation()
        self.last = None

    def markdown(self) -> str:
        return transcripts.markdown(self.source, self.loaded.name, self.conversation.history)

    def save(self, path: Path) -> Path:
        """Markdown transcript, or the JSON [question, answer] pairs `ask --history` reads (.json)."""
        return transcripts.save(path, self.source, self.loaded.name, self.conversation.history)
