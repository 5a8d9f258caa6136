"""Chapters: a video's shots merged into chapters, each titled and summarised by the model (issue 9).

Where chapters begin (`plan`), deterministic and from the cut times alone:

  Walk from the start of the range. A chapter that begins at s ends at the first cut c with
  s + min_length ≤ c ≤ s + max_length that also leaves at least min_length after it
  (c ≤ end − min_length); shots are merged until the chapter is long enough, and it ends on
  the next cut. When no cut lies in that window:
    - if what is left (end − s) is at most max_length, it is the last chapter;
    - else the stretch from s to the next boundary that can be used (the first cut after
      s + max_length that leaves min_length after it, or the end) is split into
      k = ceil(stretch / max_length) equal parts, which are at most max_length long.
  So chapters never exceed max_length, begin on cuts wherever one lies in the window, and are
  at least min_length long except where that cannot be (a range shorter than min_length is
  one chapter; with min_length > max_length / 2 an equal split can fall below min_length,
  and then max_length wins).

What each chapter is called (`describe`): its frames are picked from the encode by time
(`EncodedVideo.select`, nothing decoded again) and the model answers two questions about
them, a title and a one-sentence summary, each with context tokens re-attended for that
question from the stored features (`pipeline.answer`). A title the model leaves empty
becomes "Chapter N".

Formats (`render`): WebVTT chapter cues (the title as cue text), SubRip (title, then summary),
JSON, FFmpeg's FFMETADATA1 and YouTube's description lines. `embed` remuxes a copy of the
video with the chapters in its container (packets copied, nothing re-encoded).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import LlamaVidError, UsageError

if TYPE_CHECKING:
    from .encoded import EncodedVideo
    from .loader import Loaded
    from .pipeline import GenerationSettings

MIN_LENGTH = 30.0  # seconds: --min-length
MAX_LENGTH = 600.0  # seconds: --max-length
FORMATS = ("vtt", "srt", "json", "ffmetadata", "youtube")
EXTENSIONS = {"vtt": "vtt", "srt": "srt", "json": "json", "ffmetadata": "ffmetadata", "youtube": "txt"}
TITLE_PROMPT = "Give this part of the video a short title of at most six words. Answer with the title only."
SUMMARY_PROMPT = "Describe what happens in this part of the video in one sentence."
TITLE_TOKENS = 24  # new tokens at most for a title …
SUMMARY_TOKENS = 96  # … and for a summary (fewer when --max-new-tokens says so)
TITLE_WORDS = 8
YOUTUBE_MIN_CHAPTERS = 3  # YouTube's rules for chapters in a description
YOUTUBE_MIN_LENGTH = 10
_EPSILON = 1e-6


class ChapterError(LlamaVidError):
    """Chapters that cannot be written as asked (YouTube's rules, an output in the way)."""


@dataclass(frozen=True)
class Chapter:
    start: float  # seconds
    end: float
    title: str = ""
    summary: str = ""

    def as_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "title": self.title, "summary": self.summary}


def check_lengths(min_length: float, max_length: float) -> None:
    """--min-length and --max-length, refused before any work."""
    for flag, value in (("--min-length", min_length), ("--max-length", max_length)):
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f"{flag} must be a number of seconds greater than 0, got {value:g}")
    if min_length > max_length:
        raise UsageError(f"--min-length ({min_length:g} s) must not be longer than --max-length ({max_length:g} s)")


def check_format(fmt: str, flag: str = "--format") -> str:
    if fmt not in FORMATS:
        raise UsageError(f"{flag} {fmt!r} is not a chapter format; use one of {', '.join(FORMATS)}")
    return fmt


# ---- where chapters begin ------------------------------------------------------------------


def plan(
    start: float, end: float, cuts: Sequence[float], min_length: float = MIN_LENGTH, max_length: float = MAX_LENGTH
) -> list[tuple[float, float]]:
    """Chapter spans [(start, end), …] covering [start, end) (the rule is in the module docstring)."""
    check_lengths(min_length, max_length)
    if not end > start:
        raise ValueError(f"empty range {start}–{end}")
    cuts = sorted({c for c in cuts if start + _EPSILON < c < end - _EPSILON})
    spans: list[tuple[float, float]] = []
    s = start
    while True:
        last_usable = end - min_length + _EPSILON
        window = [c for c in cuts if s + min_length - _EPSILON <= c <= min(s + max_length + _EPSILON, last_usable)]
        if window:
            b = window[0]
        elif end - s <= max_length + _EPSILON:
            spans.append((s, end))
            return spans
        else:
            later = [c for c in cuts if s + max_length < c <= last_usable]
            stop = later[0] if later else end
            b = s + (stop - s) / math.ceil((stop - s) / max_length - _EPSILON)
        spans.append((s, b))
        s = b


