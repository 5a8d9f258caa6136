"""Video files → the frames LLaMA-VID samples, with their timestamps (method.md §4).

One job: open a file with PyAV, decide which frames the released models would have seen,
and stream them out as display-oriented RGB arrays, a few at a time whatever the length.

Which frames (the rule the released models were trained with):
  stride = round(average_fps / fps) with Python's round (half to even: 29.97 → 30,
  12.5 → 12), at least 1. The chosen frames are 0, stride, 2·stride, … counted in the order
  the decoder outputs them, over the whole stream, no cap. Frame k·stride is "slot k".

  A frame's index is its position in that order when the stream is decoded from its start.
  After a seek (see below) the position is unknown, and a frame's index is its nominal one,
  round(time · average_fps); for constant-frame-rate video the two are equal, so every path
  chooses the same frames. In both cases a slot goes to the first frame whose index is at or
  past k·stride, so a damaged frame's slot passes to the next good one.

  A frame's time is its own pts in seconds from the stream's start (pts·time_base), which
  for constant-rate video equals index / average_fps and stays right for variable rates.
  Where the pts do not increase in display order (H.264 with B-frames in AVI), the time is
  index / average_fps and the file is never seeked; the first 24 frames tell
  (`_Source.clock`). When the pass starts at the first frame with a stride of 8 or more,
  they are the pass's own (decoded once, the chosen ones among them held back until the
  verdict; a failed check restarts the pass); otherwise they are decoded once up front.

Options (a `Sampling`, validated when it is made; `count_frames` predicts the result):
  start / end      keep slots whose frames lie in [start, end) seconds; decoding seeks to
                   `start` instead of reading the file up to it.
  max_frames       when more slots would be chosen, keep an evenly spaced subset of them:
                   of n slots, positions floor(j·(n−1)/(max_frames−1)) for j = 0…max_frames−1,
                   so the first and last are kept (n comes from the stream's frame count,
                   or duration × average fps when the container does not store it).
  seek             how to skip long gaps between slots. Sequential decoding reads every
                   frame; the seek path jumps to the keyframe before each far-away slot and
                   decodes forward to it. None (default) decides per gap: it jumps when the
                   gap is over AUTO_SEEK_GOPS keyframe intervals on a constant-rate stream
                   whose keyframe interval the container's index reveals; True jumps over
                   every gap; False never seeks, not even to `start`. A seek that lands
                   after the wanted frame (MPEG-TS, FLV) is retried further back, then
                   abandoned for sequential decoding from the start.

How much is decoded (one plan, picked per file and sampling; logged at debug level, which
--verbose shows). Frames that are not chosen are never converted to RGB. Of those, the ones
no other frame references (H.264 slices with nal_ref_idc 0; HEVC sub-layer non-reference
pictures of the top temporal layer: most B-frames) are not even decoded: their packets are
not sent to the decoder, which is exact by construction and works under frame threading
(a per-packet `skip_frame` would not: frame threads hold several packets at once). Which
packets are chosen is known before decoding: from the start, a packet's index is the rank
of its pts among all packets' (a reorder window puts B-frames in presentation order); after
a seek, on a constant-rate stream, its nominal round(time · fps). That only holds while the
decoder outputs exactly the frames it is sent, in that order, so `_Skim` checks every frame
against it; missing or repeated timestamps, decode timestamps out of order, a decode error,
a damaged frame, a slot whose frame was left out, or a decoder that holds frames back (a
stream cut so that it starts with B-frames) restart the pass decoding every frame, from the
start or the same seek point: never a different frame.

Reference frames are left out too where nothing wanted can need them: an unwanted one is
held back until a wanted frame follows it in decode order (then it is decoded) or a reset
does: an H.264 IDR, an HEVC IDR or BLA picture, a VP9 key frame, after which no frame refers
to anything before it (the same fact that makes seeking to a keyframe exact). So the rest of
a GOP after its last chosen frame is never decoded: with a keyframe every 2 s at 1 fps, about
half of all reference frames. Packets with parameter sets or SEI messages other than timing
ones are always decoded. An HEVC CRA (open GOP) counts as a reset when none of its RASL
pictures (the leading ones that may refer back, and that nothing else refers to) is wanted:
they are left out with the held references. H.264 open GOPs (recovery points) are no resets. Other codecs (AV1, MPEG-4, all-intra) and streams without usable
timestamps decode every frame; I/P-only H.264 and VP9 (no disposable frames) lose only the
GOP tails. Seeking over long gaps and skipping combine: the seek lands on a keyframe and the
decode forward from it skips too.

A scene-cut detector run in the same pass (`on_decoded`, shots.py) sees the frames decoded:
the chosen ones and the references they need, at most 2 frames apart with x264's default 3
B-frames and b-pyramid (4 without), so a cut is placed within that many frames of where a full
decode would put it. A GOP tail is decoded for it only where a new shot may start: when one of
its packets is much larger than the ones of its kind before it (the first frame of a shot
cannot be predicted from the last shot, so encoders code it intra, as an I- or a large
P-frame, and the B-frames beside it lose one of their two predictions), or when the reset that
ends it comes before the encoder's clock would put one (x264's scenecut starts a shot with an
IDR; the clock is the longest distance between resets, once it has been seen twice). Other
tails are left out, and the frame after one comes with a `Gap`: it is no neighbour of the last
one seen, and `Gap.frames()` decodes the tail after all, with a second decoder from the GOP's
keyframe (its packets are kept while an observer watches), for a detector that sees the colours
change across it (where every frame costs about the same bits, under heavy grain, or a cut goes
to a picture cheaper than the last shot's). What this misses: a cut inside a tail between two
shots of the same colours whose packets do not stand out, and a cut exactly on a keyframe the
encoder's clock put there.

Undecodable packets and damaged frames are skipped and counted; one warning at the end says
what was lost. Only a file from which no frame at all can be decoded is an error.

Still images (anything PIL opens as a single frame) are read with PIL, EXIF orientation
applied; `iter_frames` yields one frame for them. Files are recognised by opening them,
never by their names.
"""

from __future__ import annotations

import bisect
import collections
import functools
import heapq
import logging
import math
import numbers
import statistics
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType
from PIL import Image, ImageOps

from . import defaults
from .errors import UsageError, VideoError
from .pixels import CropResizer, resize_and_crop

WarningHook = Callable[[str], None]


@dataclass(frozen=True)
class Gap:
    """Reference frames left undecoded (a GOP tail, see `_Skim`) or skipped by a seek, just
    before the frame an `on_decoded` hook is given: that frame is no neighbour of the last one.
    `frames()` decodes a tail now, with a second decoder from the GOP's keyframe, and returns
    its frames with their times, in order (empty after a seek, or where it cannot be done)."""

    fill: Callable[[], list[tuple[av.VideoFrame, float]]] | None = None

    def frames(self) -> list[tuple[av.VideoFrame, float]]:
        return self.fill() if self.fill is not None else []


# Sees every frame the decoder outputs (chosen or not) with its time, and the `Gap` before it
# (None: it follows the last one given): shot-cut detection in the same pass (shots.py). Times
# only increase: a stretch decoded again after a restart is not re-sent.
DecodedHook = Callable[[av.VideoFrame, float, "Gap | None"], None]

_log = logging.getLogger(__name__)

# Auto mode seeks over a gap longer than this many keyframe intervals (decoding forward from
# the keyframe before a slot costs at most one interval, so 2 leaves a clear margin).
AUTO_SEEK_GOPS = 2

# Index entries looked at for the keyframe interval; frames decoded to judge the timestamps.
_INDEX_SCAN = 4096
_CLOCK_FRAMES = 24
# The clock check runs inside the reading pass when at most _CLOCK_FRAMES / this many chosen
# frames must wait for its verdict (see `_stream_frames`).
_PROBATION_STRIDE = 8

