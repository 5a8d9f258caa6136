"""The functions the CLI calls: encode a source into tokens, answer a question about it.

Data flows one way: file → frames (video.py) → pixels (pixels.py) → tower features →
tokens for an instruction → (a .vidtok) → prompt → LLM → text. A source is a video, a
still image or a .vidtok; which one is found by opening it, never by its name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from . import cache, checkpoints, context, defaults, speech, subtitles, video, vidtok
from .config import read_config
from .context import build_prompt, context_error  # noqa: F401  (build_prompt re-exported for callers)
from .defaults import AUTO_MODEL, DEFAULT_PROMPT  # noqa: F401  (re-exported: pipeline.AUTO_MODEL)
from .encoded import EncodedVideo
from .encoder import DECODE_BATCH, NO_FRAMES, Frames, encode_source, source_info  # noqa: F401  (re-exported)
from .errors import LlamaVidError, UsageError, VideoError
from .loader import Loaded
from .model.llamavid import IMAGE_PLACEHOLDER, CallbackStreamer
from .video import Sampling  # (frame choice is video.py's; callers know it as pipeline.Sampling)
from .vidtok import is_vidtok  # noqa: F401  (callers ask pipeline.is_vidtok; sniffing is vidtok.py's)

if TYPE_CHECKING:
    import torch

    from .evidence import Evidence

# Given the number of frames about to be decoded, a context manager around the decoding that
# yields the callback told how many frames each batch added (a progress bar).
FrameProgress = Callable[[int], AbstractContextManager[Callable[[int], None]]]


@dataclass
class GenerationSettings:
    """The original chat CLI's defaults: temperature 0.2, top-p 0.7, 512 new tokens."""

    temperature: float = defaults.TEMPERATURE
    top_p: float = defaults.TOP_P
    max_new_tokens: int = defaults.MAX_NEW_TOKENS
    seed: int | None = None


@dataclass
class SubtitleRequest:
    """Where a video's subtitles come from: a file, Whisper, or else the container's own track."""

    file: Path | None = None
    transcribe: bool = False
    whisper_model: str = speech.DEFAULT_WHISPER


@dataclass
class Answer:
    answer: str
    source: str
    model: str
    frames: int
    duration: float | None
    prompt_ids: list[int]
    output_ids: list[int]
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    evidence: Evidence | None = None  # per-frame relevance and top moments, when asked for (evidence.py)

    def as_dict(self) -> dict:
        extra = {"evidence": self.evidence.as_dict()} if self.evidence is not None else {}
        return {
            "answer": self.answer,
            "source": self.source,
            "model": self.model,
            "frames": self.frames,
            "duration": self.duration,
            "timings": self.timings,
            "tokens": {"prompt": len(self.prompt_ids), "output": len(self.output_ids)},
            "prompt_ids": self.prompt_ids,
            "output_ids": self.output_ids,
            **extra,
        }


# ---- sources ---------------------------------------------------------------------------


def check_source(path: Path, model: tuple[str, str] | None = None) -> str:
    """Fail fast, before the model loads: "vidtok", "image" or "video", or a one-line error.

    `model` is (name, fingerprint) of the checkpoint in use, to refuse a .vidtok made by another."""
    path = Path(path)
    if is_vidtok(path):
        stored = vidtok.read_header(path)
        if model:
            vidtok.check_model(stored, path, *model)
        return "vidtok"
    from .paths import is_regular

    try:
        info = video.probe(path)
    except VideoError:
        if path.suffix.lower() == ".vidtok" and is_regular(path):
            vidtok.read_header(path)  # says what is wrong with it as a .vidtok, not as a video
        raise
    return "image" if info.is_image else "video"


def prepare(
    loaded: Loaded,
    path: Path,
    sampling: Sampling | None = None,
    *,
    question: str | None = None,
    use_cache: bool = True,
    progress: FrameProgress | None = None,
    subs: SubtitleRequest | None = None,
    opened: Opened | None = None,
    frames: Frames | None = None,
    cuts: bool | None = None,
) -> EncodedVideo:
    """Open a source (see `_prepare`) and attach its subtitles where they will be used.

    Whisper never runs for a short-video model, which would ignore what it heard (the CLI
    refuses --transcribe there before loading anything: `check_transcribe`)."""
    subs = subs or SubtitleRequest()
    notes = []
    if subs.transcribe and not loaded.long_video:
        subs = replace(subs, transcribe=False)
        notes.append(f"--transcribe skipped: {TRANSCRIBE_UNUSED}")
    if subs.file and not loaded.long_video:
        notes.append("subtitles are only read by the long-video prompt; pass --long-video to use them")
    prepared = _prepare(
        loaded,
        Path(path),
        sampling,
        question=question,
        use_cache=use_cache,
        progress=progress,
        opened=opened,
        frames=frames,
        cuts=cuts,
    )
    cues = prepared.cues
    if subs.file or subs.transcribe or (loaded.long_video and not prepared.cues):
        cues = tuple(gather_cues(Path(path), subs, prepared.cues, on_note=notes.append))
    return replace(prepared, cues=cues, notes=prepared.notes + tuple(notes))