def span_of(encoded: EncodedVideo, sampling: dict | None = None) -> tuple[float, float]:
    """The time range chapters cover: the sampling's start (or 0) to its end (or the video's);
    `sampling` (a `Sampling.as_dict()`) defaults to the one the encode was made with."""
    sampling, source = sampling or encoded.sampling or {}, encoded.source or {}
    start = float(sampling.get("start") or 0.0)
    end = sampling.get("end")
    duration = source.get("duration") or 0.0
    if end is None or (duration and end > duration):
        end = duration
    last = encoded.timestamps[-1] if encoded.timestamps else start
    fps = source.get("fps") or 0.0
    end = max(float(end or 0.0), last + (1.0 / fps if fps else 1.0))  # a duration the container got wrong
    return start, end


# ---- what each chapter is called -----------------------------------------------------------


def describe(
    loaded: Loaded,
    encoded: EncodedVideo,
    spans: Sequence[tuple[float, float]],
    generation: GenerationSettings | None = None,
    on_chapter: Callable[[Chapter], None] | None = None,
) -> list[Chapter]:
    """A title and a one-sentence summary for each span, from its frames in `encoded`."""
    from . import context, pipeline

    generation = generation or pipeline.GenerationSettings()
    title_settings = replace(generation, max_new_tokens=min(generation.max_new_tokens, TITLE_TOKENS))
    summary_settings = replace(generation, max_new_tokens=min(generation.max_new_tokens, SUMMARY_TOKENS))
    chapters = []
    for number, (a, b) in enumerate(spans, start=1):
        part = encoded.select(frames_in(encoded.timestamps, a, b))
        texts = []
        for question, settings in ((TITLE_PROMPT, title_settings), (SUMMARY_PROMPT, summary_settings)):
            fitted, _ = context.trim(
                loaded, part, question=question, history=None, max_new_tokens=settings.max_new_tokens, allow=True
            )
            texts.append(pipeline.answer(loaded, fitted, question, generation=settings).answer)
        chapter = Chapter(a, b, clean_title(texts[0], number), clean_summary(texts[1]))
        chapters.append(chapter)
        if on_chapter:
            on_chapter(chapter)
    return chapters


def make(
    loaded: Loaded,
    path: Path,
    sampling=None,
    *,
    fmt: str = "vtt",
    min_length: float = MIN_LENGTH,
    max_length: float = MAX_LENGTH,
    generation: GenerationSettings | None = None,
    use_cache: bool = True,
    on_note: Callable[[str], None] | None = None,
) -> list[Chapter]:
    """A video's chapters, from file to titles (`summarize --chapters`); `fmt` youtube is
    refused before the model writes any title when YouTube would ignore the chapters."""
    from . import pipeline

    encoded, spans = pipeline.chapter_spans(
        loaded, path, sampling, min_length=min_length, max_length=max_length, use_cache=use_cache, on_note=on_note
    )
    if fmt == "youtube":
        check_youtube([Chapter(a, b) for a, b in spans])
    return describe(loaded, encoded, spans, generation)


def file_beside(summary: Path, summary_format: str, fmt: str) -> Path:
    """`OUT/clip.mp4.txt` → `OUT/clip.mp4.chapters.vtt`: a summary's chapter file."""
    summary = Path(summary)
    return summary.with_name(f"{summary.name.removesuffix('.' + summary_format)}.chapters.{EXTENSIONS[fmt]}")


def frames_in(timestamps: Sequence[float], start: float, end: float) -> list[int]:
    """Indices of the frames in [start, end); when none, the frame nearest the middle."""
    inside = [i for i, t in enumerate(timestamps) if start - _EPSILON <= t < end - _EPSILON]
    if inside:
        return inside
    middle = (start + end) / 2
    return [min(range(len(timestamps)), key=lambda i: abs(timestamps[i] - middle))]


def clean_title(text: str, number: int) -> str:
    """The model's title as one short line: no "Title:" label, quotes or final full stop."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^(chapter\s*\d*\s*[:.-]|title\s*[:.-])\s*", "", line, flags=re.IGNORECASE)
    line = line.strip(" \t\"'“”‘’*#`").rstrip(".:;,")
    words = line.split()
    if len(words) > TITLE_WORDS:
        line = " ".join(words[:TITLE_WORDS])
    return line or f"Chapter {number}"


def clean_summary(text: str) -> str:
    """The model's summary as its first sentence, on one line."""
    flat = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", flat)
    return match.group(1) if match else flat


# ---- formats -------------------------------------------------------------------------------


