"""The token budget: how many frames fit in a model's context beside the text (method.md §6, §7).

`ask` and `chat` decide how many frames to decode before decoding any (frames are counted from
the container's metadata by `video.count_frames`): a source that cannot fit is refused with the
numbers, or with --fit sampled more sparsely. The frame count --fit settles on comes from a
fixed allowance for the question, not the question itself, so it is part of the encode cache
key without making every new question decode the video again; a question or history longer
than the allowance then drops a few more frames from what was decoded (evenly spaced), which
costs no decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import ContextLengthError
from .loader import Loaded
from .model.llamavid import IMAGE_PLACEHOLDER
from .model.prompt import IMAGE_TOKEN, Conversation, movie_text, tokenize_prompt
from .subtitles import Cue
from .video import Sampling, even_subset

if TYPE_CHECKING:
    from .encoded import EncodedVideo

# Stands in for a question that is not known yet (a chat's) or must not change the cache key (ask).
QUESTION_ALLOWANCE = "x " * 48

History = Sequence[tuple[str, str]] | None

# `--model auto` decides before any tokenizer is loaded: the template and a question are
# estimated at PROMPT_ALLOWANCE tokens, and a video model's frame is 1 context + 1 content token.
PROMPT_ALLOWANCE = 160
VIDEO_TOKENS_PER_FRAME = 2


def rough_need(frames: int, max_new_tokens: int) -> int:
    """Tokens a video model needs for `frames` frames, the text and the answer, without a tokenizer."""
    return VIDEO_TOKENS_PER_FRAME * frames + PROMPT_ALLOWANCE + max_new_tokens


def build_prompt(
    loaded: Loaded,
    question: str,
    frames: int,
    history: History = None,
    subtitles_per_frame: list[list[str]] | None = None,
) -> list[int]:
    """vicuna_v1 prompt ids with placeholders (method.md §6; §7 for the long-video model)."""
    conversation = Conversation(list(history or []))
    if loaded.long_video:
        video_text = movie_text(subtitles_per_frame or [[] for _ in range(frames)])
    else:
        video_text = IMAGE_TOKEN + "\n"
    return tokenize_prompt(loaded.tokenizer, conversation.prompt(question, video_text))


def subtitle_tokens(loaded: Loaded, cues: Sequence[Cue]) -> int:
    """Tokens the cues add to the long-video prompt (none in short-video mode). Each cue text is
    counted on its own, as it is tokenised after its frame's `<image>`; joining two cues of one
    frame with a space changes that by a token at most."""
    if not loaded.long_video:
        return 0
    return sum(len(loaded.tokenizer.encode(cue.text, bos=False)) for cue in cues)


def text_tokens(loaded: Loaded, question: str, history: History = None, cues: Sequence[Cue] = ()) -> int:
    """Prompt tokens that are not video: template, history, question (and the movie wrapper
    with its subtitles in long-video mode)."""
    template = sum(1 for i in build_prompt(loaded, question, 0, history) if i != IMAGE_PLACEHOLDER)
    return template + subtitle_tokens(loaded, cues)


def frame_budget(loaded: Loaded, question: str, history: History, max_new_tokens: int, cues: Sequence[Cue] = ()) -> int:
    """Most frames that fit in the context beside the text and a full-length answer."""
    room = loaded.config.context_length - text_tokens(loaded, question, history, cues) - max_new_tokens
    return max(0, room // loaded.config.tokens_per_frame())


def context_error(
    loaded: Loaded, frames: int, question: str, history: History, max_new_tokens: int, cues: Sequence[Cue] = ()
) -> ContextLengthError:
    """The numbers of a source that does not fit, and the ways out."""
    per_frame = loaded.config.tokens_per_frame()
    text = text_tokens(loaded, question, history, cues)
    subs = subtitle_tokens(loaded, cues)
    need = text + frames * per_frame + max_new_tokens
    budget = frame_budget(loaded, question, history, max_new_tokens, cues)
    if budget == 0:
        ways = (
            "the text alone leaves no room for frames: "
            + ("give a shorter subtitle file, " if subs else "")
            + "shorten the question or history, or lower --max-new-tokens"
        )
    else:
        ways = f"sample at most {budget} frames (--fps, --max-frames N, or --fit to do it for you), pick a --start/--end range"
        if not loaded.long_video:
            ways += ", or use the long-video model (--model long-7b)"
    text_part = f"{text} text ({subs} of them subtitles)" if subs else f"{text} text"
    return ContextLengthError(
        f"{frames} frames × {per_frame} tokens + {text_part} + {max_new_tokens} for the answer = {need} tokens, "
        f"but {loaded.name} holds {loaded.config.context_length}; {ways}"
    )


def fit(
    loaded: Loaded,
    frames: int,
    sampling: Sampling,
    *,
    question: str | None,
    history: History,
    max_new_tokens: int,
    allow: bool,
    cues: Sequence[Cue] = (),
) -> tuple[Sampling, str | None]:
    """The sampling to decode with, given the `frames` it would choose: unchanged when they fit,
    else (with `allow`, i.e. --fit) capped at what fits beside the question allowance, with a
    note; else a ContextLengthError. `question` None means not known yet (chat)."""
    asked = QUESTION_ALLOWANCE if question is None else question
    budget = frame_budget(loaded, asked, history, max_new_tokens, cues)
    if frames <= budget:
        return sampling, None
    if not allow or budget == 0:
        raise context_error(loaded, frames, asked, history, max_new_tokens, cues)
    # The cap does not depend on this question or history (it is in the cache key); `trim`
    # takes off what a longer question needs after decoding.
    cap = frame_budget(loaded, QUESTION_ALLOWANCE, None, max_new_tokens, cues) or budget
    cap = min(cap, frames)
    return replace(sampling, max_frames=cap), f"sampling {cap} of {frames} frames so the video fits the context (--fit)"


def trim(
    loaded: Loaded,
    prepared: EncodedVideo,
    *,
    question: str | None,
    history: History,
    max_new_tokens: int,
    allow: bool,
) -> tuple[EncodedVideo, str | None]:
    """A decoded source cut to fit (evenly spaced frames), or a ContextLengthError without `allow`:
    the check for what metadata could not tell (a .vidtok, a question longer than the allowance)."""
    asked = QUESTION_ALLOWANCE if question is None else question
    budget = frame_budget(loaded, asked, history, max_new_tokens, prepared.cues)
    if prepared.num_frames <= budget:
        return prepared, None
    if not allow or budget == 0:
        raise context_error(loaded, prepared.num_frames, asked, history, max_new_tokens, prepared.cues)
    note = f"using {budget} of {prepared.num_frames} frames so the video fits the context (--fit)"
    return prepared.select(even_subset(prepared.num_frames, budget)), note
