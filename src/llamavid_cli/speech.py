"""Speech to subtitles: Whisper through transformers, filtered as the original did (method.md §7).

Layout, as openai-whisper splits it: the audio (`decode_audio`, `block_edges`), the confidence
filter over decoded windows (`window_avg_logprob`, `cues_from_segments`), and the long-form loop
(`transcribe`). The device is chosen as for the LLM (`loader.pick_device`).

What "the original's confidence filter" means here. The original ran
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

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import av
import numpy as np

from .defaults import DEFAULT_WHISPER  # noqa: F401  (re-exported: speech.DEFAULT_WHISPER)
from .errors import DownloadError
from .subtitles import Cue, SubtitleError, clock_origin, open_media

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


def decode_audio(video_path: str | Path) -> tuple[np.ndarray, float]:
    """The first audio track as 16 kHz mono float32 in [-1, 1], and the video-clock time of its
    first sample. PyAV's resampler (FFmpeg's swresample) does what openai-whisper's
    `ffmpeg -ac 1 -ar 16000` call does, without rounding to 16-bit."""
    path = Path(video_path)
    with open_media(path) as container:
        if not container.streams.audio:
            raise SubtitleError(f"{path} has no audio track to transcribe; give a subtitle file instead")
        stream = container.streams.audio[0]
        origin = clock_origin(container)
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
    picks as `loader.pick_device("auto")` does (float16 on a GPU, float32 on CPU). language: a code such
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
            chunk,
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            truncation=False,
            padding="longest",
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
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from .loader import pick_device, pick_dtype  # the LLM's rule: fp16 on a GPU, float32 on the CPU

    device_ = pick_device(device or "auto")
    dtype, _ = pick_dtype("auto", device_)
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
