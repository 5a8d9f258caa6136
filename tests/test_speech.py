"""Speech: Whisper transcription as the original made subtitles (audio, confidence filter, blocks)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from llamavid_cli import speech
from llamavid_cli.errors import DownloadError
from llamavid_cli.speech import (
    block_edges,
    cues_from_segments,
    decode_audio,
    transcribe,
    window_avg_logprob,
)
from llamavid_cli.subtitles import Cue, SubtitleError
from media import make_audio, make_video

# --- speech: audio --------------------------------------------------------------------------------


def test_decode_audio_resamples_to_16k_mono(tmp_path):
    audio, start = decode_audio(make_audio(tmp_path / "tone.m4a", seconds=1.0, rate=44100))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) < 1100  # AAC priming and padding shift the length a little
    assert start == pytest.approx(0.0, abs=0.05)
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    peak = np.fft.rfftfreq(12000, 1 / 16000)[np.argmax(spectrum)]
    assert abs(peak - 440) < 3
    assert 0.15 < np.abs(audio[2000:14000]).max() < 0.25  # the 0.2 sine survives


def test_decode_audio_without_audio_track(tmp_path):
    video = make_video(tmp_path / "silent.mp4", seconds=1)
    with pytest.raises(SubtitleError, match=r"silent\.mp4 has no audio track to transcribe"):
        decode_audio(video)


def test_block_edges_cut_in_quiet_places():
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 1, 10_000).astype(np.float32)
    signal[3_450:3_560] = 0  # a pause just before the first nominal edge (4000)
    edges = block_edges(signal, block=4_000, search=1_000, frame=100)
    assert edges[0] == 0 and edges[-1] == 10_000
    assert edges[1] == 3_500  # the start of the quiet 100-sample frame
    assert all(0 < b - a <= 4_000 for a, b in zip(edges, edges[1:]))
    assert block_edges(signal[:3_000], block=4_000, search=1_000) == [0, 3_000]


# --- speech: the confidence filter ------------------------------------------------------------


def reference_avg_logprob(rows, tokens, eot):
    """openai-whisper's DecodingTask: sum log p(token) up to and including the first EOT,
    divided by (tokens before EOT + 1); written with plain floats."""
    total, kept = 0.0, len(tokens)
    for i, (row, token) in enumerate(zip(rows, tokens)):
        finite = [x for x in row if x != -math.inf]
        peak = max(finite)
        log_z = peak + math.log(sum(math.exp(x - peak) for x in finite))
        total += row[token] - log_z
        if token == eot:
            kept = i
            break
    return total / (kept + 1)


def test_window_avg_logprob_matches_openai_whisper_formula():
    torch.manual_seed(0)
    eot = 5
    rows = torch.randn(6, 8) * 3
    rows[:, 7] = -math.inf  # a suppressed token
    for tokens in ([6, 2, 3, 5, 1, 1], [0, 1, 2, 3, 4, 6], [5, 0, 0, 0, 0, 0]):
        got = window_avg_logprob(list(rows), tokens, eot)
        want = reference_avg_logprob(rows.tolist(), tokens, eot)
        assert got == pytest.approx(want, abs=1e-5), f"{tokens}: {got} vs {want}"


def _window(logprob_per_token: float, tokens: list[int], vocab: int = 1767) -> dict:
    """A fake window result whose chosen tokens each have log-probability `logprob_per_token`."""
    scores = []
    for token in tokens:
        p = math.exp(logprob_per_token)
        row = torch.full((vocab,), math.log((1 - p) / (vocab - 1)))
        row[token] = math.log(p)
        scores.append(row)
    return {"sequences": torch.tensor([257, 258, 261] + tokens), "scores": tuple(scores)}


def test_cues_from_segments_filters_windows_and_strips_one_space():
    eot = 256
    ts = lambda s: 266 + round(s / 0.02)  # noqa: E731 - timestamp token of the tiny vocab
    sure = _window(-0.3, [ts(0), 32, 72, 105, ts(1), ts(1), 32, 32, 79, ts(2), eot])
    unsure = _window(-2.5, [ts(0), 32, 63, ts(3), eot])
    segments = [
        {"start": 0.0, "end": 1.0, "tokens": [ts(0), 32, 72, 105, ts(1)], "result": sure},
        {"start": 1.0, "end": 2.0, "tokens": [ts(1), 32, 32, 79, ts(2)], "result": sure},
        {"start": 2.0, "end": 2.5, "tokens": [ts(2), 32, ts(2.5)], "result": sure},  # only a space
        {"start": 30.0, "end": 33.0, "tokens": [ts(0), 32, 63, ts(3)], "result": unsure},
    ]
    decode = lambda ids: bytes(ids).decode()  # noqa: E731 - byte-level ids
    assert window_avg_logprob(sure["scores"], sure["sequences"][3:].tolist(), eot) == pytest.approx(-0.3, abs=1e-4)
    cues = cues_from_segments(segments, decode, eot, offset=10.0)
    assert cues == [Cue(10.0, 11.0, "Hi"), Cue(11.0, 12.0, " O")]  # one space removed; -2.5 window dropped
    clamped = cues_from_segments(segments[:1], decode, eot, offset=5.0, duration=0.5)
    assert clamped == [Cue(5.0, 5.5, "Hi")]
    assert cues_from_segments(segments[3:], decode, eot) == []


# --- speech: end to end with a tiny random Whisper --------------------------------------------


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    """A randomly initialised Whisper (d_model 32, one layer) with a byte-level tokenizer, saved
    in the Hugging Face layout: the special tokens and 1501 timestamps of the real vocabulary
    after 256 byte tokens."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = tmp_path_factory.mktemp("whisper") / "tiny-whisper"
    byte_chars = bytes_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    specials = [
        "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|fr|>", "<|translate|>", "<|transcribe|>",
        "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
    ]  # fmt: skip
    for token in specials + [f"<|{i * 0.02:.2f}|>" for i in range(1501)]:
        vocab[token] = len(vocab)
    ids = {token: vocab[token] for token in specials}
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)

    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=sot,
        eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
    )  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        max_new_tokens=24,  # keeps a random model's windows short
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        lang_to_id={"<|en|>": ids["<|en|>"], "<|fr|>": ids["<|fr|>"]},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        is_multilingual=True, suppress_tokens=[], begin_suppress_tokens=[220, eot], max_initial_timestamp_index=50,
    )  # fmt: skip
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert json.loads((folder / "generation_config.json").read_text())["no_timestamps_token_id"] == 265
    return folder


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    return make_audio(tmp_path_factory.mktemp("speech") / "tone.m4a", seconds=40.0, rate=16000)


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model's ops are too small for threads; on a busy machine they only spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_transcribe_offline_with_tiny_whisper(tiny_whisper, tone, monkeypatch):
    captured: list[list[dict]] = []
    real = speech.cues_from_segments

    def spy(segments, *args, **kwargs):
        captured.append(list(segments))
        return real(captured[-1], *args, **kwargs)

    monkeypatch.setattr(speech, "cues_from_segments", spy)
    monkeypatch.setattr(speech, "MIN_AVG_LOGPROB", -math.inf)  # keep everything first
    progress: list[tuple[float, float]] = []
    torch.manual_seed(0)  # a random model falls back to sampling
    everything = transcribe(
        tone, model=str(tiny_whisper), device="cpu", on_progress=lambda done, total: progress.append((done, total))
    )

    total = progress[-1][1]
    assert total == pytest.approx(40.0, abs=0.1) and progress[-1] == (total, total)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress) and len(progress) >= 3  # two windows
    assert everything and all(isinstance(c, Cue) and 0 <= c.start <= c.end <= total + 0.1 for c in everything)
    assert all(c.text.strip() for c in everything)

    # each segment's window avg_logprob, recomputed from generate's own scores with plain floats
    eot = 256
    segments = [segment for block in captured for segment in block]
    values = []
    for segment in segments:
        scores = [row.tolist() for row in segment["result"]["scores"]]
        generated = segment["result"]["sequences"].tolist()[-len(scores) :]
        values.append(reference_avg_logprob(scores, generated, eot))
    texts = [bytes(t for t in segment["tokens"].tolist() if t < eot).decode(errors="replace") for segment in segments]
    texts = [t[1:] if t.startswith(" ") else t for t in texts]
    assert [c.text for c in everything] == [t for t in texts if t.strip()]
    assert len(set(values)) >= 2, "expected windows of different confidence"

    # with the threshold between them, exactly the segments of the better windows stay
    cut = (min(values) + max(values)) / 2
    monkeypatch.setattr(speech, "MIN_AVG_LOGPROB", cut)
    torch.manual_seed(0)
    kept = transcribe(tone, model=str(tiny_whisper), device="cpu")
    assert [c.text for c in kept] == [t for t, v in zip(texts, values) if v >= cut and t.strip()]
    assert 0 < len(kept) < len(everything)

    monkeypatch.setattr(speech, "MIN_AVG_LOGPROB", math.inf)
    assert transcribe(tone, model=str(tiny_whisper), device="cpu", language="en") == []


