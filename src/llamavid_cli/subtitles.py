"""Subtitle text with timings, from files and containers, and its place among the sampled frames
(method.md §7). Speech recognition, the third source, is `speech.py`.

Sources, all giving `Cue(start, end, text)` in seconds on the video's clock:
  read_srt / read_vtt   SubRip and WebVTT files, each cue parsed by `srt` / `webvtt-py`;
                        `read_subtitles` tells them apart by content (a WEBVTT header), never by
                        name. Tolerated: CRLF, a missing final blank line, missing SRT cue
                        numbers, a missing blank line between cues, VTT cue settings,
                        identifiers, NOTE/STYLE/REGION blocks, hour-less (`01:02.500`) and
                        short-field (`0:0:1.5`) VTT times.
                        Tags (`<i>`, `<font …>`, `<v Bob>`, `{\\an8}`) are stripped and a cue's
                        lines are joined with single spaces. A damaged cue is skipped, as players
                        skip it, with one warning naming its line; a file without one usable cue
                        is a SubtitleError naming the file and the first problem's line.
  embedded_cues         the first text subtitle track inside a container (subrip, ass/ssa,
                        mov_text, webvtt), decoded with PyAV; bitmap tracks are ignored.

Text encoding (`_decode_text`): a byte-order mark decides (UTF-8, UTF-16 and UTF-32, either byte
order); else the encoding the caller names; else strict UTF-8; else charset-normalizer's best
guess, said in one warning since a guess from a few lines can be wrong.

Writers (`write_srt`, `write_vtt`) go through the same libraries, UTF-8, atomically (paths.write_text).

Alignment (`align`, method.md §7): a cue goes to the last sampled frame whose time is strictly
before the cue's end time; start times play no part. A cue that ends at or before the first
frame's time has no such frame and goes to the first frame (the original indexed
`text_list[point - 1]` with point 0, i.e. the *last* frame, which is an accident of Python's
negative indices, not a rule). The original also walked one pointer over the cues, so a cue
ending earlier than the one before it landed on that one's frame; we place every cue by its own
end time, which is the same thing for cues sorted by end time (Whisper's always are).
"""

from __future__ import annotations

import bisect
import codecs
import html
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from fractions import Fraction
from pathlib import Path

import av

from . import paths
from .errors import LlamaVidError, VideoError

WarningHook = Callable[[str], None]
MAX_CUE_WARNINGS = 5  # damaged cues named one by one; past this one more line counts the rest


class SubtitleError(LlamaVidError):
    """A subtitle file that cannot be read, or a track or soundtrack that cannot be used."""


@dataclass(frozen=True)
class Cue:
    """One subtitle: shown from `start` to `end` (seconds on the video's clock)."""

    start: float
    end: float
    text: str


# --------------------------------------------------------------------------------------------
# Subtitle files

# What counts as a time line. SRT: stricter than `srt` (which takes any digits, "61" minutes
# included), two-digit minutes and seconds below 60, three-digit milliseconds. VTT: webvtt-py's
# lenient form, hours optional and short fields allowed ("0:0:1.5", as Teams writes), ranges
# checked by the library. SRT time lines may carry display coordinates after the end time
# ("X1:40 X2:600 ..."); VTT time lines may carry cue settings ("align:start line:0").
_SRT_TIME = r"\d+:[0-5]\d:[0-5]\d[,.]\d{3}"
_VTT_TIME = r"(?:\d+:)?\d{1,2}:\d{1,2}\.\d{1,3}"
_SRT_TIMING = re.compile(rf"\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s.*)?")
_VTT_TIMING = re.compile(rf"\s*{_VTT_TIME}[ \t]*-->[ \t]*{_VTT_TIME}(?:[ \t].*)?")
_SRT_EXAMPLE = "00:01:02,500 --> 00:01:04,000"
_VTT_EXAMPLE = "00:01:02.500 --> 00:01:04.000"

