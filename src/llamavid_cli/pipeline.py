"""The functions the CLI calls: encode a source into tokens, answer a question about it.

Data flows one way: file → frames (video.py) → pixels (pixels.py) → tower features →
tokens for an instruction → (a .vidtok) → prompt → LLM → text. A source is a video, a
still image or a .vidtok; which one is found by opening it, never by its name.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from . import cache, checkpoints, context, defaults, pixels, speech, subtitles, video, vidtok
from .config import read_config
from .defaults import AUTO_MODEL, DEFAULT_PROMPT  # noqa: F401  (re-exported: pipeline.AUTO_MODEL)
from .context import build_prompt, context_error
from .errors import LlamaVidError, UsageError, VideoError
from .loader import Loaded
from .model.llamavid import IMAGE_PLACEHOLDER, CallbackStreamer, FrameTokens
from .video import Sampling  # (frame choice is video.py's; callers know it as pipeline.Sampling)

DECODE_BATCH = 16  # frames decoded and pushed through the tower together

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
class Encoded:
    tokens: FrameTokens
    timestamps: list[float]
    features: torch.Tensor | None  # [F, T, V] float16 on the CPU when kept
    source: dict
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


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

    def as_dict(self) -> dict:
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
        }


# ---- sources ---------------------------------------------------------------------------


def is_vidtok(path: Path) -> bool:
    """A safetensors header that names our format (cheap: reads the header only; never opens a
    FIFO or device, which could block)."""
    from .paths import is_regular

    if not is_regular(path):
        return False
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            return 0 < size < 100_000_000 and b'"llamavid.vidtok"' in f.read(min(size, 1 << 20))
    except OSError:
        return False


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


def source_info(path: Path) -> dict:
    """Name, size, a sampled content hash (size + first and last 4 MiB) and the stream's shape."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        digest.update(f.read(4 << 20))
        if size > 8 << 20:
            f.seek(-(4 << 20), 2)
            digest.update(f.read())
    info = video.probe(path)
    return {
        "name": path.name, "size": size, "hash": digest.hexdigest()[:32], "duration": info.duration,
        "width": info.width, "height": info.height, "fps": info.fps, "codec": info.codec,
    }


def _pixel_batches(loaded: Loaded, path: Path, sampling: Sampling, warnings: list[str]) -> Iterator[tuple[torch.Tensor, list[float]]]:
    """Normalised pixel batches [b,3,S,S] on the model's device, with their timestamps."""
    size = loaded.config.vision.image_size
    device, dtype = loaded.model.vision_device, loaded.model.vision_dtype
    if video.is_image(path):
        image = video.load_image(path)
        if loaded.config.pad_images:
            image = pixels.pad_to_square(image)
        yield pixels.normalize(pixels.resize_and_crop(image, size)[None], device, dtype), [0.0]
        return
    batch, stamps = [], []
    frames = video.iter_frames(path, sampling, size=size, on_warning=warnings.append)
    for frame in frames:
        batch.append(frame.image)
        stamps.append(frame.time)
        if len(batch) == DECODE_BATCH:
            yield pixels.normalize(np.stack(batch), device, dtype), stamps
            batch, stamps = [], []
    if batch:
        yield pixels.normalize(np.stack(batch), device, dtype), stamps


def encode_source(
    loaded: Loaded,
    path: Path,
    instruction: str,
    sampling: Sampling | None = None,
    *,
    keep_features: bool = False,
    on_frames: Callable[[int], None] | None = None,
    info: dict | None = None,
) -> Encoded:
    """Video or image → context and content tokens for `instruction` (features kept on request)."""
    sampling = sampling or Sampling()
    path = Path(path)
    started = time.perf_counter()
    warnings: list[str] = []
    model = loaded.model
    contexts, contents, stamps, kept = [], [], [], []
    for batch, times in _pixel_batches(loaded, path, sampling, warnings):
        features = model.vision_features(batch)  # (b, 1+P, V)
        tokens = model.frame_tokens(features, instruction, long_video=loaded.long_video)
        _check_finite(path, times, features, tokens)
        contexts.append(tokens.context)
        contents.append(tokens.content)
        stamps += times
        if keep_features:
            kept.append(features.to("cpu", torch.float16))
        if on_frames:
            on_frames(len(times))
    if not contexts:
        raise VideoError(f"{path}: {NO_FRAMES}")
    info = info or source_info(path)
    return Encoded(
        tokens=FrameTokens(torch.cat(contexts), torch.cat(contents)),
        timestamps=stamps,
        features=torch.cat(kept) if keep_features else None,
        source=info,
        warnings=warnings,
        seconds=time.perf_counter() - started,
    )