TRANSCRIBE_UNUSED = "only the long-video prompt reads subtitles (add --long-video, or use --model long-7b)"


def check_transcribe(model: str, long_video: bool | None, subs: SubtitleRequest) -> None:
    """Refuse --transcribe for a model that would ignore the subtitles, before Whisper or the
    model loads (reads the checkpoint's config.json only)."""
    if not subs.transcribe:
        return
    if long_video is None:
        long_video = read_config(checkpoints.resolve(model)).long_video
    if not long_video:
        raise UsageError(f"--transcribe makes subtitles that {model} would not read: {TRANSCRIBE_UNUSED}")


def gather_cues(
    path: Path,
    subs: SubtitleRequest,
    stored: Sequence[subtitles.Cue],
    on_note: Callable[[str], None] | None = None,
) -> list[subtitles.Cue]:
    """A subtitle file wins; then Whisper when asked (unless stored already); then what the
    source carries: a .vidtok's stored cues or the container's text track. A transcript the
    cache could not keep is a note to `on_note`, not a failure."""
    if subs.file:
        return subtitles.read_subtitles(subs.file)
    if stored:
        return list(stored)
    if is_vidtok(path) or video.is_image(path):
        return []
    if not subs.transcribe:
        return subtitles.embedded_cues(path)
    digest = cache.content_hash(path)  # transcribed once per video and Whisper model
    cues = cache.lookup_transcript(digest, subs.whisper_model)
    if cues is None:
        cues = speech.transcribe(path, model=subs.whisper_model)
        try:
            cache.store_transcript(digest, subs.whisper_model, cues)
        except cache.CacheWriteError as exc:
            if on_note:
                on_note(str(exc))
    return cues


@dataclass(frozen=True)
class Opened:
    """A source looked at without decoding (`open_source`): ready (`ready`: a .vidtok or a
    cache hit) or still to encode with `sampling`, `info` its hashed source description."""

    path: Path
    sampling: Sampling
    ready: EncodedVideo | None = None
    info: dict | None = None
    cacheable: bool = False


def open_source(loaded: Loaded, path: Path, sampling: Sampling | None = None, *, use_cache: bool = True) -> Opened:
    """The light first half of `_prepare`: read a .vidtok, or hash a video and look it up in the
    cache. A batch runs this ahead in its decoder thread, so a hit is never decoded."""
    path = Path(path)
    sampling = sampling or Sampling()
    if is_vidtok(path):
        stored = vidtok.read(path)
        vidtok.check_model(stored, path, loaded.name, loaded.fingerprint, loaded.long_video, loaded.config.long_video)
        if stored.features is None:
            note = (
                f"{path.name} holds no features: answering with context tokens made for its encode prompt "
                f"({stored.prompt!r}); encode with --keep-features for question-specific context"
            )
            stored = replace(stored, notes=(note,))
        return Opened(path, sampling, ready=stored)
    cacheable = use_cache and not video.is_image(path)
    if not cacheable:
        return Opened(path, sampling)
    info = source_info(path)
    return Opened(path, sampling, ready=cached(loaded, info, sampling), info=info, cacheable=True)