# Leave unwanted non-reference frames undecoded (see the module docstring). Always on; only
# bench/encode.py turns it off, to time the decode-everything path against it.
_SKIP_NON_REFERENCE = True


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a file without decoding more than its first frame."""

    path: Path
    container: str  # FFmpeg demuxer name ("mov,mp4,m4a,3gp,3g2,mj2"), or PIL's for images ("jpeg")
    codec: str  # decoder name ("h264"), or PIL's format for images
    width: int  # as displayed, after rotation
    height: int
    rotation: int  # degrees counter-clockwise turned for display: 0, 90, 180 or 270 (mirroring aside)
    fps: float  # average frame rate (0.0 for images)
    duration: float  # seconds (0.0 for images)
    frame_count: int  # stored count, else duration × fps (an estimate)
    is_image: bool
    subtitle_streams: int  # embedded subtitle tracks
    keyframe_interval: float | None = None  # seconds, when the container's index tells


@dataclass(frozen=True, eq=False)
class Frame:
    """One chosen frame: its index in the stream, its time in seconds and its RGB pixels."""

    index: int
    time: float
    image: np.ndarray  # uint8 [H, W, 3], display orientation


@dataclass(frozen=True)
class Sampling:
    """Which frames to take: method.md §4 by default (1 fps, whole stream, no cap).

    Validated when made, so a bad value from a flag or from config.toml fails in one place,
    before any work, with the flag's name."""

    fps: float = defaults.FPS
    max_frames: int | None = None
    start: float | None = None  # seconds
    end: float | None = None

    def __post_init__(self) -> None:
        fps, start, end = self.fps, self.start, self.end
        if not (_is_number(fps) and math.isfinite(fps) and fps > 0):
            raise UsageError(f"--fps must be a number greater than 0, got {_shown(fps)}")
        if self.max_frames is not None and not (_is_whole(self.max_frames) and self.max_frames >= 1):
            raise UsageError(f"--max-frames must be a whole number of at least 1, got {_shown(self.max_frames)}")
        if start is not None and not (_is_number(start) and math.isfinite(start) and start >= 0):
            raise UsageError(f"--start must be a time of 0 s or later, got {_shown(start)}")
        if end is not None and not (_is_number(end) and math.isfinite(end)):
            raise UsageError(f"--end must be a time in seconds, got {_shown(end)}")
        if end is not None and end <= (start or 0.0):
            if start is None:
                raise UsageError(f"--end ({end:g} s) must be later than the start of the video")
            raise UsageError(f"--start ({start:g} s) must be before --end ({end:g} s)")
        # one spelling per value, so equal samplings give equal cache keys (1 and 1.0)
        object.__setattr__(self, "fps", float(fps))
        for name in ("start", "end"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))

    def as_dict(self) -> dict:
        return {"fps": self.fps, "max_frames": self.max_frames, "start": self.start, "end": self.end}


def frame_stride(average_fps: float, fps: float = defaults.FPS) -> int:
    """Frames between two chosen frames: round(average_fps / fps), at least 1 (method.md §4)."""
    return max(1, round(float(average_fps) / float(fps)))