NO_FRAMES = "no frames in the chosen range; widen --start/--end or raise --fps"


def _check_finite(path: Path, times: list[float], features: torch.Tensor, tokens: FrameTokens) -> None:
    """NaN/Inf from an overflowing kernel would reach the LLM as garbage (or crash sampling): stop here."""
    if not all(bool(torch.isfinite(t).all()) for t in (features, tokens.context, tokens.content)):
        raise VideoError(
            f"{path}: the vision tower produced NaN or infinite values for the frames at {times[0]:.1f}–{times[-1]:.1f} s; "
            "try --dtype float32 or another --device"
        )


def to_vidtok(
    loaded: Loaded, encoded: Encoded, instruction: str, sampling: Sampling, cues: list[subtitles.Cue] = ()
) -> vidtok.Vidtok:
    return vidtok.Vidtok(
        context=encoded.tokens.context[:, 0],
        content=encoded.tokens.content,
        timestamps=torch.tensor(encoded.timestamps, dtype=torch.float64),
        model=loaded.name,
        fingerprint=loaded.fingerprint,
        prompt=instruction,
        features=encoded.features,
        features_cls=True,
        long_video=loaded.long_video,
        sampling=sampling.as_dict(),
        source=encoded.source,
        subtitles=[{"start": c.start, "end": c.end, "text": c.text} for c in cues],
    )


@dataclass
class Prepared:
    """A source made ready for questions: tower features (exact context tokens for any question),
    or fixed tokens from a .vidtok without features, or tokens already made for one question."""

    source: dict
    timestamps: list[float]
    features: torch.Tensor | None = None
    features_cls: bool = True
    fixed: FrameTokens | None = None
    made_for: tuple[str, FrameTokens] | None = None
    notes: list[str] = field(default_factory=list)
    cues: list[subtitles.Cue] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)

    def subset(self, keep: list[int]) -> "Prepared":
        """These frames only (evenly spaced ones, to fit a context)."""
        pick = torch.tensor(keep)
        made_for = None
        if self.made_for:
            question, tokens = self.made_for
            made_for = (question, FrameTokens(tokens.context[pick], tokens.content[pick]))
        return Prepared(
            self.source, [self.timestamps[i] for i in keep],
            self.features[pick] if self.features is not None else None, self.features_cls,
            FrameTokens(self.fixed.context[pick], self.fixed.content[pick]) if self.fixed else None,
            made_for, list(self.notes), list(self.cues),
        )

    def tokens(self, loaded: Loaded, question: str) -> FrameTokens:
        if self.made_for and self.made_for[0] == question:
            return self.made_for[1]
        if self.features is not None:
            return loaded.model.frame_tokens(
                self.features, question, has_cls=self.features_cls, long_video=loaded.long_video
            )
        if self.fixed is None:
            raise ValueError("prepared source holds neither features nor tokens")
        return self.fixed


def prepare(
    loaded: Loaded, path: Path, sampling: Sampling | None = None, *, question: str | None = None,
    use_cache: bool = True, progress: FrameProgress | None = None, subs: SubtitleRequest | None = None,
) -> Prepared:
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
    prepared = _prepare(loaded, Path(path), sampling, question=question, use_cache=use_cache, progress=progress)
    if subs.file or subs.transcribe or (loaded.long_video and not prepared.cues):
        prepared.cues = gather_cues(Path(path), subs, prepared.cues)
    prepared.notes += notes
    return prepared


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


def gather_cues(path: Path, subs: SubtitleRequest, stored: list[subtitles.Cue]) -> list[subtitles.Cue]:
    """A subtitle file wins; then Whisper when asked (unless stored already); then what the
    source carries: a .vidtok's stored cues or the container's text track."""
    if subs.file:
        return subtitles.read_subtitles(subs.file)
    if stored:
        return stored
    if is_vidtok(path) or video.is_image(path):
        return []
    if subs.transcribe:
        return transcribed(path, subs.whisper_model)
    return subtitles.embedded_cues(path)