def _prepare(
    loaded: Loaded,
    path: Path,
    sampling: Sampling | None = None,
    *,
    question: str | None = None,
    use_cache: bool = True,
    progress: FrameProgress | None = None,
    opened: Opened | None = None,
    frames: Frames | None = None,
    cuts: bool | None = None,
) -> EncodedVideo:
    """Open a .vidtok, or decode a video/image, into something questions can be asked of.

    Videos go through the encode cache: a hit skips decoding and the vision tower; a miss
    encodes with features and stores them, so later questions are exact and fast. Without the
    cache, `question` (if given) gets its tokens and no features are kept (one-shot `ask`).
    `opened` is `open_source`'s result when done already; `frames` the source decoded elsewhere;
    `cuts`: find the shot cuts in the same decode (for chapters); None: when the encode is kept
    in the cache, so `chapters` later decodes nothing (bench/encode.py part 6: about a tenth
    more decoding CPU), and not for a one-shot answer that keeps nothing."""
    opened = opened or open_source(loaded, path, sampling, use_cache=use_cache)
    if opened.ready is not None:
        return opened.ready
    path, sampling, info, cacheable = opened.path, opened.sampling, opened.info, opened.cacheable
    keep = cacheable or question is None
    with progress(expected_frames(path, sampling)) if progress else nullcontext() as advance:
        encoded = encode_source(
            loaded,
            path,
            question or DEFAULT_PROMPT,
            sampling,
            keep_features=keep,
            on_frames=advance,
            info=info,
            frames=frames,
            detect_cuts=cacheable if cuts is None else cuts,
        )
    if cacheable:
        try:
            cache.store(cache.key(encoded.source["hash"], loaded.fingerprint, sampling.as_dict()), encoded)
        except cache.CacheWriteError as exc:  # the answer does not need the cache: warn and go on
            encoded = replace(encoded, notes=encoded.notes + (str(exc),))
    return encoded


def cached(loaded: Loaded, info: dict, sampling: Sampling) -> EncodedVideo | None:
    """This exact encode from the cache, or a time range cut from the whole video's encode."""
    stored = cache.lookup(cache.key(info["hash"], loaded.fingerprint, sampling.as_dict()))
    if stored is not None:
        return stored
    if sampling.start is None and sampling.end is None:
        return None
    whole = Sampling(sampling.fps, sampling.max_frames)
    stored = cache.lookup(cache.key(info["hash"], loaded.fingerprint, whole.as_dict()))
    if stored is None or sampling.max_frames is not None:
        return None
    end = sampling.end if sampling.end is not None else float("inf")
    keep = [i for i, t in enumerate(stored.timestamps) if (sampling.start or 0.0) <= t < end]
    if not keep:
        raise VideoError("no frames in the chosen range; widen --start/--end")
    return stored.select(keep)


def choose_model(sources: list[Path], sampling: Sampling, max_new_tokens: int) -> tuple[str, str]:
    """`--model auto`: the short 7B model when the videos fit its context, else the long 7B
    model; a .vidtok answers with the model that made it. Returns (model, why). Nothing is
    downloaded to decide (`checkpoints.context_length`)."""
    frames = 0
    for source in sources:
        if is_vidtok(source):
            model = vidtok.read_header(source).model
            return model, f"{source.name} was encoded with it"
        try:
            frames = max(frames, expected_frames(source, sampling))
        except LlamaVidError:
            if len(sources) == 1:
                raise
            # a damaged file in a batch is reported when its turn comes
    need = context.rough_need(frames, max_new_tokens)
    short, room = checkpoints.SHORT_VIDEO_MODEL, checkpoints.context_length(checkpoints.SHORT_VIDEO_MODEL)
    if need <= room:
        return short, f"{frames} frames fit its {room}-token context"
    return checkpoints.LONG_VIDEO_MODEL, f"{frames} frames need about {need} tokens, more than the short model's {room}"


def expected_frames(path: Path, sampling: Sampling) -> int:
    """Frames the sampling will choose (an image: 1), from the container's metadata before any
    decoding: `video.count_frames`, which plans what `video.iter_frames` then yields."""
    return video.count_frames(video.probe(path), sampling)


def check_sampling(path: Path, sampling: Sampling) -> int | None:
    """The frames a video's sampling chooses, or a one-line error before anything loads: a
    --start past the end, or a range with no frame in it (None for a .vidtok)."""
    if is_vidtok(path):
        return None
    frames = expected_frames(path, sampling)
    if frames == 0 and video.probe(path).frame_count:
        raise VideoError(f"{path}: {NO_FRAMES}")
    return frames


def answer_inputs(
    loaded: Loaded,
    prepared: EncodedVideo,
    question: str,
    history: list[tuple[str, str]] | None,
    max_new_tokens: int,
) -> tuple[list[int], torch.Tensor, int]:
    """What the LLM reads for one question: prompt ids with placeholders, the visual rows
    [T,H] and the frame count; a ContextLengthError when they and the answer do not fit."""
    tokens = prepared.tokens_for(loaded, question)
    visual = tokens.sequence()
    per_frame = subtitles.align(prepared.cues, prepared.timestamps) if loaded.long_video else None
    prompt_ids = build_prompt(loaded, question, tokens.num_frames, history, per_frame)
    used = sum(1 for i in prompt_ids if i != IMAGE_PLACEHOLDER) + visual.shape[0]
    if used + max_new_tokens > loaded.config.context_length:
        raise context_error(loaded, tokens.num_frames, question, history, max_new_tokens, prepared.cues)
    return prompt_ids, visual, tokens.num_frames