_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.]*>")  # <i>, </font>, <v Bob>, <c.loud>, <00:01.000>
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\i1}, {\an8}: ASS override codes, also seen in SRT
_ASS_BLOCK = re.compile(r"\{[^}]*\}")  # in ASS itself any {...} is an override block or a comment

_BOMS = (  # UTF-32 LE first: its mark begins with UTF-16 LE's
    (codecs.BOM_UTF32_LE, "UTF-32-LE"),
    (codecs.BOM_UTF32_BE, "UTF-32-BE"),
    (codecs.BOM_UTF8, "UTF-8"),
    (codecs.BOM_UTF16_LE, "UTF-16-LE"),
    (codecs.BOM_UTF16_BE, "UTF-16-BE"),
)

Lines = list[tuple[int, str]]  # (line number from 1, line)


def read_subtitles(
    path: str | Path, *, encoding: str | None = None, on_warning: WarningHook | None = None
) -> list[Cue]:
    """Cues from a SubRip or WebVTT file, told apart by the WEBVTT header, not the name.

    encoding: the file's text encoding when known (a byte-order mark still wins); None detects it.
    on_warning: called with one line per guessed encoding or skipped cue.
    """
    path, text = _read_text(path, encoding, on_warning)
    parse = _parse_vtt if _is_webvtt(text) else _parse_srt
    return parse(path, text, on_warning)


def read_srt(path: str | Path, *, encoding: str | None = None, on_warning: WarningHook | None = None) -> list[Cue]:
    """Cues from a SubRip (.srt) file, in file order."""
    return _parse_srt(*_read_text(path, encoding, on_warning), on_warning)


def read_vtt(path: str | Path, *, encoding: str | None = None, on_warning: WarningHook | None = None) -> list[Cue]:
    """Cues from a WebVTT (.vtt) file, in file order."""
    return _parse_vtt(*_read_text(path, encoding, on_warning), on_warning)


def write_srt(cues: Iterable[Cue], path: str | Path) -> None:
    """A SubRip file of `cues`, numbered from 1 in the order given (UTF-8, replaced atomically)."""
    paths.write_text(path, compose_srt(cues), SubtitleError)


def compose_srt(cues: Iterable[Cue]) -> str:
    """SubRip text of `cues`, numbered from 1 in the order given (srt's composer)."""
    import srt  # srt, webvtt and charset_normalizer load on use: ~0.1 s off every command's start

    subs = [srt.Subtitle(i, _delta(cue.start), _delta(cue.end), cue.text) for i, cue in enumerate(cues, start=1)]
    return srt.compose(subs, reindex=False)


def write_vtt(cues: Iterable[Cue], path: str | Path) -> None:
    """A WebVTT file of `cues` in the order given; & < > are escaped, as WebVTT requires."""
    paths.write_text(path, compose_vtt(cues), SubtitleError)


def compose_vtt(cues: Iterable[Cue]) -> str:
    """WebVTT text of `cues` (webvtt-py's writer); & < > escaped, blank lines inside a cue removed."""
    import webvtt

    captions = [
        webvtt.Caption(_clock(c.start, "."), _clock(c.end, "."), html.escape(_no_blank_lines(c.text), quote=False))
        for c in cues
    ]
    return webvtt.WebVTT(captions=captions).content


def _no_blank_lines(text: str) -> str:
    return re.sub(r"\n\s*\n", "\n", text.strip())  # a blank line would end the cue


def _read_text(path: str | Path, encoding: str | None, on_warning: WarningHook | None) -> tuple[Path, str]:
    from .paths import regular_file

    path = regular_file(path, SubtitleError, "a .srt or .vtt file", allow_empty=True)  # a FIFO would block the read
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SubtitleError(f"cannot read {path}: {e.strerror or e}") from None
    text = _decode_text(path, data, encoding, on_warning).replace("\r\n", "\n").replace("\r", "\n")
    if text.lstrip().startswith("[Script Info]"):
        raise SubtitleError(f"{path} is an ASS/SSA file; convert it to SRT (ffmpeg -i {path.name} out.srt)")
    return path, text