def test_transcribe_in_blocks_keeps_the_clock(tiny_whisper, tone, monkeypatch):
    """Blocks of ~15 s: cues carry their block's offset and progress runs through all blocks."""
    monkeypatch.setattr(speech, "BLOCK_SECONDS", 15)
    monkeypatch.setattr(speech, "_CUT_SEARCH_SECONDS", 5)
    monkeypatch.setattr(speech, "MIN_AVG_LOGPROB", -math.inf)
    offsets: list[float] = []
    real = speech.cues_from_segments
    monkeypatch.setattr(speech, "cues_from_segments", lambda *a, **k: offsets.append(k["offset"]) or real(*a, **k))
    progress: list[float] = []
    torch.manual_seed(0)
    cues = transcribe(
        tone, model=str(tiny_whisper), device="cpu", language="en", on_progress=lambda done, _: progress.append(done)
    )
    assert offsets[0] == 0.0 and len(offsets) >= 3
    assert all(10 <= b - a <= 15 for a, b in zip(offsets, offsets[1:]))  # cut within the last 5 s of 15
    assert 40 - offsets[-1] <= 15
    assert progress == sorted(progress) and progress[-1] == pytest.approx(40.0, abs=0.1)
    assert cues and all(0 <= c.start <= c.end <= 40.1 for c in cues)
    starts = [c.start for c in cues]
    assert any(s >= offsets[-1] for s in starts)  # the last block's cues sit after its start


def test_transcribe_errors(tmp_path, tiny_whisper):
    with pytest.raises(SubtitleError, match="has no audio track"):
        transcribe(make_video(tmp_path / "mute.mp4", seconds=1), model=str(tiny_whisper))
    audio = make_audio(tmp_path / "a.m4a", seconds=0.5)
    for missing in (str(tmp_path / "no-such-folder"), "nobody/no-such-whisper", str(tmp_path)):
        with pytest.raises(DownloadError, match="cannot load the Whisper model"):
            transcribe(audio, model=missing, device="cpu")