def answer_object(result: Answer, loaded: Loaded) -> dict:
    """The answer object `ask --json` and `summarize --json` print (docs/json.md)."""
    from .loader import describe

    return {**result.as_dict(), **describe(loaded)}


def answer(
    loaded: Loaded,
    prepared: EncodedVideo,
    question: str,
    *,
    history: list[tuple[str, str]] | None = None,
    generation: GenerationSettings | None = None,
    on_text: Callable[[str], None] | None = None,
    source: str = "",
    evidence: bool = False,
    moments: int = defaults.EVIDENCE_MOMENTS,
    stop: Callable[[], bool] | None = None,
) -> Answer:
    """Answer one question about a prepared source, streaming text to `on_text`; with `evidence`,
    also where in the video the answer drew from (`Answer.evidence`, the best `moments`); `stop`,
    asked after every token, ends the answer early when true (the server's client went away)."""
    if not question.strip():
        raise UsageError("the question is empty")
    generation = generation or GenerationSettings()
    started = time.perf_counter()
    prompt_ids, visual, num_frames = answer_inputs(loaded, prepared, question, history, generation.max_new_tokens)
    encoded_at = time.perf_counter()
    first: list[float] = []

    def stream(text: str) -> None:
        if not first:
            first.append(time.perf_counter())
        if on_text:
            on_text(text)

    if loaded.long_video:
        loaded.model.release_vision()  # the memory plan for an hour of video: tower out before the prefill
    streamer = CallbackStreamer(loaded.tokenizer.decode, stream, loaded.config.llm.eos_token_id)
    capture = None
    if evidence:
        from . import evidence as relevance

        per_frame = visual.shape[0] // num_frames  # the context token and the content token(s)
        positions = relevance.frame_positions(prompt_ids, num_frames, per_frame)
        capture = relevance.Capture(positions, num_frames)
    with capture.attached(loaded.model.llm) if capture is not None else nullcontext():
        result = loaded.model.generate(
            prompt_ids,
            visual,
            max_new_tokens=generation.max_new_tokens,
            temperature=generation.temperature,
            top_p=generation.top_p,
            seed=generation.seed,
            streamer=streamer,
            stop=stop,
        )
    done = time.perf_counter()
    found = None
    if capture is not None:
        duration = prepared.source.get("duration")
        found = relevance.make(prepared.timestamps, capture.scores(), duration, moments)
    return Answer(
        answer=loaded.tokenizer.decode(result.output_ids).strip(),
        source=source or prepared.source.get("name", ""),
        model=loaded.name,
        frames=num_frames,
        duration=prepared.source.get("duration"),
        prompt_ids=prompt_ids,
        output_ids=result.output_ids,
        timings={
            "tokens_s": round(encoded_at - started, 4),
            "first_token_s": round((first[0] if first else done) - started, 4),
            "generate_s": round(done - encoded_at, 4),
        },
        evidence=found,
    )


def ask(
    loaded: Loaded,
    path: Path,
    question: str,
    *,
    history: list[tuple[str, str]] | None = None,
    sampling: Sampling | None = None,
    use_cache: bool = True,
    fit: bool = False,
    subs: SubtitleRequest | None = None,
    generation: GenerationSettings | None = None,
    on_text: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    progress: FrameProgress | None = None,
    evidence: bool = False,
    moments: int = defaults.EVIDENCE_MOMENTS,
) -> Answer:
    """One question about a video, image or .vidtok, from file to answer (`evidence`: see `answer`).

    The context is checked before any decoding: a video that cannot fit is refused with the
    numbers, or with `fit`, sampled more sparsely (evenly spaced frames) until it fits."""
    if not question.strip():
        raise UsageError("the question is empty")
    path = Path(path)
    generation = generation or GenerationSettings()
    started = time.perf_counter()
    prepared = ready(
        loaded,
        path,
        question,
        history=history,
        sampling=sampling,
        use_cache=use_cache,
        fit=fit,
        subs=subs,
        max_new_tokens=generation.max_new_tokens,
        progress=progress,
    )
    for note in prepared.notes:
        if on_note:
            on_note(note)
    decoded = time.perf_counter() - started
    result = answer(
        loaded,
        prepared,
        question,
        history=history,
        generation=generation,
        on_text=on_text,
        source=str(path),
        evidence=evidence,
        moments=moments,
    )
    return finish(result, prepared, started, decoded)


