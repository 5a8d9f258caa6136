"""Leaving unwanted non-reference frames undecoded picks exactly the frames a full decode picks.

The oracle decodes every frame with PyAV and applies method.md §4 itself: frame i (in the
order the decoder outputs them) is chosen when i is a multiple of the stride, its time is
its pts in seconds from the stream's start. `iter_frames` must give the same indices, the
same times and the same pixels (hashed) while decoding fewer frames where the codec has
non-reference frames.
"""

from __future__ import annotations

import hashlib
import logging
from fractions import Fraction

import av
import pytest

from llamavid_cli import video
from llamavid_cli.video import FrameScaler, Sampling, frame_stride, iter_frames
from media import cut_at_keyframe, make_video

X264_MEDIUM = {"preset": "medium", "crf": "20"}  # B-frames with b-pyramid: a third or more non-reference
X264_ULTRAFAST = {"preset": "ultrafast", "crf": "20"}  # no B-frames
X265 = {"preset": "fast", "x265-params": "log-level=error"}
VP9 = {"deadline": "realtime", "cpu-used": "8"}
VFR_TIMES = [round(0.04 * i + (0.5 if i > 30 else 0.0) + (0.3 if i > 60 else 0.0), 3) for i in range(90)]


def _codec_available(name: str) -> bool:
    return name in av.codecs_available


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    common = {"width": 320, "height": 240, "seconds": 4, "fps": 25}
    made = {
        "x264_medium": make_video(root / "medium.mp4", encoder_options=X264_MEDIUM, **common),
        "x264_medium_mkv": make_video(root / "medium.mkv", encoder_options=X264_MEDIUM, **common),
        "x264_ultrafast": make_video(root / "ultrafast.mp4", encoder_options=X264_ULTRAFAST, **common),
        "vp9": make_video(root / "vp9.webm", codec="libvpx-vp9", encoder_options=VP9, **common),
        "vfr": make_video(root / "vfr.mp4", width=320, height=240, times=VFR_TIMES, encoder_options=X264_MEDIUM),
        "rotated": make_video(root / "rotated.mp4", rotation=90, encoder_options=X264_MEDIUM, **common),
        "ntsc": make_video(
            root / "ntsc.mp4", width=320, height=240, seconds=4, fps=Fraction(30000, 1001), encoder_options=X264_MEDIUM
        ),
    }
    open_gop = {**X264_MEDIUM, "g": "20", "keyint_min": "20", "sc_threshold": "0", "x264-params": "open-gop=1"}
    made["open_gop"] = make_video(root / "open_gop.mkv", encoder_options=open_gop, **common)
    made["starts_with_b"] = cut_at_keyframe(made["open_gop"], root / "starts_with_b.mkv", keyframe=1)
    if _codec_available("libx265"):
        made["x265"] = make_video(root / "x265.mp4", codec="libx265", encoder_options=X265, **common)
        made["x265_mkv"] = make_video(root / "x265.mkv", codec="libx265", encoder_options=X265, **common)
    return made


GOP_CLIPS = ["x264_medium", "x264_ultrafast", "x264_medium_ts", "vp9", "x265", "x265_open"]


@pytest.fixture(scope="module")
def gop_clips(tmp_path_factory):
    """A keyframe every 20 frames: H.264 IDR, HEVC IDR (closed GOP) and CRA (open), VP9 key frames."""
    root = tmp_path_factory.mktemp("gop")
    common = {"width": 320, "height": 240, "seconds": 4, "fps": 25, "gop": 20}
    made = {
        "x264_medium": make_video(root / "medium.mp4", encoder_options=X264_MEDIUM, **common),
        "x264_ultrafast": make_video(root / "ultrafast.mp4", encoder_options=X264_ULTRAFAST, **common),
        "x264_medium_ts": make_video(
            root / "medium.ts", encoder_options=X264_MEDIUM, **common
        ),  # Annex B, SPS/PPS in band
        "vp9": make_video(root / "vp9.webm", codec="libvpx-vp9", encoder_options=VP9, **common),
    }
    if _codec_available("libx265"):
        closed = {**X265, "x265-params": "log-level=error:open-gop=0"}
        made["x265"] = make_video(root / "x265.mp4", codec="libx265", encoder_options=closed, **common)
        # x265's default open GOPs: CRA keyframes with RASL pictures that refer to the GOP before
        made["x265_open"] = make_video(root / "x265_open.mkv", codec="libx265", encoder_options=X265, **common)
    return made


