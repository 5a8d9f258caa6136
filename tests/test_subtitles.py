"""Subtitles: SRT/VTT parsing, embedded tracks, Whisper transcription logic, frame alignment."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from llamavid_cli import subtitles
from llamavid_cli.errors import DownloadError, LlamaVidError, VideoError
from llamavid_cli.subtitles import (
    Cue,
    SubtitleError,
    align,
    ass_dialogue_text,
    block_edges,
    cues_from_segments,
    decode_audio,
    embedded_cues,
    read_srt,
    read_subtitles,
    read_vtt,
    transcribe,
    window_avg_logprob,
)
from llamavid_cli.video import iter_frames
from media import _ASS_HEADER, make_audio, make_video


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# --- SubRip ------------------------------------------------------------------------------------


def test_srt_basic_and_multiline(tmp_path):
    srt = write(
        tmp_path / "a.srt",
        "1\n00:00:01,000 --> 00:00:02,500\nHello\nthere\n\n"
        "2\n00:01:02,500 --> 00:01:04,000\nSecond cue\n\n"
        "3\n10:00:00,001 --> 10:00:00,002\nlast\n",
    )
    assert read_srt(srt) == [
        Cue(1.0, 2.5, "Hello there"),
        Cue(62.5, 64.0, "Second cue"),
        Cue(36000.001, 36000.002, "last"),
    ]


def test_srt_tolerances(tmp_path):
    """BOM, CRLF, tags, coordinates, dots, no numbers, no blank line between cues, no final newline."""
    text = (
        "\ufeff\r\n\r\n1\r\n00:00:01,000 --> 00:00:02,000\r\n<i>Hello</i>   <b>you</b>\r\n"
        '<font color="#ff0000">red</font> {\\an8}top\r\n\r\n\r\n'
        "2\r\n00:00:03.000-->00:00:04.000 X1:100 X2:200 Y1:10 Y2:20\r\nno number next\r\n\r\n"
        "00:00:05,000 --> 00:00:06,000\r\nforgot the blank line\r\n"
        "4\r\n00:00:07,000 --> 00:00:08,000\r\na < b > c\r\n"
        "00:00:09,000 --> 00:00:09,000\r\nzero length, no final newline"
    )
    srt = write(tmp_path / "a.srt", text)
    assert read_srt(srt) == [
        Cue(1.0, 2.0, "Hello you red top"),
        Cue(3.0, 4.0, "no number next"),
        Cue(5.0, 6.0, "forgot the blank line"),
        Cue(7.0, 8.0, "a < b > c"),
        Cue(9.0, 9.0, "zero length, no final newline"),
    ]


def test_srt_encodings_and_empty_cues(tmp_path):
    cp1252 = write(tmp_path / "old.srt", "1\n00:00:01,000 --> 00:00:02,000\nIt’s café\n".encode("cp1252"))
    assert read_srt(cp1252) == [Cue(1.0, 2.0, "It’s café")]
    utf16 = write(tmp_path / "w.srt", "1\r\n00:00:01,000 --> 00:00:02,000\r\nwide\r\n".encode("utf-16"))
    assert read_srt(utf16) == [Cue(1.0, 2.0, "wide")]
    # a cue whose text is only tags carries nothing and is dropped; an empty file has no cues
    tags_only = write(
        tmp_path / "t.srt", "1\n00:00:01,000 --> 00:00:02,000\n<i></i>\n\n2\n00:00:03,000 --> 00:00:04,000\nx\n"
    )
    assert read_srt(tags_only) == [Cue(3.0, 4.0, "x")]
    assert read_srt(write(tmp_path / "empty.srt", "\ufeff\n\n")) == []


# --- WebVTT ------------------------------------------------------------------------------------


def test_vtt_features(tmp_path):
    vtt = write(
        tmp_path / "a.vtt",
        "WEBVTT - a title\nKind: captions\nLanguage: en\n\n"
        "NOTE this is a comment\nover two lines\n\n"
        "STYLE\n::cue { color: yellow }\n\n"
        "REGION\nid:fred width:40%\n\n"
        "intro\n00:01.000 --> 00:02.500 align:start line:0 position:10%\n"
        "<v Bob>Hi &amp; <b>bye</b>\n<00:01.500><c.loud>now</c>\n\n"
        "2\n01:00:00.000 --> 01:00:01.250\nan hour in &lt;b&gt;\n\n"
        "NOTE\ntrailing note\n",
    )
    assert read_vtt(vtt) == [Cue(1.0, 2.5, "Hi & bye now"), Cue(3600.0, 3601.25, "an hour in <b>")]


def test_vtt_crlf_bom_and_cue_right_after_header(tmp_path):
    text = "\ufeffWEBVTT\r\n00:00.500 --> 00:01.000\r\nsqueezed\r\n\r\n00:02.000 --> 00:03.000\r\nnext"
    vtt = write(tmp_path / "b.vtt", text)
    assert read_vtt(vtt) == [Cue(0.5, 1.0, "squeezed"), Cue(2.0, 3.0, "next")]


def test_read_subtitles_goes_by_content_not_name(tmp_path):
    vtt_named_srt = write(tmp_path / "really_vtt.srt", "WEBVTT\n\n00:01.000 --> 00:02.000\nfrom vtt\n")
    srt_named_vtt = write(tmp_path / "really_srt.vtt", "1\n00:00:01,000 --> 00:00:02,000\nfrom srt\n")
    assert read_subtitles(vtt_named_srt) == [Cue(1.0, 2.0, "from vtt")]
    assert read_subtitles(srt_named_vtt) == [Cue(1.0, 2.0, "from srt")]
    # "WEBVTTX" is not the header
    with pytest.raises(SubtitleError, match="expected a time line"):
        read_subtitles(write(tmp_path / "x.srt", "WEBVTTX\n\n00:01.000 --> 00:02.000\nx\n"))


# --- errors ------------------------------------------------------------------------------------

_TIME_SRT = "00:01:02,500 --> 00:01:04,000"
_TIME_VTT = "00:01:02.500 --> 00:01:04.000"


@pytest.mark.parametrize(
    "name, text, reader, message",
    [
        (
            "movie.srt",
            "1\n00:00:01,000 --> 00:00:02,000\nfine\n\n\n14\nhello\n00:00:03,000 --> 00:00:04,000\n",
            read_srt,
            f"movie.srt:7: expected a time line like {_TIME_SRT}, got 'hello'",
        ),
        ("a.srt", "just text\n", read_srt, f"a.srt:1: expected a time line like {_TIME_SRT}, got 'just text'"),
        (
            "b.srt",
            "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n",
            read_srt,
            f"b.srt:6: expected a time line like {_TIME_SRT}, got a blank line",
        ),
        (
            "c.srt",
            "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:05,000 --> 00:00:04,999\nbackwards\n",
            read_srt,
            "c.srt:6: the cue ends (00:00:04,999) before it starts (00:00:05,000)",
        ),
        (
            "d.srt",
            "1\n00:61:00,000 --> 00:62:00,000\nbad minutes\n",
            read_srt,
            f"d.srt:2: expected a time line like {_TIME_SRT}, got '00:61:00,000 --> 00:62:00,000'",
        ),
        ("e.vtt", "1\n00:00:01,000 --> 00:00:02,000\nx\n", read_vtt, "e.vtt:1: expected the WEBVTT header, got '1'"),
        (
            "f.vtt",
            "WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\n00:03.000 --> 00:02.000\nbackwards\n",
            read_vtt,
            "f.vtt:6: the cue ends (00:00:02.000) before it starts (00:00:03.000)",
        ),
        (
            "g.vtt",
            "WEBVTT\n\nNOTE fine\n\ncue-id\nno timing here\n",
            read_vtt,
            f"g.vtt:6: expected a time line like {_TIME_VTT}, got 'no timing here'",
        ),
        (
            "h.vtt",
            "WEBVTT\n\n00:01.000 --> 00:02,000\ncomma\n",
            read_vtt,
            f"h.vtt:3: expected a time line like {_TIME_VTT}, got '00:01.000 --> 00:02,000'",
        ),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, monkeypatch, name, text, reader, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / name, text)
    with pytest.raises(SubtitleError) as info:
        reader(name)
    assert str(info.value) == message
    if reader is read_srt or text.startswith("WEBVTT"):  # read_subtitles reports the same line
        with pytest.raises(SubtitleError) as again:
            read_subtitles(name)
        assert str(again.value) == message


def test_error_family_and_unreadable_files(tmp_path):
    assert issubclass(SubtitleError, LlamaVidError) and SubtitleError.exit_code == 1
    with pytest.raises(SubtitleError, match=r"missing\.srt does not exist; check the path"):
        read_subtitles(tmp_path / "missing.srt")
    with pytest.raises(SubtitleError, match="is a directory"):
        read_subtitles(tmp_path)
    ass = write(tmp_path / "a.ass", "[Script Info]\nTitle: x\n")
    with pytest.raises(SubtitleError, match=r"is an ASS/SSA file; convert it to SRT"):
        read_subtitles(ass)


# --- alignment ---------------------------------------------------------------------------------


def reference_align(cues, times):
    """method.md §7 spelled out: last frame strictly before the end; none → the first frame."""
    out = [[] for _ in times]
    for cue in cues:
        before = [i for i, t in enumerate(times) if t < cue.end]
        out[before[-1] if before else 0].append(cue.text)
    return out


def original_align(cues, times):
    """The original's load_video_input loop (extract_video_features_subtitles.py)."""
    point, out = 0, [[] for _ in times]
    for cue in cues:
        while point < len(times) and times[point] < cue.end:
            point += 1
        out[point - 1].append(cue.text)
    return out


