"""video.py: which frames are chosen, when they are, and how bad files fail (method.md §4)."""

from __future__ import annotations

import itertools
import math
import weakref
from fractions import Fraction

import av
import numpy as np
import pytest

from llamavid_cli import video
from llamavid_cli.errors import UsageError, VideoError
from llamavid_cli.pixels import resize_and_crop
from llamavid_cli.video import Frame, Sampling, VideoInfo, even_subset, frame_stride, iter_frames, probe
from media import (
    green_corner,
    make_audio,
    make_image,
    make_undecodable,
    make_video,
    marker_side,
    read_index,
    truncate,
)

VFR_TIMES = [0.0, 0.1, 0.2, 0.5, 0.55, 0.6, 1.0, 1.5, 1.6, 1.7, 2.5, 2.6]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Clips shared by the module; each is written once."""
    root = tmp_path_factory.mktemp("media")
    return {
        "cfr": make_video(root / "cfr.mp4", seconds=6, fps=10, gop=10),
        "ntsc": make_video(root / "ntsc.mp4", seconds=3, fps=Fraction(30000, 1001)),
        "long": make_video(root / "long.mp4", seconds=20, fps=10, gop=10),
        "gop_mkv": make_video(root / "gop.mkv", seconds=12, fps=10, gop=10),
        "mpeg4": make_video(root / "mpeg4.avi", seconds=12, fps=10, gop=10, codec="mpeg4"),
        "x264_avi": make_video(root / "x264.avi", seconds=6, fps=10, gop=10),
        "vfr_mp4": make_video(root / "vfr.mp4", times=VFR_TIMES),
        "vfr_mkv": make_video(root / "vfr.mkv", times=VFR_TIMES),
        "subs": make_video(root / "subs.mkv", seconds=2, subtitles=[(0.5, 1.5, "hello"), (1.6, 1.9, "bye")]),
    }


def sample(path, *, size=None, seek=None, on_warning=None, **sampling):
    """iter_frames with the Sampling fields as keywords (fps=, max_frames=, start=, end=)."""
    return iter_frames(path, Sampling(**sampling), size=size, seek=seek, on_warning=on_warning)


def chosen(path, **kwargs) -> list[tuple[int, float, int]]:
    """(index, time, index drawn in the pixels) of every chosen frame."""
    return [(f.index, f.time, read_index(f.image)) for f in sample(path, **kwargs)]


# --- the sampling rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("average_fps", "fps", "stride"),
    [
        (29.97, 1.0, 30),  # round(29.97)
        (30000 / 1001, 1.0, 30),
        (12.5, 1.0, 12),  # half to even
        (13.5, 1.0, 14),  # half to even
        (25.0, 0.5, 50),
        (10.0, 30.0, 1),  # more than the source rate: every frame
        (0.3, 1.0, 1),  # the original's range() step of 0 becomes 1
    ],
)
def test_stride_rule(average_fps, fps, stride):
    assert frame_stride(average_fps, fps) == stride


def test_even_subset_keeps_first_and_last():
    assert even_subset(20, 5) == [0, 4, 9, 14, 19]
    assert even_subset(7, 7) == list(range(7))
    assert even_subset(3, 10) == [0, 1, 2]
    assert even_subset(10, 1) == [0]
    assert even_subset(10, 2) == [0, 9]


def test_cfr_indices_and_times(media):
    frames = chosen(media["cfr"], fps=1.0)
    assert [i for i, _, _ in frames] == [0, 10, 20, 30, 40, 50]
    assert [t for _, t, _ in frames] == pytest.approx([i / 10 for i in range(0, 60, 10)])
    assert all(i == drawn for i, _, drawn in frames)


def test_ntsc_rate_uses_stride_30(media):
    info = probe(media["ntsc"])
    assert info.fps == pytest.approx(30000 / 1001)
    frames = chosen(media["ntsc"], fps=1.0)
    assert [i for i, _, _ in frames] == [0, 30, 60]
    assert [t for _, t, _ in frames] == pytest.approx([i * 1001 / 30000 for i in (0, 30, 60)])
    assert all(i == drawn for i, _, drawn in frames)


def test_half_fps_and_faster_than_source(media):
    assert [i for i, _, _ in chosen(media["cfr"], fps=0.5)] == [0, 20, 40]
    every = chosen(media["cfr"], fps=50.0)
    assert [i for i, _, _ in every] == list(range(60))
    assert all(i == drawn for i, _, drawn in every)


@pytest.mark.parametrize("name", ["vfr_mp4", "vfr_mkv"])
def test_vfr_times_come_from_pts(media, name):
    path = media[name]
    every = chosen(path, fps=1000.0)  # stride 1: every frame, in decode order
    assert [i for i, _, _ in every] == list(range(len(VFR_TIMES)))
    assert [t for _, t, _ in every] == pytest.approx(VFR_TIMES, abs=1e-3)
    assert all(i == drawn for i, _, drawn in every)
    # Stride 2 keeps frames 0, 2, 4, … with their own (irregular) times.
    halves = chosen(path, fps=probe(path).fps / 2)
    assert [i for i, _, _ in halves] == list(range(0, len(VFR_TIMES), 2))
    assert [t for _, t, _ in halves] == pytest.approx(VFR_TIMES[::2], abs=1e-3)


def test_max_frames_keeps_an_even_subset(media):
    everything = [i for i, _, _ in chosen(media["long"], fps=1.0)]
    assert everything == list(range(0, 200, 10))
    assert [i for i, _, _ in chosen(media["long"], fps=1.0, max_frames=5)] == [0, 40, 90, 140, 190]
    assert [i for i, _, _ in chosen(media["long"], fps=1.0, max_frames=1)] == [0]
    assert [i for i, _, _ in chosen(media["long"], fps=1.0, max_frames=50)] == everything


@pytest.mark.parametrize("seek", [None, True, False])
def test_start_end_restricts_to_a_time_range(media, seek):
    full = chosen(media["long"], fps=1.0)
    part = chosen(media["long"], fps=1.0, start=4.5, end=9.0, seek=seek)
    assert part == [f for f in full if 4.5 <= f[1] < 9.0]
    assert [i for i, _, _ in part] == [50, 60, 70, 80]
    # A range with max_frames: the subset is taken among the slots inside the range.
    trimmed = chosen(media["long"], fps=1.0, start=4.5, end=15.0, max_frames=3, seek=seek)
    assert [i for i, _, _ in trimmed] == [50, 90, 140]  # slots 5…14: positions 0, 4, 9


def test_start_seeks_instead_of_decoding_from_the_beginning(media, decode_counter):
    frames = chosen(media["long"], fps=1.0, start=15.0)
    assert [i for i, _, _ in frames] == [150, 160, 170, 180, 190]
    # From the keyframe at 15 s, not all 200 (plus the first frames, decoded to check the clock).
    assert decode_counter["frames"] <= 60 + video._CLOCK_FRAMES


# --- orientation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rotation", "hflip", "side", "corner"),
    [
        (0, False, "top", "tl"),
        (90, False, "left", "bl"),  # 90° counter-clockwise
        (-90, False, "right", "tr"),
        (180, False, "bottom", "br"),
        (0, True, "top", "tr"),  # mirrored
    ],
)
def test_rotation_metadata_is_applied(tmp_path, rotation, hflip, side, corner):
    path = make_video(tmp_path / "rot.mp4", seconds=1, width=64, height=48, rotation=rotation, hflip=hflip)
    info = probe(path)
    quarter = rotation % 180 == 90
    assert (info.width, info.height) == ((48, 64) if quarter else (64, 48))
    assert info.rotation == rotation % 360
    frame = next(sample(path))
    assert frame.image.shape == ((64, 48, 3) if quarter else (48, 64, 3))
    assert marker_side(frame.image) == side
    assert green_corner(frame.image) == corner
    # The resized path rotates too (the crop keeps the red band's edge).
    small = next(sample(path, size=32))
    assert small.image.shape == (32, 32, 3)
    assert marker_side(small.image) == side


# --- sequential and seeking paths ------------------------------------------------------------


@pytest.mark.parametrize("name", ["gop_mkv", "mpeg4"])
@pytest.mark.parametrize("fps", [10 / 7, 10 / 9, 0.5, 0.4])
def test_seek_path_chooses_the_same_frames(media, name, fps):
    sequential = list(sample(media[name], fps=fps, seek=False))
    seeking = list(sample(media[name], fps=fps, seek=True))
    assert [(f.index, f.time) for f in seeking] == [(f.index, f.time) for f in sequential]
    assert [read_index(f.image) for f in seeking] == [f.index for f in sequential]
    for a, b in zip(sequential, seeking):
        assert np.array_equal(a.image, b.image), f"frame {a.index} differs between paths"


def test_seek_path_on_mp4_with_b_frames(media):
    for fps in (10 / 9, 10 / 11, 0.25):
        assert chosen(media["long"], fps=fps, seek=True) == chosen(media["long"], fps=fps, seek=False)


def test_auto_mode_seeks_only_over_long_gaps(media, decode_counter):
    # Keyframe every 1 s; one chosen frame per 5 s is a long gap: auto seeks.
    frames = chosen(media["long"], fps=0.2)
    assert [i for i, _, _ in frames] == [0, 50, 100, 150]
    assert decode_counter["frames"] < 100
    # One per second is not: auto reads on without seeking, as seek=False does.
    decode_counter["frames"] = 0
    chosen(media["long"], fps=1.0)
    auto = decode_counter["frames"]
    decode_counter["frames"] = 0
    chosen(media["long"], fps=1.0, seek=False)
    assert auto == decode_counter["frames"]  # the same pass (GOP tails left out, so fewer than all 200)


@pytest.mark.parametrize(
    ("name", "usable", "constant"),
    [
        ("long", True, True),
        ("gop_mkv", True, True),
        ("vfr_mp4", True, False),
        ("vfr_mkv", True, False),
        ("x264_avi", False, False),
    ],
)
def test_clock_check(media, name, usable, constant):
    """Auto mode seeks only where nominal indices (time × fps) equal decode positions."""
    with video._Source(media[name]) as src:
        assert src.clock() == (usable, constant)


def test_avi_with_b_frames_uses_the_nominal_clock(media):
    """H.264 B-frames in AVI carry decode-order pts: times come from index / fps instead."""
    sequential = chosen(media["x264_avi"], fps=10 / 3)
    assert [(i, drawn) for i, _, drawn in sequential] == [(i, i) for i in range(0, 60, 3)]
    assert [t for _, t, _ in sequential] == pytest.approx([i / 10 for i in range(0, 60, 3)])
    assert chosen(media["x264_avi"], fps=10 / 3, seek=True) == sequential
    assert chosen(media["x264_avi"], fps=10 / 3, start=2.5) == [f for f in sequential if f[1] >= 2.5]


def test_avi_with_b_frames_at_a_long_stride_fails_the_in_pass_clock_check(media, caplog):
    """Stride 10: the clock is checked on the pass's own first frames; AVI's decode-order pts
    fail it, and the pass starts again on the nominal clock, giving nothing twice."""
    with caplog.at_level("DEBUG", logger="llamavid_cli.video"):
        frames = chosen(media["x264_avi"], fps=1.0)
    assert any("decoding every frame instead" in r.getMessage() for r in caplog.records)
    assert [(i, drawn) for i, _, drawn in frames] == [(i, i) for i in range(0, 60, 10)]
    assert [t for _, t, _ in frames] == pytest.approx([i / 10 for i in range(0, 60, 10)])
    # every slot filled before the check's 24 frames: checked separately, times still nominal
    assert chosen(media["x264_avi"], fps=1.0, max_frames=1) == frames[:1]
    assert chosen(media["x264_avi"], fps=10 / 9, max_frames=2) == [
        f for f in chosen(media["x264_avi"], fps=10 / 9, seek=False) if f[0] in (0, 54)
    ]


def test_a_stream_shorter_than_the_clock_check(tmp_path):
    path = make_video(tmp_path / "short.mp4", seconds=1.2, fps=10, width=160, height=120)
    assert [(i, drawn) for i, _, drawn in chosen(path, fps=1.25)] == [(0, 0), (8, 8)]


def test_seek_that_lands_late_backs_off(media, monkeypatch):
    """If a demuxer seek lands after the wanted frame, decoding restarts further back."""
    original = video._Source.seek_to
    calls = []

    def late_seek(self, seconds):
        calls.append(seconds)
        original(self, seconds + (1.5 if len(calls) == 1 else 0.0))  # the first jump lands 1.5 s late

    monkeypatch.setattr(video._Source, "seek_to", late_seek)
    frames = chosen(media["long"], fps=0.25, seek=True)
    assert [(i, drawn) for i, _, drawn in frames] == [(i, i) for i in range(0, 200, 40)]
    assert [t for _, t, _ in frames] == pytest.approx([i / 10 for i in range(0, 200, 40)])
    assert calls[1] < calls[0]  # the late seek was retried from further back


# --- damaged and unusable files --------------------------------------------------------------


def test_truncated_matroska_gives_early_frames_and_one_warning(tmp_path):
    path = truncate(make_video(tmp_path / "t.mkv", seconds=6, fps=10, gop=10, width=160, height=120), 0.5)
    warnings: list[str] = []
    frames = chosen(path, fps=1.0, on_warning=warnings.append)
    assert 1 <= len(frames) < 6
    assert all(i == drawn for i, _, drawn in frames)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(path) in warnings[0] and "re-download" in warnings[0]


def test_truncated_faststart_mp4_gives_early_frames_and_one_warning(tmp_path):
    path = make_video(
        tmp_path / "t.mp4",
        seconds=6,
        fps=10,
        gop=10,
        width=160,
        height=120,
        container_options={"movflags": "faststart"},
    )
    truncate(path, 0.5)
    warnings: list[str] = []
    frames = chosen(path, fps=1.0, on_warning=warnings.append)
    assert 1 <= len(frames) < 6
    assert len(warnings) == 1 and "\n" not in warnings[0]


def test_truncated_mp4_without_index_says_incomplete(tmp_path):
    path = truncate(make_video(tmp_path / "t.mp4", seconds=2), 0.5)  # moov is at the end
    with pytest.raises(VideoError, match="incomplete"):
        probe(path)


def _bad_inputs(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    return {
        "missing": (tmp_path / "nope.mp4", "does not exist"),
        "directory": (tmp_path, "is a directory"),
        "text": (text, "not a video"),
        "audio": (make_audio(tmp_path / "sound.m4a"), "no video stream"),
        "empty": (empty, "empty"),
        "undecodable": (make_undecodable(tmp_path / "garbage.mkv"), "could be decoded"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "text", "audio", "empty", "undecodable"])
def test_bad_inputs_fail_with_one_line(tmp_path, case):
    path, words = _bad_inputs(tmp_path)[case]
    for attempt in (lambda: probe(path), lambda: list(sample(path))):
        with pytest.raises(VideoError) as err:
            attempt()
        message = str(err.value)
        assert words in message
        assert "\n" not in message and str(path) in message
        assert ";" in message  # what went wrong; what to do


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fps": 0},
        {"fps": -1.0},
        {"fps": math.nan},
        {"max_frames": 0},
        {"start": -1.0},
        {"start": 3.0, "end": 2.0},
        {"size": 0},
        {"start": 60.0},  # past the end of a 6 s clip
    ],
)
def test_bad_options_are_usage_errors(media, kwargs):
    with pytest.raises(UsageError) as err:
        list(sample(media["cfr"], **kwargs))
    assert "\n" not in str(err.value)


# --- streaming -------------------------------------------------------------------------------


def test_iterator_is_lazy(media, decode_counter):
    frames = list(itertools.islice(sample(media["long"], fps=1.0, seek=False), 2))
    assert [f.index for f in frames] == [0, 10]
    assert decode_counter["frames"] < 40 + video._CLOCK_FRAMES  # not the 200 frames of the clip


def test_frames_are_not_held(media):
    """A consumer that drops each frame leaves at most a couple alive (weak references)."""
    alive_max = 0
    refs = []
    for frame in sample(media["long"], fps=10.0):  # every frame chosen
        refs.append(weakref.ref(frame.image))
        del frame
        alive_max = max(alive_max, sum(r() is not None for r in refs))
    assert len(refs) == 200
    assert alive_max <= 2


# --- sizes, subtitles, images -------------------------------------------------------------


@pytest.mark.parametrize("rotation", [0, 90])
def test_size_matches_the_reference_resize(tmp_path, rotation):
    """The FFmpeg resize of decoded frames vs PIL's on the same frames, rotated or not."""
    path = make_video(
        tmp_path / "photo.mp4", seconds=1, fps=5, width=320, height=240, pattern_kind="photo", rotation=rotation
    )
    full = list(sample(path, fps=5.0))
    small = list(sample(path, fps=5.0, size=224))
    assert len(full) == len(small) == 5
    for a, b in zip(full, small):
        diff = np.abs(resize_and_crop(a.image, 224).astype(int) - b.image.astype(int))
        assert diff.max() <= 2 and (diff == 2).sum() <= 50, f"max {diff.max()}, {(diff == 2).sum()} at 2"
        if rotation == 0:
            assert read_index(b.image) == a.index