def even_subset(n: int, k: int) -> list[int]:
    """Positions of k evenly spaced items among n, first and last kept (all n when k ≥ n)."""
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return [j * (n - 1) // (k - 1) for j in range(k)]


# --------------------------------------------------------------------------------------------
# Opening and probing


def is_image(path: str | Path) -> bool:
    """True when PIL can read the file as a single still frame (animations count as video)."""
    try:
        with Image.open(path) as img:
            if getattr(img, "n_frames", 1) != 1:
                return False
            img.load()
        return True
    except Exception:  # noqa: BLE001  (PIL raises many types for files that are not images)
        return False


def is_media(path: str | Path) -> bool:
    """True for a still image or a file FFmpeg opens with a video stream (nothing decoded)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
    except OSError:
        return False
    if is_image(path):
        return True
    try:
        with av.open(str(path), mode="r") as container:
            return any(not s.disposition & av.stream.Disposition.attached_pic for s in container.streams.video)
    except (av.error.FFmpegError, OSError):
        return False


def load_image(path: str | Path) -> np.ndarray:
    """A still image as uint8 [H, W, 3] RGB, EXIF orientation applied."""
    path = _check_path(path)
    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except Exception as err:
        raise VideoError(f"{path} is not an image PIL can read ({err}); convert it to PNG or JPEG") from err


def probe(path: str | Path) -> VideoInfo:
    """Describe a video or image file; raise VideoError with one line if it cannot be used.

    A command asks several times about the same file (checks, frame estimate, metadata), so
    answers are remembered for as long as the file's size and modification time stay put."""
    path = _check_path(path)
    stat = path.stat()
    return _probe(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _probe(path: Path, size: int, mtime_ns: int) -> VideoInfo:
    if is_image(path):
        with Image.open(path) as img:
            width, height = ImageOps.exif_transpose(img).size
            fmt = (img.format or "image").lower()
        return VideoInfo(path, fmt, fmt, width, height, 0, 0.0, 0.0, 1, True, 0)

    with _Source(path) as src:
        first = src.first_frame()
        transposed = _orientation(first)[1]
        width, height = (first.height, first.width) if transposed else (first.width, first.height)
        return VideoInfo(
            path=path,
            container=src.container.format.name,
            codec=src.stream.codec_context.name,
            width=width,
            height=height,
            rotation=_rotation_degrees(first),
            fps=src.fps,
            duration=src.duration,
            frame_count=src.frame_count,
            is_image=False,
            subtitle_streams=len(src.container.streams.subtitles),
            keyframe_interval=src.keyframe_interval(),
        )


# --------------------------------------------------------------------------------------------
# Streaming the chosen frames


def iter_frames(
    path: str | Path,
    sampling: Sampling | None = None,
    *,
    size: int | None = None,
    seek: bool | None = None,
    on_warning: WarningHook | None = None,
    on_decoded: DecodedHook | None = None,
) -> Iterator[Frame]:
    """Yield the chosen frames of a video in order (see the module docstring for the rule).

    sampling: fps, time range and cap (default: 1 fps over the whole stream, as every
        released model); `count_frames` says beforehand how many frames this yields.
    size: when given, each image is resized so its shorter side is `size` and centre-cropped
        to size×size, byte for byte as `pixels.resize_and_crop` (`FrameScaler`); otherwise
        the full frame is returned.
    on_warning: called once, at the end, with one line if packets or frames were lost.
    on_decoded: called with every undamaged frame the decoder outputs before the range's end
        (not only the chosen ones), its time and the `Gap` before it, if any (`DecodedHook`),
        before that frame is yielded; not for images.
    """
    sampling = sampling or Sampling()
    _check_options(sampling, size)
    path = _check_path(path)
    if is_image(path):
        image = load_image(path)
        if (sampling.start or 0.0) <= 0.0:
            yield Frame(0, 0.0, resize_and_crop(image, size) if size else image)
        return

    with _Source(path) as src:
        yield from _stream_frames(src, sampling, size, seek, on_warning, on_decoded)


def count_frames(info: VideoInfo, sampling: Sampling | None = None) -> int:
    """How many frames `iter_frames` yields, from the container's metadata (nothing decoded).

    The slot plan is the one `iter_frames` fills, so the two agree wherever the stream's
    frame count and rate are what the container says (constant frame rate, undamaged file).
    A --start past the end is refused here, before any decoding or model loading."""
    sampling = sampling or Sampling()
    if info.is_image:
        return 1 if (sampling.start or 0.0) <= 0.0 else 0
    _check_range(info.path, info.duration, sampling)
    return _plan(info.fps, info.frame_count, sampling).count


class FrameScaler:
    """Decoded frame → display-oriented RGB, optionally resized and centre-cropped.

    The RGB is `frame.to_ndarray(format="rgb24")` put upright per the display matrix. With
    `size` it is then resized and cropped to exactly the bytes `pixels.resize_and_crop`
    (PIL bicubic, method.md §3) gives for that upright frame, by `pixels.CropResizer`, which
    skips the pixels the crop discards (tests/test_pixels.py proves the equality).
    """

    def __init__(self, size: int | None = None):
        self.size = size
        self._resize = CropResizer(size) if size is not None else None
        self._orientation: tuple[tuple[str, ...], bool] | None = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        # Read once per stream, as FFmpeg's autorotate does: touching frame.side_data on every
        # frame makes a reference cycle in PyAV 18 that keeps each decoded picture alive until
        # the cycle collector runs (memory grew with video length).
        if self._orientation is None:
            self._orientation = _orientation(frame)
        upright = _apply(self._orientation[0], frame.to_ndarray(format="rgb24"))  # a view: no copy yet
        if self._resize is None:
            return np.ascontiguousarray(upright)
        return self._resize(upright)


# --------------------------------------------------------------------------------------------
# Internals: the opened file


class _Source:
    """An opened container with its video stream and the numbers sampling needs."""

    def __init__(self, path: Path):
        self.path = path
        self._keyframe_interval: float | None | bool = False  # False: not computed yet
        self._clock: tuple[bool, bool] | None = None
        self._open()

    def _open(self) -> None:
        path = self.path
        self.moved = False  # True once probing has moved the demuxer away from the start
        try:
            self.container = av.open(str(path), mode="r")
        except av.error.FFmpegError as err:
            raise VideoError(_unreadable_message(path)) from err
        except OSError as err:
            raise VideoError(f"cannot open {path} ({err.strerror or err}); check the file and its permissions") from err
        try:
            self._setup()
        except BaseException:
            self.container.close()
            raise

    def _setup(self) -> None:
        container, path = self.container, self.path
        streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["no"]
            raise VideoError(f"{path} has no video stream ({', '.join(kinds)} only); give a file with video")
        self.stream = stream = streams[0]
        if stream.codec_context is None:
            raise VideoError(
                f"{path}: FFmpeg has no decoder for its video codec; re-encode it to H.264 (ffmpeg -i IN OUT.mp4)"
            )
        stream.thread_type = "AUTO"
        for other in container.streams:  # let the demuxer drop other streams' packets early
            if other is not stream:
                other.discard = av.stream.Discard.all

        self.time_base = stream.time_base or Fraction(1, 1000)
        self.start_pts = stream.start_time or 0
        self._seconds_per_tick = float(self.time_base)
        if stream.duration:
            self.duration = float(stream.duration * self.time_base)
        elif container.duration:
            self.duration = container.duration / av.time_base
        else:
            self.duration = 0.0
        rate = stream.average_rate or stream.guessed_rate
        if not rate and stream.frames and self.duration > 0:
            rate = stream.frames / self.duration
        if not rate or float(rate) <= 0:
            raise VideoError(f"{path}: cannot tell the video's frame rate; re-encode it (ffmpeg -i IN OUT.mp4)")
        self.fps = float(rate)
        self.frame_count = stream.frames or round(self.duration * self.fps)

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def time_of(self, frame: av.VideoFrame) -> float | None:
        """Seconds from the stream's start, from the frame's own pts."""
        if frame.pts is None:
            return None
        return (frame.pts - self.start_pts) * self._seconds_per_tick

    def packet_time(self, pts: int) -> float:
        """Seconds from the stream's start for a pts (a packet's or a frame's)."""
        return (pts - self.start_pts) * self._seconds_per_tick

    def rewind(self) -> None:
        """Back to the very first packet, by reopening: after probing seeks, a seek to 0 is not
        enough (MPEG-TS, for one, can land on a later keyframe)."""
        if self.moved:
            self.container.close()
            self._open()

    def seek_to(self, seconds: float) -> None:
        """Position the demuxer on the keyframe at or before `seconds` (stream clock)."""
        offset = self.start_pts + math.floor(max(seconds, 0.0) / self.time_base)
        self.container.seek(offset, backward=True, any_frame=False, stream=self.stream)

    def first_frame(self) -> av.VideoFrame:
        """Decode up to the first frame; VideoError when the stream yields none."""
        damage = _Damage()
        for frame in _decoded(self, damage):
            return frame
        raise VideoError(_no_frame_message(self, damage))

    def keyframe_interval(self) -> float | None:
        """Median seconds between keyframes, from the container's index (None if unknown)."""
        if self._keyframe_interval is False:
            self._keyframe_interval = self._index_keyframe_interval()
        return self._keyframe_interval

    def _index_keyframe_interval(self) -> float | None:
        entries = self.stream.index_entries
        if len(entries) < 2:
            # Matroska reads its cues (the keyframe index) on the first seek.
            self.moved = True
            try:
                self.seek_to(0.0)
            except av.error.FFmpegError:
                return None
            entries = self.stream.index_entries
        stamps = [e.timestamp for e in entries[:_INDEX_SCAN] if e.is_keyframe]
        gaps = [b - a for a, b in zip(stamps, stamps[1:]) if b > a]
        if not gaps:
            return None
        return float(statistics.median(gaps) * self.time_base)

    def clock(self) -> tuple[bool, bool]:
        """(timestamps usable, constant rate), judged from the first frames the decoder outputs.

        Usable: every pts present and increasing in display order. Not so for H.264 with
        B-frames in AVI, whose pts are decode-order guesses; such files use the nominal clock
        index / average_fps and are decoded without seeking. Constant: consecutive frames
        1/average_fps apart, so that after a seek round(time · fps) is the decode position.
        """
        if self._clock is None:
            self.rewind()
            stamps = []
            for frame in _decoded(self, _Damage()):
                stamps.append(frame.pts)
                if len(stamps) >= _CLOCK_FRAMES:
                    break
            self.moved = True
            self.judge_clock(stamps)
        return self._clock

    def judge_clock(self, stamps: list[int | None]) -> tuple[bool, bool]:
        """`clock`'s verdict on the pts of the first frames output (all of them, up to
        `_CLOCK_FRAMES`), remembered for the file; the reading pass calls it on its own."""
        usable = bool(stamps) and None not in stamps and all(b > a for a, b in zip(stamps, stamps[1:]))
        step = 1.0 / (self.fps * self.time_base)  # frame period in pts ticks
        constant = usable and all(abs((b - a) - step) <= max(1.0, 0.01 * step) for a, b in zip(stamps, stamps[1:]))
        self._clock = (usable, constant)
        return self._clock


class _Damage:
    """What decoding lost, reported once at the end."""

    def __init__(self) -> None:
        self.bad_packets = 0
        self.bad_frames = 0
        self.read_error: str | None = None
        self.decoded = 0
        self.last_time: float | None = None

    def message(self, src: _Source, reached_end: bool) -> str | None:
        lost = []
        if self.bad_packets:
            lost.append(f"skipped {self.bad_packets} undecodable packet{'s' * (self.bad_packets != 1)}")
        if self.bad_frames:
            lost.append(f"skipped {self.bad_frames} damaged frame{'s' * (self.bad_frames != 1)}")
        if self.read_error:
            lost.append("reading stopped at a damaged part")
        if reached_end and self.last_time is not None and src.duration > 0:
            # Truncated files end early without any decoder error: compare with the duration
            # the container announced (tolerance: two frames or half a second).
            expected_last = src.duration - 1.0 / src.fps
            if self.last_time < expected_last - max(2.0 / src.fps, 0.5):
                lost.append(f"the video stops at {self.last_time:.1f} s of {src.duration:.1f} s")
        if not lost:
            return None
        return (
            f"{src.path}: {'; '.join(lost)}; the file looks damaged or incomplete: "
            "re-download or re-encode it (ffmpeg -i IN OUT.mp4) to sample all of it"
        )


def _decoded(src: _Source, damage: _Damage, skim: _Skim | None = None) -> Iterator[av.VideoFrame]:
    """Every frame the decoder can produce from the current position, errors skipped.

    With `skim`, only the packets it passes reach the decoder, and a decode error raises
    `_Inexact` (a lost frame would shift the indices it derived from timestamps)."""
    stream = src.stream
    codec = stream.codec_context

    def decode(packet: av.Packet | None) -> list[av.VideoFrame]:
        try:
            return codec.decode(packet)
        except av.error.FFmpegError:
            if skim is not None:
                raise _Inexact("a packet failed to decode") from None
            damage.bad_packets += 1
            return []

    try:
        for packet in src.container.demux(stream):
            if packet.size == 0:  # the demuxer's end marker: drain the decoder
                if skim is not None:
                    for kept in skim.flush():
                        yield from _count(damage, decode(kept))
                yield from _count(damage, decode(None))
                continue
            if skim is None:
                yield from _count(damage, decode(packet))
                continue
            for kept in skim.push(packet):
                yield from _count(damage, decode(kept))
    except av.error.FFmpegError as err:  # the demuxer gave up: flush what the decoder holds
        if skim is not None:
            raise _Inexact(f"reading failed ({err})") from None
        damage.read_error = str(err)
        try:
            frames = codec.decode(None)
        except av.error.FFmpegError:
            frames = []
        yield from _count(damage, frames)


def _count(damage: _Damage, frames: list[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    for frame in frames:
        damage.decoded += 1
        yield frame


# --------------------------------------------------------------------------------------------
# Internals: choosing frames


class _Slots:
    """The slots (k ↔ frame k·stride) to fill, in order, possibly an explicit subset."""

    def __init__(self, stride: int, first: int, wanted: list[int] | None, count: int):
        self.stride = stride
        self.first = first
        self.wanted = wanted  # sorted slot numbers, or None for every slot ≥ first
        self.count = count  # slots a stream of the announced length fills

    def initial(self) -> int | None:
        if self.wanted is None:
            return self.first
        return self.wanted[0] if self.wanted else None

    def after(self, index: int) -> int | None:
        """The first wanted slot whose frame index is past `index`."""
        k = index // self.stride + 1
        if self.wanted is None:
            return max(k, self.first)
        i = bisect.bisect_left(self.wanted, k)
        return self.wanted[i] if i < len(self.wanted) else None


def _plan(fps: float, frame_count: int, sampling: Sampling) -> _Slots:
    """The slots to fill for a stream of `frame_count` frames at `fps` (0: count unknown)."""
    stride = frame_stride(fps, sampling.fps)
    # Index range [lo, hi) covered by [start, end) on the nominal clock index = time · fps.
    lo = max(0, math.ceil((sampling.start or 0.0) * fps - 1e-6))
    hi = frame_count
    if sampling.end is not None:
        stop = math.ceil(sampling.end * fps - 1e-6)
        hi = min(hi, stop) if hi else stop
    first = -(-lo // stride)  # ceil(lo / stride)
    n = max(0, -(-hi // stride) - first)  # slots first … ceil(hi / stride) − 1
    if sampling.max_frames is None or n <= sampling.max_frames:
        return _Slots(stride, first, None, n)
    return _Slots(stride, first, [first + p for p in even_subset(n, sampling.max_frames)], sampling.max_frames)


def _check_range(path: Path, duration: float, sampling: Sampling) -> None:
    if sampling.start is not None and duration > 0 and sampling.start >= duration:
        raise UsageError(f"--start {sampling.start:g} s is past the end of {Path(path).name} ({duration:.1f} s)")


def _stream_frames(
    src: _Source,
    sampling: Sampling,
    size: int | None,
    seek: bool | None,
    on_warning: WarningHook | None,
    on_decoded: DecodedHook | None = None,
) -> Iterator[Frame]:
    _check_range(src.path, src.duration, sampling)
    start, end = sampling.start, sampling.end
    slots = _plan(src.fps, src.frame_count, sampling)
    stride = slots.stride
    target = slots.initial()  # the slot to fill next (None: done)
    # The clock check needs the first frames decoded. When the pass starts at the first frame
    # anyway, they are its own ("probation": every packet decoded, the chosen frames held back
    # until the check is done, at most _CLOCK_FRAMES / _PROBATION_STRIDE of them); a check
    # that fails starts the pass again after the separate check. Otherwise it comes first.
    probation = src._clock is None and start is None and end is None and stride >= _PROBATION_STRIDE
    pts_usable, constant = (True, True) if probation else src.clock()
    if probation and seek is None and stride > 1 and len(src.stream.index_entries) < 2:
        src.keyframe_interval()  # now: it seeks to load Matroska's cues, which the pass must not see
    if not pts_usable:
        seek = False  # seeking needs timestamps; count frames from the start instead
    jump_gap = math.inf if probation else _jump_gap(src, stride, seek, constant)
    nal = _NalReader.for_stream(src.stream) if _SKIP_NON_REFERENCE and pts_usable and stride > 1 else None
    wanted = _wanted(slots)
    scaler = FrameScaler(size)
    damage = _Damage()
    reached_end = False
    skipped = 0
    held_back: list[Frame] = []  # chosen during probation
    first_target = target
    observed = -math.inf  # time of the last frame given to on_decoded …
    observed_index: int | None = None  # … and its index

    # Seek to the first slot when `start` is past the first frames, unless told never to seek.
    # Seeks aim half a frame past the wanted frame: when it is a keyframe itself, the backward
    # seek lands on it rather than on the keyframe before (a whole GOP decoded for nothing).
    seek_time: float | None = None
    if target is not None and seek is not False and start and start * src.fps > 1:
        seek_time = (target * stride + 0.5) / src.fps
    _log.debug("%s", _describe_plan(src, stride, jump_gap, seek_time, nal, probation))
    retries = 0
    try:
        while target is not None:
            anchored = seek_time is not None  # after a seek, indices are nominal: round(time · fps)
            if anchored:
                src.seek_to(seek_time)
            else:
                src.rewind()  # undo probing or failed seeks: counting starts at the first frame
            skim = None
            if nal is not None and (constant or not anchored):
                skim = _Skim(src, nal, wanted, nominal=anchored)
                skim.probation = probation
                skim.watched = on_decoded is not None  # GOP tails where a shot may start are decoded
            counted = -1  # decode-order position from the stream's start (when not anchored)
            stamps: list[int | None] = []  # pts of the frames output during probation
            try:
                decoded = _decoded(src, damage, skim)
                for vf in decoded:
                    if probation and len(stamps) == _CLOCK_FRAMES:
                        constant, jump_gap = _settle_clock(src, stamps, stride, seek)
                        probation = False
                        if skim is not None:
                            skim.probation = False
                        yield from held_back
                        held_back.clear()
                        if target * stride - counted > jump_gap:
                            seek_time = (target * stride + 0.5) / src.fps
                            break
                    counted += 1
                    if probation:
                        stamps.append(vf.pts)
                    if skim is not None:
                        index = skim.index_of(vf)
                        if probation and index != counted:
                            raise _Inexact("the first frames come out of timestamp order")
                        t = src.packet_time(vf.pts)
                    else:
                        t = src.time_of(vf) if pts_usable else counted / src.fps
                        if t is None:  # no timestamp: continue the nominal clock
                            t = damage.last_time + 1.0 / src.fps if damage.last_time is not None else counted / src.fps
                        index = round(t * src.fps) if anchored else counted
                    damage.last_time = t
                    if anchored and counted == 0:
                        if index > target * stride:  # the seek landed after the wanted frame
                            seek_time, retries = _seek_back(src, seek_time, retries)
                            jump_gap = jump_gap if seek_time is not None else math.inf
                            break
                        retries = 0
                    if skim is not None and index > target * stride and skim.dropped_within(target * stride, index):
                        raise _Inexact("the slot's frame was left undecoded")
                    if end is not None and t >= end:
                        target = None
                        break
                    if on_decoded is not None and t > observed and not vf.is_corrupt:
                        gap = None
                        if observed_index is not None and anchored and counted == 0:
                            gap = Gap()  # a seek: nothing to fill it with
                        elif observed_index is not None and skim is not None:
                            gap = skim.gap(observed_index, index)
                        observed, observed_index = t, index
                        on_decoded(vf, t, gap)
                    if index < target * stride:
                        continue  # not chosen: never converted to RGB
                    if start is not None and t < start - 1e-6:
                        continue
                    if vf.is_corrupt:
                        damage.bad_frames += 1  # its slot passes to the next good frame
                        continue
                    if probation:
                        held_back.append(Frame(index, t, scaler(vf)))
                    else:
                        yield Frame(index, t, scaler(vf))
                    target = slots.after(index)
                    if target is None:
                        break
                    if target * stride - index > jump_gap:
                        seek_time = (target * stride + 0.5) / src.fps
                        break
                else:
                    if anchored and counted < 0 and seek_time > 0:  # the seek landed past the end
                        seek_time, retries = _seek_back(src, seek_time, retries)
                        jump_gap = jump_gap if seek_time is not None else math.inf
                        continue
                    if skim is not None and target is not None and skim.dropped_within(target * stride, math.inf):
                        raise _Inexact("the last slot's frame was left undecoded")
                    if probation:  # a stream shorter than the clock check
                        _settle_clock(src, stamps, stride, seek)
                        yield from held_back
                    reached_end = True
                    break
                if probation:  # every slot filled before the check was done: check separately
                    decoded.close()  # the check reopens the file
                    src.moved = True
                    if not src.clock()[0]:  # then these frames' times are index / average fps
                        held_back = [Frame(f.index, f.index / src.fps, f.image) for f in held_back]
                    yield from held_back
            except _Inexact as why:
                # Decode everything from the same place; frames already given were checked.
                _log.debug("%s: %s; decoding every frame instead", src.path, why)
                nal, damage = None, _Damage()
                src.moved = True
                if probation:  # nothing given yet: start again, the clock checked separately
                    probation, target = False, first_target
                    held_back.clear()
                    pts_usable, constant = src.clock()
                    if not pts_usable:
                        seek = False
                    jump_gap = _jump_gap(src, stride, seek, constant)
            finally:
                if skim is not None:
                    skipped += skim.skipped
                    if reached_end and skim.last_seen is not None:
                        # the truncation check asks where the stream ends: a GOP tail left
                        # undecoded is still there (its packets were read), not lost
                        damage.last_time = max(damage.last_time or 0.0, skim.last_seen)
        if damage.decoded == 0:
            raise VideoError(_no_frame_message(src, damage))
        _log.debug(
            "%s: %d frames decoded, %d left undecoded (non-reference, or after a GOP's last chosen frame)",
            src.path,
            damage.decoded,
            skipped,
        )
    finally:
        message = damage.message(src, reached_end) if damage.decoded else None
        if message and on_warning is not None:
            on_warning(message)


def _settle_clock(src: _Source, stamps: list[int | None], stride: int, seek: bool | None) -> tuple[bool, float]:
    """End of probation: the clock judged on the pass's own first frames; (constant, jump gap).
    `_Inexact` when the timestamps are not usable (the pass then starts again)."""
    usable, constant = src.judge_clock(stamps)
    if not usable:
        raise _Inexact("the timestamps do not increase in display order")
    return constant, _jump_gap(src, stride, seek, constant)


def _wanted(slots: _Slots) -> Callable[[int], bool]:
    """Whether the frame with this index fills a slot (when every frame decodes)."""
    stride, first = slots.stride, slots.first
    chosen = None if slots.wanted is None else frozenset(slots.wanted)

    def wanted(index: int) -> bool:
        k, rest = divmod(index, stride)
        return rest == 0 and k >= first and (chosen is None or k in chosen)

    return wanted


def _describe_plan(
    src: _Source,
    stride: int,
    jump_gap: float,
    seek_time: float | None,
    nal: _NalReader | _Vp9Reader | None,
    probation: bool = False,
) -> str:
    """One line for --verbose/debug output: how this file is read for this sampling."""
    ways = []
    if probation:
        ways.append("clock checked on the first frames of the pass")
    if seek_time is not None:
        ways.append(f"seek to {seek_time:.2f} s")
    if jump_gap != math.inf:
        ways.append(
            "seek to every chosen frame" if jump_gap <= 1 else f"seek over gaps of more than {jump_gap:.0f} frames"
        )
    if isinstance(nal, _NalReader):
        ways.append(
            "decode reference frames and only the chosen non-reference ones, none after a GOP's last chosen one"
        )
    elif nal is not None:
        ways.append("decode every frame up to each GOP's last chosen one")
    else:
        ways.append("decode every frame")
    return f"{src.path}: {src.stream.codec_context.name}, stride {stride}: {'; '.join(ways)}"


def _seek_back(src: _Source, seek_time: float, retries: int) -> tuple[float | None, int]:
    """After a seek that landed past the wanted frame, where to seek next.

    Some demuxers land late (MPEG-TS seeks by byte position; FLV without a keyframe index;
    a keyframe found by dts with B-frames). Seek further back twice, then give up seeking:
    (None, 0) means decode from the first frame, with seeking off for the rest of the file.
    """
    if retries < 2 and seek_time > 0:
        backoff = max(2.0 * (src.keyframe_interval() or 0.5), 1.0) * 2**retries
        return max(0.0, seek_time - backoff), retries + 1
    src.moved = True
    return None, 0


def _jump_gap(src: _Source, stride: int, seek: bool | None, constant: bool) -> float:
    """Largest gap, in frames, that decoding crosses instead of seeking over."""
    if seek is False or stride <= 1:
        return math.inf
    if seek is True:
        return 1
    interval = src.keyframe_interval()
    if interval is None or not constant:
        return math.inf
    gap = AUTO_SEEK_GOPS * interval * src.fps
    return gap if stride > gap else math.inf


# --------------------------------------------------------------------------------------------
# Internals: leaving unwanted non-reference frames undecoded


class _Inexact(Exception):
    """The skipping pass cannot vouch for an index; the reader decodes everything instead."""


# What a packet's bytes say about the frame it carries (bits of `kind`):
#   _DISPOSABLE  no other frame references it: left out when it is not wanted;
#   _RESET       nothing after it in decode order refers to anything before it (H.264 IDR,
#                HEVC IDR/BLA, VP9 key frame): the references held since the last wanted
#                frame are then not needed;
#   _KEEP        it carries state later frames may use (parameter sets, SEI beyond timing,
#                end of sequence, bytes we cannot read): decoded unless it is disposable.
#   _OPEN        HEVC CRA: a reset for all but its RASL pictures (_LEADING and _RASL), which
#                may refer to pictures before it and which no other picture refers to.
_DISPOSABLE, _RESET, _KEEP, _OPEN, _LEADING, _RASL = 1, 2, 4, 8, 16, 32
# H.264 NAL types a disposable access unit may hold besides its slices: SEI, access unit
# delimiter, filler. HEVC: the sub-layer non-reference slice types (TRAIL_N … RSV_VCL_N14),
# then access unit delimiter, filler and SEI.
_H264_PASSIVE = frozenset({6, 9, 12})
_HEVC_NONREF = frozenset({0, 2, 4, 6, 8, 10, 12, 14})
_HEVC_PASSIVE = frozenset({35, 38, 39, 40})
_HEVC_RESET = frozenset({16, 17, 18, 19, 20})  # BLA and IDR pictures
_HEVC_CRA, _HEVC_RADL, _HEVC_RASL = 21, frozenset({6, 7}), frozenset({8, 9})
_RECOVERY_POINT_SEI = 6
# SEI messages that only describe their own picture: buffering period, picture timing, filler,
# recovery point, HEVC active parameter sets and decoded picture hash.
_TIMING_SEI = frozenset({0, 1, 3, 6, 129, 132})
# Packets a presentation index waits for besides the decode-timestamp proof (see `_Skim`).
_REORDER_MARGIN = 8
# Reference frames held back while no wanted frame follows them (see `_Skim`): past either
# bound they are decoded after all.
_HOLD_PACKETS = 1024
_HOLD_BYTES = 64 * 1024 * 1024
# With an observer (a cut detector), a packet in a GOP tail at least _SPIKE_RATIO times the
# largest of its kind (reference or disposable) in the _SPIKE_SECONDS before it may be where a
# new shot starts, and the tail is decoded (`_Skim._spike`, `_Skim._end_tail`; bench/encode.py
# part 6 measures both). The span is shots.MIN_SHOT (a test holds them equal): a cut's own
# packet hides a second cut only where no second one is reported anyway.
_SPIKE_RATIO = 1.5
_SPIKE_SECONDS = 0.5
# … and the packet is at least 1/_SPIKE_OF_KEYFRAME of the last keyframe's: a frame starting a
# shot is coded (mostly) intra, while a tiny packet that doubles says nothing.
_SPIKE_OF_KEYFRAME = 16
# Tails left out are kept to be decoded on request (`Gap.frames`): the last _TAILS_KEPT (the
# decoder outputs a tail's next frame within a GOP of it), each with its GOP's packets up to
# _FILL_BYTES (a longer GOP's tail is not decoded again).
_TAILS_KEPT = 2
_FILL_BYTES = 32 * 1024 * 1024


class _NalReader:
    """Tells from a packet's bytes how the H.264 or HEVC frame it carries is used (`kind`).

    Disposable: H.264, every slice has nal_ref_idc 0; HEVC, every slice is a sub-layer
    non-reference picture of the highest temporal sub-layer. Either way no later frame can be
    predicted from it, so not decoding it changes no other frame's pixels. A packet that also
    carries parameter sets, an end of sequence or a recovery-point SEI is not disposable
    (they steer how later frames decode). `for_stream` returns None for other codecs and
    unknown layouts."""

    def __init__(self, hevc: bool, length_size: int | None, max_tid: int = 0):
        self.hevc = hevc
        self.length_size = length_size  # None: Annex B start codes
        self.max_tid = max_tid

    @classmethod
    def for_stream(cls, stream: av.video.stream.VideoStream) -> _NalReader | _Vp9Reader | None:
        name, extra = stream.codec_context.name, stream.codec_context.extradata or b""
        if name == "h264":
            if extra[:1] == b"\x01" and len(extra) >= 7:  # avcC: length-prefixed NAL units
                return cls(False, (extra[4] & 3) + 1)
            return cls(False, None)
        if name == "hevc" and extra[:1] == b"\x01" and len(extra) >= 23:  # hvcC
            layers = (extra[21] >> 3) & 7  # numTemporalLayers, 0 = unknown
            if layers >= 1:
                return cls(True, (extra[21] & 3) + 1, layers - 1)
        if name == "vp9":
            return _Vp9Reader()
        return None

    def _units(self, data: memoryview) -> Iterator[memoryview | bytes]:
        size = self.length_size
        if size is None:
            for unit in bytes(data).split(b"\x00\x00\x01"):
                if unit.rstrip(b"\x00"):
                    yield unit
            return
        i, n = 0, len(data)
        while i < n:
            if i + size > n:
                raise ValueError("truncated NAL length")
            length = int.from_bytes(data[i : i + size], "big")
            i += size
            if length == 0 or i + length > n:
                raise ValueError("bad NAL length")
            yield data[i : i + length]
            i += length

    def disposable(self, packet: av.Packet) -> bool:
        return bool(self.kind(packet) & _DISPOSABLE)

    def kind(self, packet: av.Packet) -> int:
        try:
            slices, disposable, reset, keep, other = 0, True, False, False, 0
            for unit in self._units(memoryview(packet)):
                if self.hevc:
                    kind, tid = (unit[0] >> 1) & 0x3F, (unit[1] & 7) - 1
                    if kind < 32:
                        if kind not in _HEVC_NONREF or tid != self.max_tid:
                            disposable = False
                        reset = reset or kind in _HEVC_RESET
                        if kind == _HEVC_CRA:
                            other |= _OPEN
                        elif kind in _HEVC_RASL:
                            other |= _LEADING | _RASL
                        elif kind in _HEVC_RADL:
                            other |= _LEADING
                        slices += 1
                    elif kind in (39, 40):
                        sei = _sei_types(unit[2:])
                        disposable = disposable and not (kind == 39 and _RECOVERY_POINT_SEI in sei)
                        keep = keep or not sei <= _TIMING_SEI
                    elif kind not in _HEVC_PASSIVE:
                        disposable, keep = False, True
                else:
                    kind, ref = unit[0] & 0x1F, unit[0] >> 5 & 3
                    if kind in (1, 5):
                        disposable = disposable and not ref and kind == 1
                        reset = reset or kind == 5
                        slices += 1
                    elif kind == 6:
                        sei = _sei_types(unit[1:])
                        disposable = disposable and _RECOVERY_POINT_SEI not in sei
                        keep = keep or not sei <= _TIMING_SEI
                    elif kind not in _H264_PASSIVE:
                        disposable, keep = False, True
            if not slices:
                return _KEEP
            return (_DISPOSABLE if disposable else 0) | (_RESET if reset else 0) | (_KEEP if keep else 0) | other
        except (ValueError, IndexError):
            return _KEEP  # bytes we cannot read: decode the packet


class _Vp9Reader:
    """VP9: a key frame resets every reference slot and probability context, so nothing
    decoded after it depends on what came before (which is why seeking to one is exact).
    No frame is called disposable (hidden alt-ref frames travel in the packet they serve)."""

    def kind(self, packet: av.Packet) -> int:
        data = bytes(packet)[:1]
        if not data or data[0] >> 6 != 2:  # frame_marker
            return _KEEP
        b = data[0]
        bit = 2 if (b >> 4 & 3) == 3 else 3  # profile 3 has a reserved bit before show_existing_frame
        if b >> bit & 1:  # show_existing_frame
            return 0
        return 0 if b >> (bit - 1) & 1 else _RESET  # frame_type 0: key frame


def _sei_types(payload: memoryview | bytes) -> frozenset[int]:
    """The payload types of the messages in an SEI NAL unit's payload."""
    data = bytes(payload).replace(b"\x00\x00\x03", b"\x00\x00").rstrip(b"\x00")
    types, i, n = set(), 0, len(data)
    while i < n - 1 or (i == n - 1 and data[i] != 0x80):  # 0x80 last: the RBSP trailing bits
        kind = 0
        while data[i] == 0xFF:
            kind, i = kind + 255, i + 1
        kind, i = kind + data[i], i + 1
        size = 0
        while data[i] == 0xFF:
            size, i = size + 255, i + 1
        size, i = size + data[i], i + 1
        types.add(kind)
        i += size
        if i > n:
            raise ValueError("SEI message past the end of its NAL unit")
    return frozenset(types)


@dataclass(frozen=True)
class _Tail:
    """A GOP tail left out while an observer watched: what `_Skim._fill` needs to decode it."""

    indices: dict[int, int]  # pts → index of its frames
    packets: list[av.Packet] | None  # the GOP's non-disposable packets from its keyframe on (None: too big)


class _Skim:
    """Between demuxer and decoder: drops the packets of unwanted non-reference frames.

    Each packet's presentation index comes from its timestamp, before anything is decoded:
    from the stream's start, the rank of its pts among all packets' (B-frames arrive after
    the frames they precede, so ranks wait in a reorder window: a pts is final once a
    later packet's dts passes it, every later pts being at least that dts, and once
    `_REORDER_MARGIN` later packets have larger pts); after a seek, on a constant-rate
    stream, the nominal round(time · fps), the index the seek path uses anyway. A packet
    is decoded when its frame is wanted or may be referenced: an unwanted disposable one is
    left out; an unwanted reference frame is held back until a wanted frame follows it in
    decode order (then it is decoded, before that one) or a reset (IDR, key frame) does
    (then nothing can refer to it any more and it is left out, like the end of the stream;
    the rest of a GOP after its last wanted frame is never decoded). What comes out is checked:
    each frame must be the next one sent, by index; a duplicate or missing pts, a dts that
    does not increase, a decode error or a damaged frame raise `_Inexact`, and the reader
    starts again decoding everything, so the skip never picks a different frame."""

    def __init__(self, src: _Source, nal: _NalReader, wanted: Callable[[int], bool], nominal: bool):
        self.src, self.nal, self.wanted, self.nominal = src, nal, wanted, nominal
        self.queue: collections.deque[av.Packet] = collections.deque()  # waiting for an index
        self.pending: list[int] = []  # pts seen, index not yet final (sorted)
        self.index: dict[int, int] = {}  # pts → index, for packets sent or waiting
        self.recent: collections.deque[int] = collections.deque(maxlen=_REORDER_MARGIN)
        self.ranked = 0
        self.last_final: int | None = None
        self.last_dts: int | None = None
        self.sent: list[int] = []  # heap of the indices sent to the decoder
        self.dropped: list[int] = []  # sorted indices left undecoded
        self.held: list[tuple[av.Packet, int]] = []  # unwanted references, decode order
        self.held_bytes = 0
        self.lead: list[tuple[av.Packet, int, int]] | None = None  # a CRA and its leading pictures
        self.skipped = 0
        self.probation = False  # True: send every packet (the clock is still being checked)
        self.last_seen: float | None = None  # the latest frame time demuxed, decoded or not
        self.watched = False  # True: an observer sees the frames; decode tails where shots may start
        self.sizes: dict[bool, collections.deque[tuple[int, int]]] = {  # (index, size), by disposable or not
            False: collections.deque(),
            True: collections.deque(),
        }
        self.held_spike = False  # since the last decoded reference, a packet much larger than its kind
        self.keyframe_bytes = 0  # the size of the last intra picture (reset or CRA)
        self.reset_at: int | None = None  # the index of the last reset …
        self.gop_lengths: collections.Counter[int] = collections.Counter()  # … and the distances between them
        self.dropped_references: list[int] = []  # sorted indices of the held references left out
        self.gop: list[av.Packet] | None = []  # the GOP's non-disposable packets so far (None: too many bytes)
        self.gop_bytes = 0
        self.tails: collections.deque[_Tail] = collections.deque(maxlen=_TAILS_KEPT)  # left out, fillable

    def push(self, packet: av.Packet) -> Iterator[av.Packet]:
        """The packets to decode now (decode order), given one more from the demuxer."""
        pts = packet.pts
        if pts is None:
            raise _Inexact("a packet has no timestamp")
        seen = self.src.packet_time(pts)
        if self.last_seen is None or seen > self.last_seen:
            self.last_seen = seen
        if self.nominal:
            yield from self._decide(packet, round(self.src.packet_time(pts) * self.src.fps))
            return
        if pts in self.index or (self.last_final is not None and pts <= self.last_final):
            raise _Inexact("timestamps repeat or come back")
        dts = packet.dts
        if dts is not None:
            if (self.last_dts is not None and dts <= self.last_dts) or pts < dts:
                raise _Inexact("decode timestamps out of order")
            self.last_dts = dts
        bisect.insort(self.pending, pts)
        self.index[pts] = -1
        self.queue.append(packet)
        self.recent.append(pts)
        if len(self.recent) == _REORDER_MARGIN and self.last_dts is not None:
            yield from self._release(min(min(self.recent), self.last_dts))

    def flush(self) -> Iterator[av.Packet]:
        """At the end of the stream every index is final."""
        if not self.nominal:
            yield from self._release(None)
        if self.lead is not None:
            yield from self._resolve_open()
        yield from self._end_tail(scheduled=True)  # no wanted frame follows them; nothing starts there

    def _release(self, bound: int | None) -> Iterator[av.Packet]:
        pending = self.pending
        cut = len(pending) if bound is None else bisect.bisect_left(pending, bound)
        for pts in pending[:cut]:
            self.index[pts] = self.ranked
            self.ranked += 1
        if cut:
            self.last_final = pending[cut - 1]
            del pending[:cut]
        while self.queue and self.index[self.queue[0].pts] >= 0:
            packet = self.queue.popleft()
            yield from self._decide(packet, self.index[packet.pts])

    def _decide(self, packet: av.Packet, index: int) -> Iterator[av.Packet]:
        if self.probation:
            if self.watched:  # the resets and sizes seen while every packet is decoded count too
                kind = self.nal.kind(packet)
                if kind & _RESET:
                    self._scheduled(index)
                if kind & (_RESET | _OPEN):
                    self._new_gop(packet)
                else:
                    self._spike(index, packet.size, bool(kind & _DISPOSABLE))
                    self._keep_in_gop(packet, kind)
            yield self._send(packet, index)
            return
        kind = self.nal.kind(packet)
        if self.lead is not None:
            if kind & _LEADING:
                self.lead.append((packet, index, kind))
                return
            yield from self._resolve_open()
        if kind & _OPEN:  # wait for its leading pictures: do the RASL ones need the past?
            self.lead = [(packet, index, kind)]
            return
        yield from self._place(packet, index, kind)

    def _resolve_open(self) -> Iterator[av.Packet]:
        """After a CRA's leading pictures: when none of its RASL pictures is wanted (or must be
        decoded), they and the references held before the CRA are left out; else all go on."""
        lead, self.lead = self.lead or [], None
        if any(k & _RASL and (self.wanted(i) or k & _KEEP) for _, i, k in lead):
            for packet, index, kind in lead:
                yield from self._place(packet, index, kind)
            return
        yield from self._end_tail(self._scheduled(lead[0][1]))
        if self.watched:
            self._new_gop(lead[0][0])  # a decoder can start at a CRA, its RASL pictures left out
            lead, first = lead[1:], lead[0]
            yield from self._place(*first, in_gop=True)
        for packet, index, kind in lead:
            if kind & _RASL:
                self._drop(packet, index)
            else:
                yield from self._place(packet, index, kind)

    def _place(self, packet: av.Packet, index: int, kind: int, in_gop: bool = False) -> Iterator[av.Packet]:
        spike = False
        if kind & _RESET:
            scheduled = self._scheduled(index)
            yield from self._end_tail(scheduled)
            spike = not scheduled  # held itself (a GOP with no wanted frame), it may start a shot
            if self.watched:
                self._new_gop(packet)
        elif self.watched and not in_gop:
            if not kind & _OPEN:  # intra pictures set no scale
                spike = self._spike(index, packet.size, bool(kind & _DISPOSABLE))
            self._keep_in_gop(packet, kind)
        if self.wanted(index):
            yield from self._send_held()
            yield self._send(packet, index)
        elif kind & _DISPOSABLE:
            self._drop(packet, index)
            self.held_spike = self.held_spike or spike  # a shot may start beside it
        elif kind & _KEEP:
            yield from self._send_held()
            yield self._send(packet, index)
        else:
            self.held.append((packet, index))
            self.held_bytes += packet.size
            self.held_spike = self.held_spike or spike
            if len(self.held) > _HOLD_PACKETS or self.held_bytes > _HOLD_BYTES:
                yield from self._send_held()

    def _send(self, packet: av.Packet, index: int) -> av.Packet:
        heapq.heappush(self.sent, index)
        return packet

    def _end_tail(self, scheduled: bool) -> Iterator[av.Packet]:
        """At a reset, or the stream's end, the held references are needed by nothing wanted:
        left out, unless an observer watches and a shot may start among them (`_spike`) or on
        the reset (not `_scheduled`). Then they are decoded, so the observer sees every reference
        frame up to the reset, and the reset as the neighbour of the last of them."""
        if self.held and self.watched and (self.held_spike or not scheduled):
            yield from self._send_held()
            return
        if self.watched and self.held:
            for _, index in self.held:
                bisect.insort(self.dropped_references, index)
            packets = list(self.gop) if self.gop is not None else None
            self.tails.append(_Tail({p.pts: i for p, i in self.held}, packets))
        self._drop_held()

    def _spike(self, index: int, size: int, disposable: bool) -> bool:
        """Whether a packet is much larger than the ones of its kind (reference or disposable)
        of the last _SPIKE_SECONDS (decode order): the first frame of a new shot cannot be
        predicted from the last shot's frames, so the encoder codes it (mostly) intra, as an I-
        or a large P-frame, and the B-frames beside a cut lose one of their two predictions.
        Where every P-frame costs nearly an I-frame's bits (grain, noise), the P-frame at a cut
        barely stands out, and the B-frames beside it do. With fewer than two to compare with,
        a reference packet may be a spike (a disposable one says nothing)."""
        sizes, span = self.sizes[disposable], _SPIKE_SECONDS * self.src.fps
        while sizes and sizes[0][0] < index - span:
            sizes.popleft()
        spike = not disposable if len(sizes) < 2 else size >= _SPIKE_RATIO * max(s for _, s in sizes)
        sizes.append((index, size))
        return spike and size * _SPIKE_OF_KEYFRAME >= self.keyframe_bytes

    def _new_gop(self, packet: av.Packet) -> None:
        self.keyframe_bytes = packet.size
        self.gop, self.gop_bytes = [packet], packet.size

    def _keep_in_gop(self, packet: av.Packet, kind: int) -> None:
        """Keep what a second decoder needs to decode this GOP's tail again (`gap`)."""
        if self.gop is None or kind & _DISPOSABLE:
            return
        self.gop.append(packet)
        self.gop_bytes += packet.size
        if self.gop_bytes > _FILL_BYTES:
            self.gop = None

    def gap(self, lo: int, hi: int) -> Gap | None:
        """The `Gap` between frames lo and hi, if held references there were left out."""
        if not self.references_dropped(lo, hi):
            return None
        tails = [t for t in self.tails if any(lo < i < hi for i in t.indices.values())]
        return Gap(lambda: [f for tail in tails for f in self._fill(tail)])

    def _fill(self, tail: _Tail) -> list[tuple[av.VideoFrame, float]]:
        """A tail's frames, decoded again from its GOP's keyframe by a decoder of their own."""
        if tail.packets is None:
            return []
        stream = self.src.stream
        codec = av.CodecContext.create(stream.codec_context.name, "r")
        codec.extradata = stream.codec_context.extradata
        frames: list[av.VideoFrame] = []
        try:
            for packet in tail.packets:
                frames += codec.decode(packet)
            frames += codec.decode(None)
        except av.error.FFmpegError:
            return []
        kept = [(f, self.src.packet_time(f.pts)) for f in frames if f.pts in tail.indices and not f.is_corrupt]
        return sorted(kept, key=lambda pair: pair[1])

    def _scheduled(self, reset: int) -> bool:
        """Whether the encoder put this reset where its clock said, not where the picture
        changed: its distance from the last reset is the longest one seen and was seen before
        (x264's keyint, a fixed GOP). Before that is known, no reset counts as scheduled, and
        neither does one an encoder put early (x264's scenecut: a new shot)."""
        last, self.reset_at = self.reset_at, reset
        if last is None or reset <= last:
            return False
        length = reset - last
        self.gop_lengths[length] += 1
        return self.gop_lengths[length] >= 2 and length >= max(self.gop_lengths)

    def references_dropped(self, lo: int, hi: int) -> bool:
        """Whether a held reference with index in (lo, hi) was left out (forgets those up to lo)."""
        drop = self.dropped_references
        del drop[: bisect.bisect_right(drop, lo)]
        return bool(drop) and drop[0] < hi

    def _send_held(self) -> Iterator[av.Packet]:
        held, self.held, self.held_bytes, self.held_spike = self.held, [], 0, False
        for packet, index in held:
            yield self._send(packet, index)

    def _drop(self, packet: av.Packet, index: int) -> None:
        self.index.pop(packet.pts, None)
        bisect.insort(self.dropped, index)
        self.skipped += 1

    def _drop_held(self) -> None:
        for packet, index in self.held:
            self._drop(packet, index)
        self.held, self.held_bytes, self.held_spike = [], 0, False

    def index_of(self, frame: av.VideoFrame) -> int:
        """The index of a decoded frame; `_Inexact` unless it is the next one sent."""
        if frame.pts is None:
            raise _Inexact("a decoded frame has no timestamp")
        if frame.is_corrupt:
            raise _Inexact("a damaged frame")
        if self.nominal:
            # After a seek the decoder may hold back the leading frames of an open GOP; the
            # nominal clock does not count frames, so the ones it never outputs shift nothing.
            index = round(self.src.packet_time(frame.pts) * self.src.fps)
            while self.sent and self.sent[0] < index:
                heapq.heappop(self.sent)
        else:
            index = self.index.pop(frame.pts, None)
        if index is None or not self.sent or heapq.heappop(self.sent) != index:
            raise _Inexact("the decoder's output does not match the packets sent")
        return index

    def dropped_within(self, lo: int, hi: int) -> bool:
        """Whether a frame with index in [lo, hi) was left undecoded (forgets those below lo)."""
        drop = self.dropped
        del drop[: bisect.bisect_left(drop, lo)]
        return bool(drop) and drop[0] < hi


# --------------------------------------------------------------------------------------------
# Internals: orientation


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    data = frame.side_data.get(SideDataType.DISPLAYMATRIX)
    if data is None:
        return None
    raw = bytes(data)
    return struct.unpack("=9i", raw[:36]) if len(raw) >= 36 else None


def _orientation(frame: av.VideoFrame) -> tuple[tuple[str, ...], bool]:
    """Array operations that put a frame upright, as the ffmpeg CLI's autorotate does.

    Returns (ops, transposed): ops from {"rot90", "rot270", "transpose", "antitranspose",
    "hflip", "vflip"} applied in order; transposed says width and height swap. (PyAV's
    `frame.rotation` alone would miss mirrored matrices.)
    """
    m = _display_matrix(frame)
    if m is None:
        return (), False
    # ffmpeg's get_rotation(): the clockwise angle, rounded, in [0, 360).
    s0, s1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if s0 == 0 or s1 == 0:
        return (), False
    theta = round(math.degrees(math.atan2(m[1] / s1, m[0] / s0))) % 360
    if abs(theta - 90) < 1:
        return (("transpose",) if m[3] > 0 else ("rot270",)), True
    if abs(theta - 270) < 1:
        return (("antitranspose",) if m[3] < 0 else ("rot90",)), True
    if abs(theta - 180) < 1:
        return tuple(op for op, on in (("hflip", m[0] < 0), ("vflip", m[4] < 0)) if on), False
    if theta == 0 and m[4] < 0:
        return ("vflip",), False
    return (), False  # other angles are not rotated (ffmpeg would use a free rotate filter)


# Counter-clockwise rotation each op sequence performs once a mirror (an hflip after the
# rotation) is set aside: vflip = 180° + mirror, transpose = 270° + mirror, and so on.
_DEGREES = {
    (): 0,
    ("rot90",): 90,
    ("rot270",): 270,
    ("hflip", "vflip"): 180,
    ("hflip",): 0,
    ("vflip",): 180,
    ("transpose",): 270,
    ("antitranspose",): 90,
}


def _rotation_degrees(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation in {0, 90, 180, 270}, mirroring set aside."""
    return _DEGREES[_orientation(frame)[0]]


def _apply(ops: tuple[str, ...], image: np.ndarray) -> np.ndarray:
    for op in ops:
        if op == "rot90":  # 90° counter-clockwise
            image = np.rot90(image, 1)
        elif op == "rot270":  # 90° clockwise
            image = np.rot90(image, -1)
        elif op == "transpose":
            image = image.transpose(1, 0, 2)
        elif op == "antitranspose":
            image = image[::-1, ::-1].transpose(1, 0, 2)
        elif op == "hflip":
            image = image[:, ::-1]
        elif op == "vflip":
            image = image[::-1]
    return image


# --------------------------------------------------------------------------------------------
# Internals: argument and path checks


def _check_path(path: str | Path) -> Path:
    from .paths import regular_file

    return regular_file(path, VideoError, "a video or image file")


def _check_options(sampling: Sampling, size: int | None) -> None:
    if not isinstance(sampling, Sampling):
        raise TypeError(f"sampling must be a video.Sampling, not {type(sampling).__name__}")
    if size is not None and not (_is_whole(size) and size >= 1):
        raise UsageError(f"size must be a whole number of pixels ≥ 1, got {size!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _shown(value: object) -> str:
    return f"{value:g}" if _is_number(value) else repr(value)


def _unreadable_message(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":  # an MP4/MOV whose sample index (moov) is missing or damaged
        return f"{path} is an incomplete or damaged MP4/MOV (its index is unreadable); download or copy it again"
    return f"{path} is not a video or image FFmpeg can read; convert it to MP4 (H.264) and try again"


def _no_frame_message(src: _Source, damage: _Damage) -> str:
    codec = src.stream.codec_context.name
    detail = f"{damage.bad_packets} undecodable packets" if damage.bad_packets else "no frames"
    return (
        f"{src.path}: no frame of its {codec} video could be decoded ({detail}); "
        "re-download the file or re-encode it (ffmpeg -i IN OUT.mp4)"
    )