def render(chapters: Sequence[Chapter], fmt: str) -> str:
    """The chapters as a file in `fmt` (one of FORMATS), ending with a newline."""
    from . import subtitles

    check_format(fmt)
    if fmt == "vtt":
        return subtitles.compose_vtt([subtitles.Cue(c.start, c.end, c.title) for c in chapters])
    if fmt == "srt":
        return subtitles.compose_srt(
            [subtitles.Cue(c.start, c.end, "\n".join(x for x in (c.title, c.summary) if x)) for c in chapters]
        )
    if fmt == "json":
        return json.dumps([c.as_dict() for c in chapters], ensure_ascii=False, indent=2) + "\n"
    if fmt == "ffmetadata":
        return ffmetadata(chapters)
    return youtube(chapters)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def ffmetadata(chapters: Sequence[Chapter]) -> str:
    """FFmpeg's metadata file (`ffmpeg -i in.mp4 -i this -map_metadata 1 -map_chapters 1 …`)."""
    lines = [";FFMETADATA1"]
    for c in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={_ms(c.start)}", f"END={_ms(c.end)}"]
        lines.append(f"title={ffmetadata_escape(c.title)}")
    return "\n".join(lines) + "\n"


def ffmetadata_escape(value: str) -> str:
    r"""FFmpeg's rule for metadata values: '=', ';', '#', '\' and newlines get a backslash before them."""
    return re.sub(r"([=;#\\\n])", r"\\\1", value)


def youtube(chapters: Sequence[Chapter]) -> str:
    """Lines for a YouTube description: `0:00 Title`, …; refused when YouTube would ignore them
    (it wants the first at 0:00 and at least three chapters of at least 10 s each)."""
    check_youtube(chapters)
    hours = chapters[-1].start >= 3600
    return "".join(f"{_clock(c.start, hours)} {c.title}\n" for c in chapters)


def check_youtube(chapters: Sequence[Chapter]) -> None:
    starts = [math.floor(c.start) for c in chapters]
    if starts[0] != 0:
        raise ChapterError(
            f"YouTube chapters begin at 0:00, these at {_clock(chapters[0].start, False)}; leave out --start"
        )
    lengths = [b - a for a, b in zip(starts, starts[1:])] + [chapters[-1].end - starts[-1]]
    short = min(lengths)
    if len(chapters) < YOUTUBE_MIN_CHAPTERS or short < YOUTUBE_MIN_LENGTH:
        total = chapters[-1].end - chapters[0].start
        raise ChapterError(
            f"YouTube needs at least {YOUTUBE_MIN_CHAPTERS} chapters of at least {YOUTUBE_MIN_LENGTH} s each; "
            f"this {total:.1f} s video gives {len(chapters)} (shortest {short:.1f} s): lower --min-length "
            "(10 or more) on a longer video, or use another --format"
        )


def _clock(seconds: float, hours: bool) -> str:
    total = math.floor(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if hours or h else f"{m}:{s:02d}"


# ---- writing -------------------------------------------------------------------------------


def check_output(path: Path, force: bool, source: Path | None = None) -> None:
    """Refuse, before any work, an output that is already there (without `force`), that is the
    source itself, or whose folder does not exist."""
    path = Path(path)
    if source is not None and path.exists() and path.resolve() == Path(source).resolve():
        raise UsageError(f"{path} is the video itself; give another output file")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"the folder {path.parent} does not exist")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force (-f) to replace it")


def write(path: Path, text: str) -> Path:
    """Atomically (paths.py): a failure leaves no half-written file and the old one, if any, as it was."""
    from .paths import write_text

    return write_text(path, text, ChapterError)


_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}


def muxer(path: Path) -> str:
    """The FFmpeg muxer --embed writes with, from the output's name (formats that hold chapters)."""
    name = _MUXERS.get(Path(path).suffix.lower())
    if name is None:
        raise UsageError(
            f"--embed writes {', '.join(_MUXERS)} files (containers that hold chapters); {path} is not one"
        )
    return name


def embed(source: Path, target: Path, chapters: Sequence[Chapter]) -> Path:
    """A copy of `source` at `target` with `chapters` in its container: every video, audio and
    subtitle packet copied as it is (no re-encode); chapters the source had are replaced. The
    container format follows `target`'s name (MP4 and MOV store chapters as a text track,
    which readers list as one more data stream; Matroska natively). Atomic (paths.py)."""
    import av

    from .paths import replacing

    if not hasattr(av.container.OutputContainer, "set_chapters"):
        raise ChapterError(f"--embed needs PyAV 15 or later (this is {av.__version__}); pip install -U av")
    kinds = {"video", "audio", "subtitle"}
    with replacing(target, ChapterError, failures=(av.error.FFmpegError,)) as tmp:
        with av.open(str(source)) as src, av.open(str(tmp), "w", format=muxer(target)) as dst:
            mapping = {}
            for stream in src.streams:
                if stream.type in kinds:
                    mapping[stream.index] = dst.add_stream_from_template(stream)
            dst.metadata.update(src.metadata)
            dst.set_chapters(
                [
                    {
                        "id": number,
                        "start": _ms(c.start),
                        "end": _ms(c.end),
                        "time_base": Fraction(1, 1000),
                        "metadata": {"title": c.title},
                    }
                    for number, c in enumerate(chapters, start=1)
                ]
            )
            for packet in src.demux(*[src.streams[i] for i in mapping]):
                if packet.dts is None and packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                packet.stream = mapping[packet.stream.index]
                dst.mux(packet)
    return Path(target)