def test_probe_reports_the_stream(media):
    info = probe(media["cfr"])
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.rotation) == (64, 48, 0)
    assert info.fps == 10.0 and info.duration == pytest.approx(6.0) and info.frame_count == 60
    assert info.codec == "h264" and "mp4" in info.container
    assert not info.is_image and info.subtitle_streams == 0
    assert info.keyframe_interval == pytest.approx(1.0)


def test_probe_counts_embedded_subtitles(media):
    info = probe(media["subs"])
    assert info.subtitle_streams == 1
    assert [read_index(f.image) for f in sample(media["subs"])] == [0, 10]
    # The SubRip track written by tests/media.py reads back with its cue times.
    with av.open(str(media["subs"])) as container:
        track = container.streams.subtitles[0]
        cues = [
            (float(packet.pts * packet.time_base), sub.dialogue.decode())
            for packet in container.demux(track)
            for sub in packet.decode()
        ]
    assert cues == [(0.5, "hello"), (1.6, "bye")]


def test_still_images(tmp_path):
    png = make_image(tmp_path / "still.png", 64, 48)
    rotated = make_image(tmp_path / "phone.jpg", 64, 48, orientation=6)  # shown turned 90° clockwise
    assert video.is_image(png) and video.is_image(rotated)
    assert not video.is_image(make_video(tmp_path / "clip.mp4", seconds=1))

    assert marker_side(video.load_image(png)) == "top"
    upright = video.load_image(rotated)
    assert upright.shape == (64, 48, 3) and marker_side(upright) == "right"

    info = probe(rotated)
    assert info.is_image and (info.width, info.height) == (48, 64) and info.frame_count == 1
    frames = list(sample(png))
    assert len(frames) == 1 and isinstance(frames[0], Frame) and frames[0].time == 0.0
    assert frames[0].image.shape == (48, 64, 3)
