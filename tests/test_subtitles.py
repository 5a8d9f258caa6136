"""Subtitles: SRT/VTT reading and writing, text encodings, embedded tracks, frame alignment."""

from __future__ import annotations

import random
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from llamavid_cli import subtitles
from llamavid_cli.errors import LlamaVidError, VideoError
from llamavid_cli.subtitles import (
    Cue,
    SubtitleError,
    align,
    ass_dialogue_text,
    embedded_cues,
    read_srt,
    read_subtitles,
    read_vtt,
    write_srt,
    write_vtt,
)
from llamavid_cli.video import iter_frames
from media import _ASS_HEADER, make_video


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


def test_vtt_hourless_and_short_timestamps(tmp_path):
    """`mm:ss.ttt` is valid WebVTT; Teams writes `0:0:1.5`: both read as webvtt-py reads them."""
    vtt = write(
        tmp_path / "t.vtt",
        "WEBVTT\n\n01:02.500 --> 01:04.000\nhour-less\n\n0:0:0.0 --> 0:0:0.570\n<v Yuri>There you go.</v>\n\n"
        "1:2:3.5 --> 1:2:4.25\nshort fields\n",
    )
    assert read_vtt(vtt) == [
        Cue(62.5, 64.0, "hour-less"),
        Cue(0.0, 0.57, "There you go."),
        Cue(3723.5, 3724.25, "short fields"),
    ]


def test_read_subtitles_goes_by_content_not_name(tmp_path):
    vtt_named_srt = write(tmp_path / "really_vtt.srt", "WEBVTT\n\n00:01.000 --> 00:02.000\nfrom vtt\n")
    srt_named_vtt = write(tmp_path / "really_srt.vtt", "1\n00:00:01,000 --> 00:00:02,000\nfrom srt\n")
    assert read_subtitles(vtt_named_srt) == [Cue(1.0, 2.0, "from vtt")]
    assert read_subtitles(srt_named_vtt) == [Cue(1.0, 2.0, "from srt")]
    # "WEBVTTX" is not the header
    with pytest.raises(SubtitleError, match="expected a time line"):
        read_subtitles(write(tmp_path / "x.srt", "WEBVTTX\n\n00:01.000 --> 00:02.000\nx\n"))


# --- damaged cues and errors ---------------------------------------------------------------------

_TIME_SRT = "00:01:02,500 --> 00:01:04,000"
_TIME_VTT = "00:01:02.500 --> 00:01:04.000"