def test_align_hand_made():
    times = [0.0, 1.0, 2.0, 3.0]
    cues = [
        Cue(0.0, 0.0, "before the first frame"),  # no frame strictly before → frame 0
        Cue(0.2, 2.7, "spans three frames"),  # → frame 2 (2.0 < 2.7)
        Cue(1.5, 2.0, "ends on a frame"),  # 2.0 is not strictly before 2.0 → frame 1
        Cue(1.9, 2.0001, "just past it"),  # → frame 2
        Cue(5.0, 99.0, "after the last frame"),  # → frame 3
        Cue(2.5, 1.5, "start is ignored"),  # (never produced by the readers) → frame 1
        Cue(0.9, 3.0, "ends on the last frame"),  # → frame 2
    ]
    assert align(cues, times) == [
        ["before the first frame"],
        ["ends on a frame", "start is ignored"],
        ["spans three frames", "just past it", "ends on the last frame"],
        ["after the last frame"],
    ]
    assert align(cues, times) == reference_align(cues, times)


def test_align_first_frame_later_than_zero_and_edge_cases():
    times = [0.5, 1.5]
    assert align([Cue(0.0, 0.4, "early"), Cue(0.0, 0.5, "at first"), Cue(0, 0.6, "after")], times) == [
        ["early", "at first", "after"],
        [],
    ]
    assert align([Cue(0, 1, "x")], []) == []
    assert align([], times) == [[], []]
    with pytest.raises(ValueError, match="increasing"):
        align([], [1.0, 0.5])