def _hash(image) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def full_decode(path, fps: float) -> list[tuple[int, float, str]]:
    """(index, time, pixel hash) of the frames method.md §4 chooses, from every frame decoded."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stride = frame_stride(float(stream.average_rate), fps)
        start, tick = stream.start_time or 0, float(stream.time_base)
        to_rgb = FrameScaler()
        return [
            (i, (frame.pts - start) * tick, _hash(to_rgb(frame)))
            for i, frame in enumerate(container.decode(stream))
            if i % stride == 0
        ]


def sampled(path, **kwargs) -> list[tuple[int, float, str]]:
    seek = kwargs.pop("seek", None)
    return [(f.index, f.time, _hash(f.image)) for f in iter_frames(path, Sampling(**kwargs), seek=seek)]


CLIPS = [
    "x264_medium",
    "x264_medium_mkv",
    "x264_ultrafast",
    "vp9",
    "vfr",
    "rotated",
    "ntsc",
    "open_gop",
    "starts_with_b",
    "x265",
    "x265_mkv",
]


@pytest.mark.parametrize("name", CLIPS)
@pytest.mark.parametrize("fps", [1.0, 25 / 3, 25 / 7])
def test_chosen_frames_equal_a_full_decode(clips, name, fps):
    if name not in clips:
        pytest.skip("PyAV's FFmpeg has no libx265")
    assert sampled(clips[name], fps=fps) == full_decode(clips[name], fps)


@pytest.mark.parametrize("name", ["x264_medium", "x264_medium_mkv", "x265", "x265_mkv", "vfr", "rotated", "ntsc"])
def test_non_reference_frames_are_left_undecoded(clips, name, decode_counter):
    if name not in clips:
        pytest.skip("PyAV's FFmpeg has no libx265")
    with av.open(str(clips[name])) as container:
        total = sum(1 for _ in container.decode(video=0))
    sampled(clips[name], fps=1.0)
    assert decode_counter["frames"] < 0.8 * total  # the clock check's frames included: they are the pass's own


def test_a_stream_without_non_reference_frames_or_resets_decodes_each_frame_once(clips, decode_counter):
    """x264 ultrafast with one IDR: every frame up to the last chosen one, once (the clock
    check is done on the pass's own first frames, not on a separate decode)."""
    chosen = sampled(clips["x264_ultrafast"], fps=1.0)
    assert decode_counter["frames"] == chosen[-1][0] + 1


@pytest.mark.parametrize("name", GOP_CLIPS)
@pytest.mark.parametrize("fps", [1.0, 25 / 3, 25 / 7, 2.5])
def test_gop_tails_left_out_choose_the_full_decodes_frames(gop_clips, name, fps):
    """Short GOPs: the references after a GOP's last chosen frame are not decoded either."""
    if name not in gop_clips:
        pytest.skip("PyAV's FFmpeg has no libx265")
    assert sampled(gop_clips[name], fps=fps) == full_decode(gop_clips[name], fps)


@pytest.mark.parametrize("name", GOP_CLIPS)
def test_a_gop_tail_left_undecoded_is_not_taken_for_a_truncated_file(gop_clips, name):
    """The last GOP's tail is never decoded at 1 fps; the file is whole all the same."""
    if name not in gop_clips:
        pytest.skip("PyAV's FFmpeg has no libx265")
    warnings: list[str] = []
    list(iter_frames(gop_clips[name], Sampling(fps=1.0), size=16, on_warning=warnings.append))
    assert warnings == []


@pytest.mark.parametrize("name", GOP_CLIPS)
def test_gop_tails_are_left_undecoded(gop_clips, name, decode_counter):
    if name not in gop_clips:
        pytest.skip("PyAV's FFmpeg has no libx265")
    with av.open(str(gop_clips[name])) as container:
        total = sum(1 for _ in container.decode(video=0))
    # stride 10: two chosen frames per GOP of 20, at its start and middle; the first 24 frames
    # are all decoded (the clock check)
    sampled(gop_clips[name], fps=2.5, seek=False)
    limit = 0.6 if name in ("x264_medium", "x264_medium_ts", "x265", "x265_open") else 0.7
    assert decode_counter["frames"] < limit * total


@pytest.mark.parametrize("name", GOP_CLIPS)
def test_gop_tails_with_start_end_max_frames_and_seeking(gop_clips, name):
    if name not in gop_clips:
        pytest.skip("PyAV's FFmpeg has no libx265")
    path = gop_clips[name]
    full = full_decode(path, 2.5)
    assert sampled(path, fps=2.5, start=1.1, seek=False) == [f for f in full if f[1] >= 1.1]
    assert sampled(path, fps=2.5, end=2.9) == [f for f in full if f[1] < 2.9]
    assert sampled(path, fps=2.5, max_frames=4) == [full[j] for j in video.even_subset(len(full), 4)]
    for kwargs in ({"fps": 0.5}, {"fps": 25 / 7, "start": 1.3, "end": 3.5}):
        assert sampled(path, seek=True, **kwargs) == sampled(path, seek=False, **kwargs), kwargs


@pytest.mark.parametrize("name", ["x264_medium", "x265", "open_gop"])
def test_seeking_and_skipping_together_choose_the_same_frames(clips, name):
    if name not in clips:
        pytest.skip("PyAV's FFmpeg has no libx265")
    for kwargs in ({"fps": 25 / 9}, {"fps": 0.5}, {"fps": 25 / 7, "start": 1.3, "end": 3.5}, {"max_frames": 3}):
        assert sampled(clips[name], seek=True, **kwargs) == sampled(clips[name], seek=False, **kwargs), kwargs


def test_start_and_max_frames_choose_the_full_decodes_frames(clips):
    path = clips["x264_medium"]
    full = full_decode(path, 25 / 3)
    assert sampled(path, fps=25 / 3, start=1.0, seek=False) == [f for f in full if f[1] >= 1.0]
    assert sampled(path, fps=25 / 3, max_frames=4) == [full[j] for j in video.even_subset(len(full), 4)]


def test_the_plan_is_said_in_debug_output(clips, caplog):
    with caplog.at_level(logging.DEBUG, logger="llamavid_cli.video"):
        sampled(clips["x264_medium"], fps=1.0)
        sampled(clips["vp9"], fps=1.0)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "medium.mp4: h264, stride 25: " in m and "decode reference frames and only the chosen" in m for m in lines
    )
    assert any(
        "vp9.webm: vp9, stride 25: " in m and "decode every frame up to each GOP's last chosen" in m for m in lines
    )
    assert any("left undecoded (non-reference, or after a GOP's last chosen frame)" in m for m in lines)


def test_verbose_says_on_stderr_how_each_video_is_read(clips, tiny_video_ckpt, tmp_path):
    """`llamavid --verbose` puts the decode plan on stderr, never on stdout."""
    import subprocess
    import sys

    target = tmp_path / "clip.vidtok"
    args = ["encode", str(clips["x264_medium"]), "-o", str(target), "--model", str(tiny_video_ckpt), "--device", "cpu"]
    quiet = subprocess.run([sys.executable, "-m", "llamavid_cli", *args], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert "decode reference frames" not in quiet.stderr
    loud = subprocess.run(
        [sys.executable, "-m", "llamavid_cli", "--verbose", *args, "--force"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loud.returncode == 0, loud.stderr
    assert "llamavid: " in loud.stderr and "decode reference frames and only the chosen" in loud.stderr
    assert "decode reference" not in loud.stdout