def _decode_text(path: Path, data: bytes, encoding: str | None = None, on_warning: WarningHook | None = None) -> str:
    """The text of a subtitle file: a byte-order mark decides; else `encoding`; else strict UTF-8;
    else charset-normalizer's best guess, reported through `on_warning`."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return _decode_as(path, data[len(bom) :], name, "as its byte-order mark says", len(bom))
    if encoding:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise SubtitleError(f"unknown text encoding {encoding!r} for {path}") from None
        return _decode_as(path, data, name, "as asked")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:  # NULs: UTF-16/32 without a mark, or not text at all
        return text
    import charset_normalizer

    guess = charset_normalizer.from_bytes(data).best()
    if guess is None or "\x00" in str(guess):
        raise SubtitleError(f"{path} is not text in any encoding we can recognise; convert it to UTF-8")
    if on_warning is not None:
        name = guess.encoding.upper()
        on_warning(f"read {path.name} as {name} (guessed); if its text looks wrong, convert it to UTF-8")
    return str(guess)


def _decode_as(path: Path, data: bytes, name: str, why: str, skipped: int = 0) -> str:
    try:
        return data.decode(name)
    except UnicodeDecodeError as e:
        raise SubtitleError(
            f"{path} is not valid {name.upper()} ({why}): bad bytes at offset {e.start + skipped}"
        ) from None


def _is_webvtt(text: str) -> bool:
    return re.match(r"WEBVTT(?:[ \t\n]|$)", text) is not None


def _blocks(lines: Sequence[str]) -> list[Lines]:
    """Runs of non-blank lines."""
    blocks: list[Lines] = []
    current: Lines = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            current.append((number, line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _clock(seconds: float, sep: str) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}{sep}{millis % 1000:03d}"


def _delta(seconds: float) -> timedelta:
    return timedelta(milliseconds=round(seconds * 1000))


def _clean(lines: Iterable[str], *, entities: bool = False) -> str:
    """Tags and ASS override blocks removed, lines joined, whitespace runs made single spaces."""
    text = _TAG.sub("", _ASS_OVERRIDE.sub("", " ".join(lines)))
    if entities:  # WebVTT escapes &amp; &lt; &gt; &nbsp; ...
        text = html.unescape(text)
    return " ".join(text.split())


def _got(line: str | None) -> str:
    return "a blank line" if line is None else repr(line.strip())


@dataclass
class _Damaged(Exception):
    """One cue that cannot be used: where, and why."""

    line: int
    problem: str


def _cue_lines(
    blocks: list[Lines], timing: re.Pattern[str], example: str, is_identifier: Callable[[str], bool]
) -> Iterator[Lines | _Damaged]:
    """Each cue's time line and text lines, or what is wrong where a time line was due.

    A block is [identifier] time line, text lines; a time line inside the text starts the next
    cue (a missing blank line), taking a number right before it as its identifier. Lines before a
    block's first time line that are not its identifier are damage; the cues after it stand."""
    for block in blocks:
        starts = [i for i, (_, line) in enumerate(block) if timing.fullmatch(line)]
        lead = 1 if is_identifier(block[0][1]) else 0
        if not starts or starts[0] != lead:
            number = block[lead][0] if lead < len(block) else block[-1][0] + 1
            line = block[lead][1] if lead < len(block) else None
            yield _Damaged(number, f"expected a time line like {example}, got {_got(line)}")
        for k, i in enumerate(starts):
            stop = starts[k + 1] if k + 1 < len(starts) else len(block)
            if stop < len(block) and stop - 1 > i and block[stop - 1][1].strip().isdigit():
                stop -= 1  # the next cue's number
            yield block[i:stop]