def test_align_matches_reference_and_original_on_random_cues():
    rng = random.Random(0)
    for _ in range(200):
        times = sorted({round(rng.uniform(0, 20), 1) for _ in range(rng.randint(1, 12))})
        cues = [Cue(0.0, round(rng.uniform(0, 25), 1), f"c{i}") for i in range(rng.randint(0, 15))]
        assert align(cues, times) == reference_align(cues, times)
        # the original agrees on cues sorted by end that end after the first frame
        ordered = sorted((c for c in cues if c.end > times[0]), key=lambda c: c.end)
        assert align(ordered, times) == original_align(ordered, times)


def test_align_feeds_movie_text():
    from llamavid_cli.model.prompt import movie_text

    text = movie_text(align([Cue(0.2, 0.8, "Hi."), Cue(0.9, 1.7, "Bye.")], [0.0, 1.0]))
    assert "<image><image>Hi.<image><image>Bye." in text


# --- embedded tracks ---------------------------------------------------------------------------


def make_subtitled(path: Path, codec: str, events: list[tuple[float, float, bytes]], seconds: float = 2.0) -> Path:
    """A small video with one text subtitle track of `codec`, packets written as given."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        track = container.add_stream(codec)
        track.codec_context.subtitle_header = _ASS_HEADER
        for i in range(round(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 100, np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for start, end, payload in events:
            packet = av.Packet(payload)
            packet.stream, packet.time_base = track, Fraction(1, 1000)
            packet.pts = packet.dts = round(start * 1000)
            packet.duration = round((end - start) * 1000)
            container.mux(packet)
    return path


def test_embedded_subrip_from_tests_media(tmp_path):
    video = make_video(
        tmp_path / "subs.mkv", seconds=2, subtitles=[(0.5, 1.5, "<i>hello</i>\nthere"), (1.6, 1.9, "bye")]
    )
    assert embedded_cues(video) == [Cue(0.5, 1.5, "hello there"), Cue(1.6, 1.9, "bye")]


@pytest.mark.parametrize(
    "codec, suffix, payload, text",
    [
        ("ass", "mkv", b"0,0,Default,,0,0,0,,{\\i1}Hi{\\i0} there\\Nsecond\\hline", "Hi there second line"),
        ("webvtt", "mkv", b"<v Bob>web</v> text", "web text"),
        ("mov_text", "mp4", b"\x00\x0dmov text here", "mov text here"),  # 2-byte length prefix
    ],
)
def test_embedded_text_codecs(tmp_path, codec, suffix, payload, text):
    video = make_subtitled(tmp_path / f"v.{suffix}", codec, [(0.5, 1.25, payload)])
    assert embedded_cues(video) == [Cue(0.5, 1.25, text)]


def test_embedded_cues_share_the_frames_clock(tmp_path):
    """A video stream that starts at 0.5 s: frame times and cue times both count from there."""
    video = make_video(tmp_path / "late.mkv", times=[0.5 + 0.1 * i for i in range(20)], subtitles=[(1.0, 1.2, "x")])
    first = next(iter(iter_frames(video)))
    with av.open(str(video)) as container:
        start = float(container.streams.video[0].start_time * container.streams.video[0].time_base)
    assert start == pytest.approx(0.5) and first.time == pytest.approx(0.0)
    assert embedded_cues(video) == [Cue(pytest.approx(0.5), pytest.approx(0.7), "x")]


def test_no_text_track_and_bad_files(tmp_path):
    assert embedded_cues(make_video(tmp_path / "plain.mkv", seconds=1)) == []
    with pytest.raises(VideoError, match="does not exist"):
        embedded_cues(tmp_path / "nope.mkv")
    with pytest.raises(VideoError, match="not a video FFmpeg can read"):
        embedded_cues(write(tmp_path / "junk.mkv", b"not a video at all" * 10))


def test_ass_dialogue_text_forms():
    assert ass_dialogue_text("3,0,Default,Bob,0,0,0,,{\\pos(1,2)}Hey, you,\\Nthere") == "Hey, you, there"
    assert ass_dialogue_text("Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,Old, form") == "Old, form"
    assert ass_dialogue_text("1,0,Default,,0,0,0,,{\\an8}") == ""


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
def speech(tmp_path_factory) -> Path:
    return make_audio(tmp_path_factory.mktemp("speech") / "tone.m4a", seconds=40.0, rate=16000)


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny model's ops are too small for threads; on a busy machine they only spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_transcribe_offline_with_tiny_whisper(tiny_whisper, speech, monkeypatch):
    captured: list[list[dict]] = []
    real = subtitles.cues_from_segments

    def spy(segments, *args, **kwargs):
        captured.append(list(segments))
        return real(captured[-1], *args, **kwargs)

    monkeypatch.setattr(subtitles, "cues_from_segments", spy)
    monkeypatch.setattr(subtitles, "MIN_AVG_LOGPROB", -math.inf)  # keep everything first
    progress: list[tuple[float, float]] = []
    torch.manual_seed(0)  # a random model falls back to sampling
    everything = transcribe(
        speech, model=str(tiny_whisper), device="cpu", on_progress=lambda done, total: progress.append((done, total))
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
    monkeypatch.setattr(subtitles, "MIN_AVG_LOGPROB", cut)
    torch.manual_seed(0)
    kept = transcribe(speech, model=str(tiny_whisper), device="cpu")
    assert [c.text for c in kept] == [t for t, v in zip(texts, values) if v >= cut and t.strip()]
    assert 0 < len(kept) < len(everything)

    monkeypatch.setattr(subtitles, "MIN_AVG_LOGPROB", math.inf)
    assert transcribe(speech, model=str(tiny_whisper), device="cpu", language="en") == []


def test_transcribe_in_blocks_keeps_the_clock(tiny_whisper, speech, monkeypatch):
    """Blocks of ~15 s: cues carry their block's offset and progress runs through all blocks."""
    monkeypatch.setattr(subtitles, "BLOCK_SECONDS", 15)
    monkeypatch.setattr(subtitles, "_CUT_SEARCH_SECONDS", 5)
    monkeypatch.setattr(subtitles, "MIN_AVG_LOGPROB", -math.inf)
    offsets: list[float] = []
    real = subtitles.cues_from_segments
    monkeypatch.setattr(
        subtitles, "cues_from_segments", lambda *a, **k: offsets.append(k["offset"]) or real(*a, **k)
    )
    progress: list[float] = []
    torch.manual_seed(0)
    cues = transcribe(
        speech, model=str(tiny_whisper), device="cpu", language="en", on_progress=lambda done, _: progress.append(done)
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
