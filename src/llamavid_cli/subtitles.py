"""Subtitle text with timings, from files, containers or speech, and its place among the sampled
frames (method.md §7).

Sources, all giving `Cue(start, end, text)` in seconds on the video's clock:
  read_srt / read_vtt   SubRip and WebVTT files; `read_subtitles` tells them apart by content
                        (a WEBVTT header), never by name. Tolerated: BOM, CRLF, UTF-16, legacy
                        cp1252 text, a missing final blank line, missing SRT cue numbers, a
                        missing blank line between cues, VTT cue settings, identifiers,
                        NOTE/STYLE/REGION blocks and hour-less `mm:ss.ttt` times. Tags (`<i>`,
                        `<font …>`, `<v Bob>`, `{\\an8}`) are stripped and a cue's lines are joined
                        with single spaces. Anything else malformed is a SubtitleError naming the
                        file and line.
  embedded_cues         the first text subtitle track inside a container (subrip, ass/ssa,
                        mov_text, webvtt), decoded with PyAV; bitmap tracks are ignored.
  transcribe            speech recognition with Whisper through transformers, filtered as the
                        original did (below).

Alignment (`align`, method.md §7): a cue goes to the last sampled frame whose time is strictly
before the cue's end time; start times play no part. A cue that ends at or before the first
frame's time has no such frame and goes to the first frame (the original indexed
`text_list[point - 1]` with point 0, i.e. the *last* frame, which is an accident of Python's
negative indices, not a rule). The original also walked one pointer over the cues, so a cue
ending earlier than the one before it landed on that one's frame; we place every cue by its own
end time, which is the same thing for cues sorted by end time (Whisper's always are).

Transcription, and what "the original's confidence filter" means here. The original ran
openai-whisper's `model.transcribe(video)` with its defaults and kept segments with
`avg_logprob >= -2`, removing one leading space from each text
(`scripts/extra_tool/extract_video_features_subtitles.py`). In openai-whisper a segment's
avg_logprob is not a per-segment number: it is the value of the 30-s decoding window the segment
came from (`new_segment(..., result)` copies `result.avg_logprob`), i.e. the sum of the
log-probabilities of every sampled token of the window, timestamps and the final <|endoftext|>
included, divided by (number of tokens before <|endoftext|> + 1), the log-probabilities being
taken after Whisper's token-suppression and timestamp rules. We decode with transformers'
long-form Whisper generation, which is a port of that sequential algorithm, with openai-whisper's
default options (`WHISPER_OPTIONS`), and compute each window's avg_logprob from the scores that
generation returns, with openai-whisper's formula (`window_avg_logprob`); every segment of a window
whose value is below `MIN_AVG_LOGPROB` is dropped. Differences from the original:
  - the value is exact for windows decoded greedily (the normal case) and for windows that fell
    back to temperature 1.0. transformers hands back temperature-divided scores and does not say
    which temperature a window was finally decoded at, so for a window accepted at a fallback
    temperature of 0.2–0.8 the value is taken on the sharpened distribution. Such a window was
    only accepted because its exact avg_logprob passed Whisper's own -1 threshold (transformers
    checks it with the temperature undone); the sharpened value of tokens drawn from the sharpened
    distribution is higher on average, so the -2 filter keeps these windows in practice, but
    that is an expectation, not a bound;
  - the audio is decoded in blocks of about BLOCK_SECONDS, cut at the quietest 0.1 s near each
    boundary, to bound memory (transformers keeps every window's scores until generation ends).
    Each block starts a fresh Whisper context (no previous-text prompt) and normalises its
    log-mel by its own maximum rather than the whole file's;
  - the compression-ratio check is transformers' (zlib over token ids, threshold 1.35, the value
    its documentation gives) rather than openai-whisper's zlib over the text with 2.4;
  - the default model is whisper-large-v3 (`whisper.load_model("large")` meant large-v2 or v3
    depending on the openai-whisper release installed).
The language is detected once, on the first 30 s, as openai-whisper does, unless given.
transformers' `pipeline("automatic-speech-recognition")` is not used: it exposes no log-probability
at all, and its chunked mode merges overlapping windows instead of Whisper's sequential seeking.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .defaults import DEFAULT_WHISPER
from .errors import DownloadError, LlamaVidError, VideoError

SAMPLE_RATE = 16_000  # Whisper's input rate (Hz)
MIN_AVG_LOGPROB = -2.0  # the original's MIN_CONFIDENCE: keep segments with avg_logprob >= -2

# openai-whisper's transcribe() defaults, which the original ran, in transformers' vocabulary.
WHISPER_OPTIONS = {
    "task": "transcribe",
    "temperature": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0),  # fallback ladder
    "logprob_threshold": -1.0,  # a window below this is decoded again, hotter
    "no_speech_threshold": 0.6,  # ...or skipped as silence if <|nospeech|> is this likely
    "compression_ratio_threshold": 1.35,  # repetitive output is decoded again (token-id zlib ratio)
    "condition_on_prev_tokens": True,  # previous text is the prompt (dropped after a hot window)
}

BLOCK_SECONDS = 600  # audio per generate() call: ~20 windows, whose scores take ~0.5 GB (2 GB at worst)
_CUT_SEARCH_SECONDS = 10  # a block ends at the quietest 0.1 s of its last 10 s
_HOP_SECONDS = 0.01  # one log-mel frame (160 samples at 16 kHz)

ProgressHook = Callable[[float, float], None]  # (seconds transcribed, total seconds)


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

_SRT_TIME = r"(\d+):([0-5]\d):([0-5]\d)[,.](\d{3})"
_VTT_TIME = r"(?:(\d+):)?([0-5]\d):([0-5]\d)\.(\d{3})"
# SRT time lines may carry display coordinates after the end time ("X1:40 X2:600 ...");
# VTT time lines may carry cue settings ("align:start line:0").
_SRT_TIMING = re.compile(rf"\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}(?:\s.*)?")
_VTT_TIMING = re.compile(rf"\s*{_VTT_TIME}[ \t]*-->[ \t]*{_VTT_TIME}(?:[ \t].*)?")
_SRT_EXAMPLE = "00:01:02,500 --> 00:01:04,000"
_VTT_EXAMPLE = "00:01:02.500 --> 00:01:04.000"

_TAG = re.compile(r"</?[A-Za-z][^<>]*>|<\d[\d:.]*>")  # <i>, </font>, <v Bob>, <c.loud>, <00:01.000>
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\i1}, {\an8}: ASS override codes, also seen in SRT
_ASS_BLOCK = re.compile(r"\{[^}]*\}")  # in ASS itself any {...} is an override block or a comment


def read_subtitles(path: str | Path) -> list[Cue]:
    """Cues from a SubRip or WebVTT file, told apart by the WEBVTT header, not the name."""
    path, text = _read_text(path)
    if _is_webvtt(text):
        return _parse_vtt(path, text)
    return _parse_srt(path, text)


def read_srt(path: str | Path) -> list[Cue]:
    """Cues from a SubRip (.srt) file, in file order."""
    return _parse_srt(*_read_text(path))


def read_vtt(path: str | Path) -> list[Cue]:
    """Cues from a WebVTT (.vtt) file, in file order."""
    return _parse_vtt(*_read_text(path))


def _read_text(path: str | Path) -> tuple[Path, str]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SubtitleError(f"{path} does not exist; check the path") from None
    except IsADirectoryError:
        raise SubtitleError(f"{path} is a directory; give a .srt or .vtt file") from None
    except OSError as e:
        raise SubtitleError(f"cannot read {path}: {e.strerror or e}") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:  # older SRTs are often Windows-1252
            text = data.decode("cp1252", errors="replace")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if text.lstrip().startswith("[Script Info]"):
        raise SubtitleError(f"{path} is an ASS/SSA file; convert it to SRT (ffmpeg -i {path.name} out.srt)")
    return path, text


def _is_webvtt(text: str) -> bool:
    return re.match(r"WEBVTT(?:[ \t\n]|$)", text) is not None


def _blocks(lines: Sequence[str]) -> list[list[tuple[int, str]]]:
    """Runs of non-blank lines as (line number from 1, line) lists."""
    blocks: list[list[tuple[int, str]]] = []
    current: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            current.append((number, line))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _seconds(groups: Sequence[str | None]) -> float:
    hours, minutes, seconds, millis = (int(g) if g else 0 for g in groups)
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _clock(seconds: float, sep: str) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d}{sep}{millis % 1000:03d}"


def _clean(lines: Iterable[str], *, entities: bool = False) -> str:
    """Tags and ASS override blocks removed, lines joined, whitespace runs made single spaces."""
    text = _TAG.sub("", _ASS_OVERRIDE.sub("", " ".join(lines)))
    if entities:  # WebVTT escapes &amp; &lt; &gt; &nbsp; ...
        text = html.unescape(text)
    return " ".join(text.split())


def _got(line: str | None) -> str:
    return "a blank line" if line is None else repr(line.strip())


def _parse_cues(
    path: Path,
    blocks: list[list[tuple[int, str]]],
    timing: re.Pattern[str],
    example: str,
    is_identifier: Callable[[str], bool],
    sep: str,
    entities: bool,
) -> list[Cue]:
    """Shared by SRT and VTT: [identifier] time line, text lines; a time line inside the text
    starts the next cue (a missing blank line), taking a number right before it as its identifier."""
    cues: list[Cue] = []
    for block in blocks:
        starts = [i for i, (_, line) in enumerate(block) if timing.fullmatch(line)]
        lead = 1 if is_identifier(block[0][1]) else 0
        if not starts or starts[0] != lead:
            # report the line where a time line was due
            number = block[lead][0] if lead < len(block) else block[-1][0] + 1
            line = block[lead][1] if lead < len(block) else None
            raise SubtitleError(f"{path}:{number}: expected a time line like {example}, got {_got(line)}")
        for k, i in enumerate(starts):
            number, line = block[i]
            m = timing.fullmatch(line)
            start, end = _seconds(m.groups()[:4]), _seconds(m.groups()[4:8])
            if end < start:
                raise SubtitleError(
                    f"{path}:{number}: the cue ends ({_clock(end, sep)}) before it starts ({_clock(start, sep)})"
                )
            stop = starts[k + 1] if k + 1 < len(starts) else len(block)
            if stop < len(block) and stop - 1 > i and block[stop - 1][1].strip().isdigit():
                stop -= 1  # the next cue's number
            text = _clean((payload for _, payload in block[i + 1 : stop]), entities=entities)
            if text:
                cues.append(Cue(start, end, text))
    return cues


def _parse_srt(path: Path, text: str) -> list[Cue]:
    return _parse_cues(
        path,
        _blocks(text.split("\n")),
        _SRT_TIMING,
        _SRT_EXAMPLE,
        is_identifier=lambda line: line.strip().isdigit(),
        sep=",",
        entities=False,
    )


def _parse_vtt(path: Path, text: str) -> list[Cue]:
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
    return _parse_cues(
        path,
        kept,
        _VTT_TIMING,
        _VTT_EXAMPLE,
        is_identifier=lambda line: "-->" not in line,
        sep=".",
        entities=True,
    )


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
    with _open_media(path) as container:
        tracks = [s for s in container.streams.subtitles if s.codec_context.name in _TEXT_CODECS]
        if not tracks:
            return []
        track = tracks[0]
        origin = _clock_origin(container)
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


def _open_media(path: Path):
    if not path.exists():
        raise VideoError(f"{path} does not exist; check the path")
    if not path.is_file():
        raise VideoError(f"{path} is not a regular file; give a video file")
    try:
        return av.open(str(path))
    except av.error.FFmpegError:
        raise VideoError(f"{path} is not a video FFmpeg can read; convert it to MP4 (H.264) and try again") from None


def _clock_origin(container) -> float:
    """Seconds to subtract from a pts to get the video clock: the video stream's start time."""
    if container.streams.video:
        video = container.streams.video[0]
        return float(video.start_time * video.time_base) if video.start_time is not None else 0.0
    return container.start_time / av.time_base if container.start_time is not None else 0.0