def ready(
    loaded: Loaded,
    path: Path,
    question: str,
    *,
    history: list[tuple[str, str]] | None = None,
    sampling: Sampling | None = None,
    use_cache: bool = True,
    fit: bool = False,
    subs: SubtitleRequest | None = None,
    max_new_tokens: int = defaults.MAX_NEW_TOKENS,
    progress: FrameProgress | None = None,
) -> EncodedVideo:
    """`ask`'s first half, on its own so the server can decode the next request's video while the
    current one generates: fitted before decoding, decoded (or from the cache), trimmed to the
    context; the notes to show in `.notes`."""
    path = Path(path)
    subs = subs or SubtitleRequest()
    sampling, notes = fit_source(
        loaded, path, sampling, question=question, history=history, max_new_tokens=max_new_tokens, fit=fit, subs=subs
    )
    prepared = prepare(loaded, path, sampling, question=question, use_cache=use_cache, subs=subs, progress=progress)
    prepared, note = context.trim(
        loaded, prepared, question=question, history=history, max_new_tokens=max_new_tokens, allow=fit
    )
    return replace(prepared, notes=(*notes, *([note] if note else []), *prepared.notes))


def finish(result: Answer, prepared: EncodedVideo, started: float, decoded: float) -> Answer:
    """`ask`'s timings (decoding counted in, from `started`) and notes on an answer from `answer`."""
    result.timings = {"encode_s": round(decoded, 4), **result.timings}
    result.timings["first_token_s"] = round(result.timings["first_token_s"] + decoded, 4)
    result.timings["total_s"] = round(time.perf_counter() - started, 4)
    result.notes = list(prepared.notes)
    return result


def fit_source(
    loaded: Loaded,
    path: Path,
    sampling: Sampling | None,
    *,
    question: str | None,
    history: list[tuple[str, str]] | None,
    max_new_tokens: int,
    fit: bool,
    subs: SubtitleRequest | None = None,
) -> tuple[Sampling, list[str]]:
    """The sampling `ask` and `chat` decode a source with, decided before any decoding: the
    frames it would choose, plus the text and a --subtitles file's cues, against the context
    (`context.fit`; question None: chat's, not known yet). Returns it with the notes to show."""
    sampling = sampling or Sampling()
    path = Path(path)
    if is_vidtok(path):
        return sampling, []  # its frames are known once it is read (`context.trim`)
    frames = check_sampling(path, sampling)
    cues = subtitles.read_subtitles(subs.file) if subs and subs.file and loaded.long_video else []
    sampling, note = context.fit(
        loaded,
        frames,
        sampling,
        question=question,
        history=history,
        max_new_tokens=max_new_tokens,
        allow=fit,
        cues=cues,
    )
    return sampling, [note] if note else []


# ---- chapters (issue 9) -------------------------------------------------------------------


def chapter_spans(
    loaded: Loaded,
    path: Path,
    sampling: Sampling | None = None,
    *,
    min_length: float,
    max_length: float,
    use_cache: bool = True,
    progress: FrameProgress | None = None,
    on_note: Callable[[str], None] | None = None,
) -> tuple[EncodedVideo, list[tuple[float, float]]]:
    """A video's encode (with features, from the cache when there) and its chapter spans
    (`chapters.plan` on its shot cuts, found in the same decode). A cached encode without cuts
    (made before they were kept) decodes the video once more, for the cuts alone, and the cache
    keeps them; a .vidtok without cuts gets evenly split chapters, with a note."""
    from . import chapters, shots

    path = Path(path)
    sampling = sampling or Sampling()
    encoded = _prepare(loaded, path, sampling, use_cache=use_cache, progress=progress, cuts=True)
    notes = list(encoded.notes)
    if encoded.cuts is None and is_vidtok(path):
        notes.append(
            f"{path.name} holds no shot cuts: chapters split at even lengths; "
            "encode the video again (without --no-cuts) for chapters that begin on cuts"
        )
    elif encoded.cuts is None:
        encoded = replace(encoded, cuts=shots.detect(path, sampling, on_warning=notes.append))
        if use_cache and not video.is_image(path):
            try:
                cache.store(cache.key(encoded.source["hash"], loaded.fingerprint, sampling.as_dict()), encoded)
            except cache.CacheWriteError as exc:
                notes.append(str(exc))
    if loaded.long_video and not encoded.cues:
        encoded = replace(encoded, cues=tuple(gather_cues(path, SubtitleRequest(), (), on_note=notes.append)))
    for note in notes:
        if on_note:
            on_note(note)
    span = chapters.span_of(encoded, None if is_vidtok(path) else sampling.as_dict())
    spans = chapters.plan(*span, encoded.cuts or (), min_length, max_length)
    return encoded, spans