@pytest.mark.parametrize(
    "name, text, reader, message",
    [
        ("a.srt", "just text\n", read_srt, f"a.srt:1: expected a time line like {_TIME_SRT}, got 'just text'"),
        (
            "b.srt",
            "\n2\n",
            read_srt,
            f"b.srt:3: expected a time line like {_TIME_SRT}, got a blank line",
        ),
        (
            "c.srt",
            "1\n00:00:05,000 --> 00:00:04,999\nbackwards\n",
            read_srt,
            "c.srt:2: the cue ends (00:00:04,999) before it starts (00:00:05,000)",
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
            "WEBVTT\n\n00:03.000 --> 00:02.000\nbackwards\n",
            read_vtt,
            "f.vtt:3: the cue ends (00:00:02.000) before it starts (00:00:03.000)",
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
        (  # webvtt-py checks the ranges
            "i.vtt",
            "WEBVTT\n\n00:61.000 --> 00:62.000\nminutes\n",
            read_vtt,
            "i.vtt:3: cannot read the cue at '00:61.000 --> 00:62.000'",
        ),
    ],
)
def test_a_file_without_one_usable_cue_names_file_and_line(tmp_path, monkeypatch, name, text, reader, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / name, text)
    with pytest.raises(SubtitleError) as info:
        reader(name)
    assert str(info.value) == message
    if reader is read_srt or text.startswith("WEBVTT"):  # read_subtitles reports the same line
        with pytest.raises(SubtitleError) as again:
            read_subtitles(name)
        assert str(again.value) == message


@pytest.mark.parametrize(
    "name, text, cues, warning",
    [
        (  # junk where a time line was due; the cue after it (no text) adds nothing
            "movie.srt",
            "1\n00:00:01,000 --> 00:00:02,000\nfine\n\n\n14\nhello\n00:00:03,000 --> 00:00:04,000\n",
            [Cue(1.0, 2.0, "fine")],
            f"movie.srt:7: expected a time line like {_TIME_SRT}, got 'hello'",
        ),
        (
            "b.srt",
            "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n",
            [Cue(1.0, 2.0, "ok")],
            f"b.srt:6: expected a time line like {_TIME_SRT}, got a blank line",
        ),
        (
            "c.srt",
            "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:05,000 --> 00:00:04,999\nbackwards\n\n"
            "3\n00:00:06,000 --> 00:00:07,000\nafter\n",
            [Cue(1.0, 2.0, "ok"), Cue(6.0, 7.0, "after")],
            "c.srt:6: the cue ends (00:00:04,999) before it starts (00:00:05,000)",
        ),
        (  # a cue that forgot its blank line is its own cue: only it is skipped
            "d.srt",
            "00:00:01,000 --> 00:00:02,000\nok\n00:00:05,000 --> 00:00:04,000\nbad\n"
            "00:00:06,000 --> 00:00:07,000\nok too\n",
            [Cue(1.0, 2.0, "ok"), Cue(6.0, 7.0, "ok too")],
            "d.srt:3: the cue ends (00:00:04,000) before it starts (00:00:05,000)",
        ),
        (
            "f.vtt",
            "WEBVTT\n\n00:01.000 --> 00:02.000\nok\n\n00:03.000 --> 00:02.000\nbackwards\n",
            [Cue(1.0, 2.0, "ok")],
            "f.vtt:6: the cue ends (00:00:02.000) before it starts (00:00:03.000)",
        ),
        (
            "h.vtt",
            "WEBVTT\n\nid\n00:01.000 --> 00:02,000\ncomma\n\n00:03.000 --> 00:04.000\ngood\n",
            [Cue(3.0, 4.0, "good")],
            f"h.vtt:4: expected a time line like {_TIME_VTT}, got '00:01.000 --> 00:02,000'",
        ),
    ],
)
def test_a_damaged_cue_is_skipped_with_one_warning_naming_its_line(tmp_path, monkeypatch, name, text, cues, warning):
    """Players skip a damaged cue and show the rest; so do we, and say where it was."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / name, text)
    warnings: list[str] = []
    assert read_subtitles(name, on_warning=warnings.append) == cues
    assert warnings == [f"{warning}; skipped that cue"]
    assert read_subtitles(name) == cues  # without a hook: the same cues, nothing printed


def test_many_damaged_cues_are_counted_after_the_first_few(tmp_path):
    good = "1\n00:00:01,000 --> 00:00:02,000\nok\n\n"
    bad = "".join(f"{i}\nno time {i}\n\n" for i in range(2, 10))  # 8 damaged cues, lines 5, 8, ...
    warnings: list[str] = []
    path = write(tmp_path / "many.srt", good + bad)
    assert read_srt(path, on_warning=warnings.append) == [Cue(1.0, 2.0, "ok")]
    assert len(warnings) == subtitles.MAX_CUE_WARNINGS + 1
    assert warnings[0] == f"{path}:6: expected a time line like {_TIME_SRT}, got 'no time 2'; skipped that cue"
    assert warnings[-1] == f"{path}: {8 - subtitles.MAX_CUE_WARNINGS} more damaged cues skipped"


def test_error_family_and_unreadable_files(tmp_path):
    assert issubclass(SubtitleError, LlamaVidError) and SubtitleError.exit_code == 1
    with pytest.raises(SubtitleError, match=r"missing\.srt does not exist; check the path"):
        read_subtitles(tmp_path / "missing.srt")
    with pytest.raises(SubtitleError, match="is a directory"):
        read_subtitles(tmp_path)
    ass = write(tmp_path / "a.ass", "[Script Info]\nTitle: x\n")
    with pytest.raises(SubtitleError, match=r"is an ASS/SSA file; convert it to SRT"):
        read_subtitles(ass)


# --- text encodings ------------------------------------------------------------------------------

_SRT_TEXT = (
    "1\r\n00:00:01,000 --> 00:00:02,000\r\nÇa va? Ünïcödé ✓\r\n\r\n2\r\n00:00:03,000 --> 00:00:04,000\r\n日本語\r\n"
)
_SRT_CUES = [Cue(1.0, 2.0, "Ça va? Ünïcödé ✓"), Cue(3.0, 4.0, "日本語")]


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_a_byte_order_mark_decides_the_encoding(tmp_path, codec):
    data = _SRT_TEXT.encode(codec)
    if not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        data = "\ufeff".encode(codec) + data  # the -le / -be codecs write no mark themselves
    warnings: list[str] = []
    assert read_srt(write(tmp_path / "s.srt", data), on_warning=warnings.append) == _SRT_CUES
    vtt = ("WEBVTT\n\n00:01.000 --> 00:02.000\nwide\n").encode(codec)
    if not vtt.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        vtt = "\ufeff".encode(codec) + vtt
    assert read_subtitles(write(tmp_path / "s.vtt", vtt), on_warning=warnings.append) == [Cue(1.0, 2.0, "wide")]
    assert warnings == []  # nothing was guessed


def test_a_legacy_encoding_is_guessed_and_said(tmp_path, monkeypatch):
    """GB2312 Chinese (a common legacy SRT encoding): read right, and one warning names the guess."""
    monkeypatch.chdir(tmp_path)
    lines = ["我们今天去公园散步吧。", "天气很好，阳光明媚，大家都很高兴。", "晚上我们一起吃饭，然后看电影。"]
    text = "".join(f"{i}\n00:00:0{i},000 --> 00:00:0{i},900\n{line}\n\n" for i, line in enumerate(lines, start=1))
    write(tmp_path / "subs.srt", text.encode("gb2312"))
    warnings: list[str] = []
    assert [c.text for c in read_subtitles("subs.srt", on_warning=warnings.append)] == lines
    assert len(warnings) == 1 and re.fullmatch(r"read subs\.srt as GB(2312|K|18030) \(guessed\); .*", warnings[0])


def test_utf8_is_taken_without_a_word_and_a_named_encoding_wins(tmp_path):
    warnings: list[str] = []
    utf8 = write(tmp_path / "u.srt", "1\n00:00:01,000 --> 00:00:02,000\nnaïve café\n".encode())
    assert read_srt(utf8, on_warning=warnings.append) == [Cue(1.0, 2.0, "naïve café")] and warnings == []
    russian = write(tmp_path / "r.srt", "1\n00:00:01,000 --> 00:00:02,000\nПривет\n".encode("koi8-r"))
    assert read_srt(russian, encoding="koi8_r", on_warning=warnings.append) == [Cue(1.0, 2.0, "Привет")]
    assert warnings == []
    with pytest.raises(SubtitleError, match=r"r\.srt is not valid UTF-8 \(as asked\): bad bytes at offset 32"):
        read_srt(russian, encoding="utf8")
    with pytest.raises(SubtitleError, match=r"unknown text encoding 'klingon'"):
        read_srt(russian, encoding="klingon")


def test_hopeless_bytes_are_one_error(tmp_path):
    noise = write(tmp_path / "noise.srt", bytes(range(256)) * 8)
    with pytest.raises(SubtitleError, match=r"noise\.srt is not text in any encoding we can recognise"):
        read_subtitles(noise)
    marked = write(tmp_path / "marked.srt", b"\xef\xbb\xbf1\n\xff\xfe\xfd")
    message = r"marked\.srt is not valid UTF-8 \(as its byte-order mark says\): bad bytes at offset 5"
    with pytest.raises(SubtitleError, match=message):
        read_subtitles(marked)


# --- writing -------------------------------------------------------------------------------------

_ROUND_TRIP = [
    Cue(0.0, 1.5, "First"),
    Cue(62.5, 64.0, "a < b & c > d"),
    Cue(3599.999, 3725.25, "Ünïcödé 日本語 -- > not an arrow -->"),
    Cue(36000.001, 36000.002, "ten hours in"),
]


@pytest.mark.parametrize("writer, reader, suffix", [(write_srt, read_srt, "srt"), (write_vtt, read_vtt, "vtt")])
def test_written_files_read_back_as_the_same_cues(tmp_path, writer, reader, suffix):
    path = tmp_path / f"out.{suffix}"
    path.write_text("old contents")
    writer(_ROUND_TRIP, path)
    assert reader(path) == _ROUND_TRIP
    assert read_subtitles(path) == _ROUND_TRIP  # told apart by content
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # replaced in place, no temp file left
    head = path.read_text(encoding="utf-8").split("\n")[:3]
    if suffix == "srt":
        assert head == ["1", "00:00:00,000 --> 00:00:01,500", "First"]
    else:
        assert head == ["WEBVTT", "", "00:00:00.000 --> 00:00:01.500"]


def test_a_write_that_fails_is_one_error_and_leaves_nothing(tmp_path):
    with pytest.raises(SubtitleError, match=r"cannot write .*missing/out\.srt"):
        write_srt(_ROUND_TRIP, tmp_path / "missing" / "out.srt")
    assert list(tmp_path.iterdir()) == []


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