# --------------------------------------------------------------------------------------------
# Speech


def decode_audio(video_path: str | Path) -> tuple[np.ndarray, float]:
    """The first audio track as 16 kHz mono float32 in [-1, 1], and the video-clock time of its
    first sample. PyAV's resampler (FFmpeg's swresample) does what openai-whisper's
    `ffmpeg -ac 1 -ar 16000` call does, without rounding to 16-bit."""
    path = Path(video_path)
    with _open_media(path) as container:
        if not container.streams.audio:
            raise SubtitleError(f"{path} has no audio track to transcribe; give a subtitle file instead")
        stream = container.streams.audio[0]
        origin = _clock_origin(container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        bad = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                bad += 1  # a damaged packet: skip it, as players do
                continue
            for frame in frames:
                if first_time is None and frame.pts is not None and frame.time_base:
                    first_time = float(frame.pts * frame.time_base) - origin
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    if not chunks and bad:
        raise SubtitleError(f"{path}: none of its {stream.codec_context.name} audio could be decoded")
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    return samples, first_time or 0.0


def window_avg_logprob(scores: Sequence, tokens: Sequence[int], eot: int) -> float:
    """openai-whisper's avg_logprob of one decoding window (DecodingTask.run).

    scores: per generated step, the logits after the suppression and timestamp rules ([vocab]
    each); tokens: the tokens chosen at those steps. The log-softmax of each step is read at its
    token, summed up to and including the first <|endoftext|>, and divided by (number of tokens
    before <|endoftext|> + 1) - also when the window ran out of tokens without one.
    """
    import torch

    steps = min(len(scores), len(tokens))
    total, count = 0.0, steps
    for i in range(steps):
        row = torch.as_tensor(scores[i]).reshape(-1).float()
        token = int(tokens[i])
        total += float(torch.log_softmax(row, dim=-1)[token])
        if token == eot:
            count = i
            break
    return total / (count + 1)


def cues_from_segments(
    segments: Iterable[dict],
    decode: Callable[[list[int]], str],
    eot: int,
    offset: float = 0.0,
    duration: float | None = None,
) -> list[Cue]:
    """Whisper segments (transformers' `return_segments` dicts) to cues, filtered as the original.

    Each segment's window (`segment["result"]`, shared by the segments of one window) gives the
    avg_logprob; segments of windows below MIN_AVG_LOGPROB are dropped. Text is the decoded text
    tokens (ids below <|endoftext|>) less one leading space, as the original did; empty texts are
    dropped. Times are shifted by `offset` and clamped to [0, duration] of this stretch of audio.
    """
    window_scores: dict[int, float] = {}
    cues = []
    for segment in segments:
        result = segment["result"]
        key = id(result)
        if key not in window_scores:
            scores = result["scores"]
            generated = _as_list(result["sequences"])[-len(scores) :] if len(scores) else []
            window_scores[key] = window_avg_logprob(scores, generated, eot)
        if window_scores[key] < MIN_AVG_LOGPROB:
            continue
        text = decode([t for t in _as_list(segment["tokens"]) if t < eot])
        if text.startswith(" "):
            text = text[1:]
        if not text.strip():
            continue
        start, end = float(segment["start"]), float(segment["end"])
        if duration is not None:
            start, end = min(start, duration), min(end, duration)
        cues.append(Cue(max(start + offset, 0.0), max(end + offset, 0.0), text))
    return cues


def _as_list(values) -> list[int]:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def block_edges(samples: np.ndarray, block: int, search: int, frame: int = SAMPLE_RATE // 10) -> list[int]:
    """Sample positions [0, …, len] cutting `samples` into blocks of at most `block` samples, each
    cut at the start of the quietest `frame`-long stretch within the `search` samples before the
    nominal end (speech is least likely to be split there)."""
    edges = [0]
    n = len(samples)
    while n - edges[-1] > block:
        end = edges[-1] + block
        lo = max(edges[-1] + 1, end - search)
        window = samples[lo:end]
        usable = len(window) // frame * frame
        if usable == 0:
            edges.append(end)
            continue
        energy = np.square(window[len(window) - usable :].reshape(-1, frame).astype(np.float64)).sum(axis=1)
        edges.append(end - usable + int(np.argmin(energy)) * frame)
    edges.append(n)
    return edges


def transcribe(
    video_path: str | Path,
    model: str = DEFAULT_WHISPER,
    device: str | None = None,
    on_progress: ProgressHook | None = None,
    *,
    language: str | None = None,
) -> list[Cue]:
    """Speech in the video's first audio track as cues, the way the original made subtitles.

    model: a Hugging Face Whisper repository or local folder. device: "cuda", "cpu", ...; None
    picks the first GPU when there is one (float16 there, float32 on CPU). language: a code such
    as "en"; None detects it from the first 30 s. on_progress(done, total) is called in seconds
    of audio as windows are decoded. See the module docstring for the filter and its limits.
    """
    import torch

    samples, offset = decode_audio(video_path)
    total = len(samples) / SAMPLE_RATE
    if len(samples) == 0:
        return []
    processor, whisper, device_ = _load_whisper(model, device)
    config = whisper.generation_config
    tokenizer, features = processor.tokenizer, processor.feature_extractor
    eot = tokenizer.eos_token_id  # <|endoftext|>: text tokens are the ids below it
    window_frames = features.nb_max_frames  # 3000 log-mel frames = 30 s

    def mel(chunk: np.ndarray):
        out = features(
            chunk, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False, padding="longest",
            return_attention_mask=True,
        )
        return out.input_features.to(device_, whisper.dtype), out.attention_mask.to(device_)

    options = dict(WHISPER_OPTIONS)
    if getattr(config, "is_multilingual", False):
        if language is None:  # once, on the first 30 s (openai-whisper's detect_language)
            first, _ = mel(samples[: window_frames * features.hop_length])
            first = torch.nn.functional.pad(first, (0, window_frames - first.shape[-1]))
            with torch.inference_mode():
                lang_id = int(whisper.detect_language(input_features=first)[0])
            language = {v: k for k, v in config.lang_to_id.items()}[lang_id]
        options["language"] = language
    else:  # English-only checkpoints take neither
        options.pop("task")

    cues: list[Cue] = []
    edges = block_edges(samples, BLOCK_SECONDS * SAMPLE_RATE, _CUT_SEARCH_SECONDS * SAMPLE_RATE)
    for lo, hi in zip(edges, edges[1:]):
        block_start = lo / SAMPLE_RATE

        def monitor(progress, block_start=block_start):  # [[seek, max_frames]] in log-mel frames
            if on_progress is not None:
                on_progress(min(block_start + float(progress[0][0]) * _HOP_SECONDS, total), total)

        input_features, attention_mask = mel(samples[lo:hi])
        with torch.inference_mode():
            out = whisper.generate(
                input_features,
                attention_mask=attention_mask,
                return_timestamps=True,
                return_segments=True,  # with logprob_threshold set, each window's result keeps its scores
                monitor_progress=monitor,
                **options,
            )
        cues += cues_from_segments(
            out["segments"][0], tokenizer.decode, eot, offset=offset + block_start, duration=(hi - lo) / SAMPLE_RATE
        )
    if on_progress is not None:
        on_progress(total, total)
    return cues


def _load_whisper(model: str, device: str | None):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    device_ = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float16 if device_.type == "cuda" else torch.float32
    try:
        processor = WhisperProcessor.from_pretrained(model)
        whisper = WhisperForConditionalGeneration.from_pretrained(model, dtype=dtype)
    except (OSError, ValueError):  # ValueError: hub's HFValidationError for a path that is not there
        if Path(model).is_dir():
            where = "the folder holds no complete Whisper model (config, weights, tokenizer, preprocessor)"
        else:
            where = "it is no local folder, and the hub copy is neither cached nor reachable"
        raise DownloadError(
            f"cannot load the Whisper model {model!r}: {where}; download it once with network access "
            "or give a local folder"
        ) from None
    return processor, whisper.to(device_).eval(), device_


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