def _collect(
    path: Path, items: Iterable[Lines | _Damaged], parse: Callable[[Lines], Cue], on_warning: WarningHook | None
) -> list[Cue]:
    """Cues with text, damaged ones skipped with a warning each; none usable is an error."""
    cues: list[Cue] = []
    damaged: list[_Damaged] = []
    for item in items:
        try:
            if isinstance(item, _Damaged):
                raise item
            cue = parse(item)
        except _Damaged as e:
            damaged.append(e)
            continue
        if cue.text:
            cues.append(cue)
    if damaged and not cues:
        raise SubtitleError(f"{path}:{damaged[0].line}: {damaged[0].problem}")
    if on_warning is not None:
        for e in damaged[:MAX_CUE_WARNINGS]:
            on_warning(f"{path}:{e.line}: {e.problem}; skipped that cue")
        if len(damaged) > MAX_CUE_WARNINGS:
            on_warning(f"{path}: {len(damaged) - MAX_CUE_WARNINGS} more damaged cues skipped")
    return cues


def _checked(line: int, start: float, end: float, text: str, sep: str) -> Cue:
    if end < start:
        raise _Damaged(line, f"the cue ends ({_clock(end, sep)}) before it starts ({_clock(start, sep)})")
    return Cue(start, end, text)


def _srt_cue(lines: Lines) -> Cue:
    """One cue through `srt`: the time line (coordinates after it allowed) and its text."""
    import srt

    number = lines[0][0]
    try:
        (sub,) = srt.parse("\n".join([lines[0][1].strip()] + [line for _, line in lines[1:]]))
    except (srt.SRTParseError, srt.TimestampParseError, ValueError):
        raise _Damaged(number, f"cannot read the cue at {_got(lines[0][1])}") from None
    text = _clean(sub.content.split("\n"))
    return _checked(number, sub.start.total_seconds(), sub.end.total_seconds(), text, ",")


def _vtt_cue(lines: Lines) -> Cue:
    """One cue through `webvtt-py`: the time line (cue settings allowed) and its text."""
    import webvtt

    number = lines[0][0]
    captions = webvtt.from_string("\n".join(["WEBVTT", ""] + [line for _, line in lines])).captions
    if len(captions) != 1:
        raise _Damaged(number, f"cannot read the cue at {_got(lines[0][1])}")
    (caption,) = captions
    start, end = caption.start_time.in_milliseconds() / 1000, caption.end_time.in_milliseconds() / 1000
    return _checked(number, start, end, _clean(caption.lines, entities=True), ".")


def _parse_srt(path: Path, text: str, on_warning: WarningHook | None = None) -> list[Cue]:
    items = _cue_lines(_blocks(text.split("\n")), _SRT_TIMING, _SRT_EXAMPLE, lambda line: line.strip().isdigit())
    return _collect(path, items, _srt_cue, on_warning)


def _parse_vtt(path: Path, text: str, on_warning: WarningHook | None = None) -> list[Cue]:
    lines = text.split("\n")
    if not _is_webvtt(text):
        raise SubtitleError(f"{path}:1: expected the WEBVTT header, got {_got(lines[0])}")
    blocks = _blocks(lines)
    header = blocks.pop(0)  # "WEBVTT" and its metadata lines, up to a blank line...
    arrow = next((i for i, (_, line) in enumerate(header) if "-->" in line), None)
    if arrow is not None:  # ...or up to a cue that forgot the blank line
        blocks.insert(0, header[max(arrow - 1, 1) :])
    kept = [
        block
        for block in blocks
        if not re.match(r"(NOTE|STYLE|REGION)(?:[ \t]|$)", block[0][1])  # comments, CSS, regions
    ]
    items = _cue_lines(kept, _VTT_TIMING, _VTT_EXAMPLE, lambda line: "-->" not in line)
    return _collect(path, items, _vtt_cue, on_warning)


# --------------------------------------------------------------------------------------------
# Subtitle tracks inside containers