def transcribed(path: Path, model: str) -> list[subtitles.Cue]:
    """Whisper's cues, from the cache when this video was transcribed with this model before."""
    stored = cache.transcript(source_info(path)["hash"], model)
    if stored.is_file():
        try:
            return [subtitles.Cue(**c) for c in json.loads(stored.read_text())]
        except (ValueError, TypeError):
            stored.unlink(missing_ok=True)
    cues = speech.transcribe(path, model=model)
    stored.parent.mkdir(parents=True, exist_ok=True)
    tmp = stored.with_name(f".{stored.name}.tmp")
    tmp.write_text(json.dumps([{"start": c.start, "end": c.end, "text": c.text} for c in cues]))
    tmp.replace(stored)
    return cues


def _prepare(
    loaded: Loaded, path: Path, sampling: Sampling | None = None, *, question: str | None = None,
    use_cache: bool = True, progress: FrameProgress | None = None,
) -> Prepared:
    """Open a .vidtok, or decode a video/image, into something questions can be asked of.

    Videos go through the encode cache: a hit skips decoding and the vision tower; a miss
    encodes with features and stores them, so later questions are exact and fast. Without the
    cache, `question` (if given) gets its tokens and no features are kept (one-shot `ask`)."""
    path = Path(path)
    sampling = sampling or Sampling()
    if is_vidtok(path):
        stored = vidtok.read(path)
        vidtok.check_model(stored, path, loaded.name, loaded.fingerprint, loaded.long_video, loaded.config.long_video)
        prepared = from_vidtok(stored)
        if stored.features is None:
            prepared.notes.append(
                f"{path.name} holds no features: answering with context tokens made for its encode prompt "
                f"({stored.prompt!r}); encode with --keep-features for question-specific context"
            )
        return prepared
    cacheable = use_cache and not video.is_image(path)
    info = None
    if cacheable:
        info = source_info(path)
        hit = cached(loaded, info, sampling)
        if hit is not None:
            return hit
    keep = cacheable or question is None
    with progress(expected_frames(path, sampling)) if progress else nullcontext() as advance:
        encoded = encode_source(
            loaded, path, question or DEFAULT_PROMPT, sampling, keep_features=keep, on_frames=advance, info=info
        )
    prepared = Prepared(encoded.source, encoded.timestamps, encoded.features, notes=list(encoded.warnings))
    prepared.made_for = (question or DEFAULT_PROMPT, encoded.tokens)
    if cacheable:
        entry_key = cache.key(encoded.source["hash"], loaded.fingerprint, sampling.as_dict())
        try:
            cache.store(entry_key, to_vidtok(loaded, encoded, question or DEFAULT_PROMPT, sampling))
        except cache.CacheWriteError as exc:
            prepared.notes.append(str(exc))  # the answer does not need the cache: warn and go on
    return prepared


def from_vidtok(stored: vidtok.Vidtok, keep: torch.Tensor | None = None) -> Prepared:
    """A Prepared from a stored encode; `keep` selects frames (a time range of a cached encode)."""
    pick = (lambda t: t[keep]) if keep is not None else (lambda t: t)
    features = pick(stored.features) if stored.features is not None else None
    prepared = Prepared(stored.source, pick(stored.timestamps).tolist(), features, stored.features_cls)
    prepared.cues = [subtitles.Cue(**c) for c in stored.subtitles]
    if features is None:
        prepared.fixed = FrameTokens(pick(stored.context)[:, None], pick(stored.content))
    return prepared


def cached(loaded: Loaded, info: dict, sampling: Sampling) -> Prepared | None:
    """This exact encode from the cache, or a time range cut from the whole video's encode."""
    stored = cache.lookup(cache.key(info["hash"], loaded.fingerprint, sampling.as_dict()))
    if stored is not None:
        return from_vidtok(stored)
    if sampling.start is None and sampling.end is None:
        return None
    whole = Sampling(sampling.fps, sampling.max_frames)
    stored = cache.lookup(cache.key(info["hash"], loaded.fingerprint, whole.as_dict()))
    if stored is None or sampling.max_frames is not None:
        return None
    stamps = stored.timestamps
    keep = (stamps >= (sampling.start or 0.0)) & (stamps < (sampling.end if sampling.end is not None else float("inf")))
    if not keep.any():
        raise VideoError("no frames in the chosen range; widen --start/--end")
    return from_vidtok(stored, keep)


SHORT_MODEL, LONG_MODEL = "vid-7b", "long-7b"
SHORT_CONTEXT = 4096
PROMPT_ALLOWANCE = 160  # template + question, estimated before any tokenizer is loaded


def choose_model(sources: list[Path], sampling: Sampling, max_new_tokens: int) -> tuple[str, str]:
    """`--model auto`: the short 7B model when the videos fit its 4K context, else the long 7B
    model; a .vidtok answers with the model that made it. Returns (model, why)."""
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
    need = 2 * frames + PROMPT_ALLOWANCE + max_new_tokens
    if need <= SHORT_CONTEXT:
        return SHORT_MODEL, f"{frames} frames fit its {SHORT_CONTEXT}-token context"
    return LONG_MODEL, f"{frames} frames need about {need} tokens, more than the short model's {SHORT_CONTEXT}"


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


def answer(
    loaded: Loaded,
    prepared: Prepared,
    question: str,
    *,
    history: list[tuple[str, str]] | None = None,
    generation: GenerationSettings | None = None,
    on_text: Callable[[str], None] | None = None,
    source: str = "",
) -> Answer:
    """Answer one question about a prepared source, streaming text to `on_text`."""
    if not question.strip():
        raise UsageError("the question is empty")
    generation = generation or GenerationSettings()
    started = time.perf_counter()
    tokens = prepared.tokens(loaded, question)
    visual = tokens.sequence()
    per_frame = subtitles.align(prepared.cues, prepared.timestamps) if loaded.long_video else None
    prompt_ids = build_prompt(loaded, question, tokens.num_frames, history, per_frame)
    used = sum(1 for i in prompt_ids if i != IMAGE_PLACEHOLDER) + visual.shape[0]
    if used + generation.max_new_tokens > loaded.config.context_length:
        raise context_error(loaded, tokens.num_frames, question, history, generation.max_new_tokens, prepared.cues)
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
    result = loaded.model.generate(
        prompt_ids, visual, max_new_tokens=generation.max_new_tokens, temperature=generation.temperature,
        top_p=generation.top_p, seed=generation.seed, streamer=streamer,
    )
    done = time.perf_counter()
    return Answer(
        answer=loaded.tokenizer.decode(result.output_ids).strip(),
        source=source or prepared.source.get("name", ""),
        model=loaded.name,
        frames=tokens.num_frames,
        duration=prepared.source.get("duration"),
        prompt_ids=prompt_ids,
        output_ids=result.output_ids,
        timings={
            "tokens_s": round(encoded_at - started, 4),
            "first_token_s": round((first[0] if first else done) - started, 4),
            "generate_s": round(done - encoded_at, 4),
        },
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
) -> Answer:
    """One question about a video, image or .vidtok, from file to answer.

    The context is checked before any decoding: a video that cannot fit is refused with the
    numbers, or with `fit`, sampled more sparsely (evenly spaced frames) until it fits."""
    if not question.strip():
        raise UsageError("the question is empty")
    path = Path(path)
    subs = subs or SubtitleRequest()
    generation = generation or GenerationSettings()
    started = time.perf_counter()
    sampling, notes = fit_source(loaded, path, sampling, question=question, history=history,
                                 max_new_tokens=generation.max_new_tokens, fit=fit, subs=subs)
    prepared = prepare(loaded, path, sampling, question=question, use_cache=use_cache, subs=subs, progress=progress)
    prepared, note = context.trim(
        loaded, prepared, question=question, history=history, max_new_tokens=generation.max_new_tokens, allow=fit
    )
    prepared.notes[:0] = notes + ([note] if note else [])
    for note in prepared.notes:
        if on_note:
            on_note(note)
    decoded = time.perf_counter() - started
    result = answer(
        loaded, prepared, question, history=history, generation=generation, on_text=on_text, source=str(path)
    )
    result.timings = {"encode_s": round(decoded, 4), **result.timings}
    result.timings["first_token_s"] = round(result.timings["first_token_s"] + decoded, 4)
    result.timings["total_s"] = round(time.perf_counter() - started, 4)
    result.notes = prepared.notes
    return result


def fit_source(
    loaded: Loaded, path: Path, sampling: Sampling | None, *, question: str | None,
    history: list[tuple[str, str]] | None, max_new_tokens: int, fit: bool, subs: SubtitleRequest | None = None,
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
        loaded, frames, sampling, question=question, history=history, max_new_tokens=max_new_tokens,
        allow=fit, cues=cues,
    )
    return sampling, [note] if note else []