_TEXT_CODECS = {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"}


def embedded_cues(video_path: str | Path) -> list[Cue]:
    """Cues of the first text subtitle track in a container ([] when it has none).

    Times are packet pts and duration in the track's time base, counted from the start of the
    video stream (the clock `video.iter_frames` gives frames), or of the file when there is no
    video. A packet without a duration ends where the next cue starts.
    """
    path = Path(video_path)
    with open_media(path) as container:
        tracks = [s for s in container.streams.subtitles if s.codec_context.name in _TEXT_CODECS]
        if not tracks:
            return []
        track = tracks[0]
        origin = clock_origin(container)
        raw: list[tuple[float, float | None, str]] = []
        for packet in container.demux(track):
            if packet.pts is None:  # the demuxer's final flush packet
                continue
            tb = packet.time_base or track.time_base or Fraction(1, 1000)
            start = float(packet.pts * tb) - origin
            end = float((packet.pts + packet.duration) * tb) - origin if packet.duration else None
            try:
                decoded = list(packet.decode())
            except av.error.FFmpegError:
                continue  # a damaged cue; the rest of the track is still good
            text = " ".join(t for t in (_subtitle_text(s) for s in decoded) if t)
            if text:
                raw.append((start, end, text))
    raw.sort(key=lambda cue: cue[0])
    cues = []
    for i, (start, end, text) in enumerate(raw):
        if end is None:
            end = max(start, raw[i + 1][0]) if i + 1 < len(raw) else start
        cues.append(Cue(max(start, 0.0), max(end, 0.0), text))
    return cues


def _subtitle_text(item) -> str:
    """Text of one decoded subtitle: PyAV 18 yields rectangles, older PyAV SubtitleSets of them."""
    rects = item if isinstance(item, av.subtitles.subtitle.SubtitleSet) else [item]
    parts = []
    for rect in rects:
        kind = getattr(rect, "type", None)
        if kind == b"ass":
            parts.append(ass_dialogue_text(rect.ass.decode("utf-8", errors="replace")))
        elif kind == b"text":
            parts.append(_clean([rect.text.decode("utf-8", errors="replace")]))
    return " ".join(p for p in parts if p)


def ass_dialogue_text(event: str) -> str:
    """The spoken text of an ASS event as FFmpeg hands it over.

    FFmpeg's packet form is "ReadOrder,Layer,Style,Name,MarginL,MarginR,MarginV,Effect,Text"
    (older FFmpeg: a whole "Dialogue: Layer,Start,End,Style,...,Text" line); the text may hold
    override blocks ({\\i1}) and \\N, \\n, \\h for line breaks and hard spaces.
    """
    event = event.strip()
    if event.startswith("Dialogue:"):
        fields = event[len("Dialogue:") :].split(",", 9)
    else:
        fields = event.split(",", 8)
    text = fields[-1]
    text = _ASS_BLOCK.sub("", text)
    text = text.replace("\\N", " ").replace("\\n", " ").replace("\\h", " ")
    return _clean([text])


def open_media(path: Path):
    if not path.exists():
        raise VideoError(f"{path} does not exist; check the path")
    if not path.is_file():
        raise VideoError(f"{path} is not a regular file; give a video file")
    try:
        return av.open(str(path))
    except av.error.FFmpegError:
        raise VideoError(f"{path} is not a video FFmpeg can read; convert it to MP4 (H.264) and try again") from None


def clock_origin(container) -> float:
    """Seconds to subtract from a pts to get the video clock: the video stream's start time."""
    if container.streams.video:
        video = container.streams.video[0]
        return float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    return container.start_time / av.time_base if container.start_time is not None else 0.0


# --------------------------------------------------------------------------------------------
# Alignment


def align(cues: Iterable[Cue], frame_times: Sequence[float]) -> list[list[str]]:
    """Texts per sampled frame (method.md §7): each cue goes to the last frame whose time is
    strictly before the cue's end, or to the first frame when none is; cue order is kept."""
    per_frame: list[list[str]] = [[] for _ in frame_times]
    if not per_frame:
        return per_frame
    if any(b < a for a, b in zip(frame_times, frame_times[1:])):
        raise ValueError("frame_times must be in increasing order")
    for cue in cues:
        before = bisect.bisect_left(frame_times, cue.end)  # frames with time < end
        per_frame[max(before - 1, 0)].append(cue.text)
    return per_frame
