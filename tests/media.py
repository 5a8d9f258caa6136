"""Tiny test media written with PyAV and PIL, whose pixels say which frame they are.

Each video frame carries, in display orientation before any rotation metadata:
  - a red band along the top edge and a green square in the top-left corner (orientation);
  - its index as 15 bits, black or white cells in a 3×5 grid inside the central square
    (the part a centre crop keeps), so `read_index` recovers it from a full frame or from
    a `resize_and_crop` of it.
Everything is small (64×48 to 320×240, a few seconds) so the whole suite stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

CODE_ROWS, CODE_COLS = 3, 5
MAX_INDEX = 2 ** (CODE_ROWS * CODE_COLS) - 1
RED, GREEN = (220, 20, 20), (20, 200, 20)

# What FFmpeg's subrip/mov_text encoders need before they open (an ASS header).
_ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\nPlayResX: 384\nPlayResY: 288\n\n"
    b"[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, "
    b"BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, "
    b"Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0\n\n"
    b"[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
)


def _code_cells(height: int, width: int):
    """(top, bottom, left, right) of each code cell, row-major, inside the central square."""
    side = min(height, width)
    top0, left0 = (height - side) // 2, (width - side) // 2
    rows = np.linspace(0.3, 0.9, CODE_ROWS + 1) * side
    cols = np.linspace(0.1, 0.9, CODE_COLS + 1) * side
    for r in range(CODE_ROWS):
        for c in range(CODE_COLS):
            yield (
                top0 + int(rows[r]),
                top0 + int(rows[r + 1]),
                left0 + int(cols[c]),
                left0 + int(cols[c + 1]),
            )


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus per-pixel noise: a stand-in for camera content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0)
    g = 255 * x / width
    b = 127 * (1 - y / height) + 60 * np.sin((x + y) / 11.0)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (height, width, 3))
    return np.clip(img, 0, 255).round().astype(np.uint8)


def pattern(index: int, height: int, width: int, kind: str = "index") -> np.ndarray:
    """The RGB picture of frame `index` (see the module docstring)."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index {index} does not fit in the {CODE_ROWS * CODE_COLS}-bit code")
    if kind == "photo":
        img = photo_like(height, width, seed=index)
    else:
        img = np.full((height, width, 3), 128, np.uint8)
    band = max(2, height // 8)
    img[:band] = RED
    img[:band, : max(2, width // 8)] = GREEN
    for bit, (top, bottom, left, right) in enumerate(_code_cells(height, width)):
        img[top:bottom, left:right] = 235 if index >> bit & 1 else 16
    return img


def read_index(image: np.ndarray) -> int:
    """The index drawn by `pattern`, from an upright frame or a centre crop of one."""
    h, w = image.shape[:2]
    gray = image.astype(np.float32).mean(axis=2)
    index = 0
    for bit, (top, bottom, left, right) in enumerate(_code_cells(h, w)):
        dt, dl = (bottom - top) // 4, (right - left) // 4  # sample the middle of the cell
        if gray[top + dt : bottom - dt, left + dl : right - dl].mean() > 128:
            index |= 1 << bit
    return index


def marker_side(image: np.ndarray) -> str:
    """Which edge ("top", "bottom", "left", "right") carries the red band."""
    h, w = image.shape[:2]
    red = (image[..., 0].astype(int) > 150) & (image[..., 1].astype(int) < 100)
    k = max(1, min(h, w) // 16)
    scores = {
        "top": red[:k].mean(),
        "bottom": red[-k:].mean(),
        "left": red[:, :k].mean(),
        "right": red[:, -k:].mean(),
    }
    return max(scores, key=scores.get)


def green_corner(image: np.ndarray) -> str:
    """Which corner ("tl", "tr", "bl", "br") carries the green square."""
    h, w = image.shape[:2]
    green = (image[..., 1].astype(int) > 150) & (image[..., 0].astype(int) < 100)
    k = max(1, min(h, w) // 16)
    corners = {
        "tl": green[:k, :k].mean(),
        "tr": green[:k, -k:].mean(),
        "bl": green[-k:, :k].mean(),
        "br": green[-k:, -k:].mean(),
    }
    return max(corners, key=corners.get)


def make_video(
    path: str | Path,
    *,
    seconds: float = 2.0,
    fps: float | Fraction = 10,
    width: int = 64,
    height: int = 48,
    codec: str = "libx264",
    pattern_kind: str = "index",
    gop: int | None = None,
    rotation: int = 0,
    hflip: bool = False,
    times: Sequence[float] | None = None,
    subtitles: Sequence[tuple[float, float, str]] | None = None,
    container_options: dict[str, str] | None = None,
    encoder_options: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write a video whose frame i shows `pattern(i)`; return its path.

    codec: "libx264" (B-frames, like real files) or "mpeg4". gop: keyframe interval in
    frames. rotation / hflip: display-matrix metadata (degrees counter-clockwise, as
    PyAV's `set_display_rotation` and `VideoFrame.rotation`). times: explicit frame times
    in seconds for a variable-frame-rate file (then `seconds` is ignored). subtitles:
    (start, end, text) cues muxed as a SubRip track (use a .mkv path). container_options:
    muxer options, e.g. {"movflags": "faststart"} to put an MP4's index first. encoder_options:
    encoder options replacing the defaults (any encoder FFmpeg has, e.g. codec="libx265"),
    such as {"preset": "medium"} for x264's B-frame pyramid. pix_fmt: the coded pixel format
    ("yuv444p", "yuv420p10le", "yuvj420p" for full range, …; libx264).
    """
    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    n = len(times) if times is not None else round(seconds * rate)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            options = {"preset": "ultrafast", "crf": "10", "bf": "2"}
            if gop is not None:
                options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
            stream.options = options
        else:
            stream.bit_rate = 4_000_000
        if encoder_options is not None:
            stream.options = encoder_options
        if gop is not None:
            stream.codec_context.gop_size = gop
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation or hflip:
            stream.set_display_rotation(rotation, hflip=hflip)
        sub_stream = None
        if subtitles:
            sub_stream = container.add_stream("subrip")
            sub_stream.codec_context.subtitle_header = _ASS_HEADER
            sub_stream.metadata["language"] = "eng"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(pattern(i, height, width, pattern_kind), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        for start, end, text in subtitles or ():
            packet = av.Packet(text.encode())
            packet.stream = sub_stream
            packet.time_base = Fraction(1, 1000)
            packet.pts = packet.dts = round(start * 1000)
            packet.duration = round((end - start) * 1000)
            container.mux(packet)
    return path


def make_audio(path: str | Path, *, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An audio-only file (AAC; use .m4a or .mp4)."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        t = np.arange(round(seconds * rate)) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, len(samples), 1024):
            chunk = samples[i : i + 1024]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_undecodable(path: str | Path, *, packets: int = 10) -> Path:
    """A valid Matroska file whose MPEG-4 video packets are random bytes."""
    path = Path(path)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(packets):
            packet = av.Packet(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
            packet.stream, packet.time_base = stream, Fraction(1, 10)
            packet.pts = packet.dts = i
            packet.is_keyframe = True
            container.mux(packet)
    return path


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut a file to `fraction` of its bytes, as an interrupted download would."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def make_image(path: str | Path, width: int = 64, height: int = 48, *, orientation: int | None = None) -> Path:
    """A still image with the orientation markers; `orientation` sets the EXIF tag (JPEG)."""
    path = Path(path)
    img = Image.fromarray(pattern(0, height, width))
    if orientation is None:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, exif=exif, quality=95)
    return path


def cut_at_keyframe(source: str | Path, path: str | Path, keyframe: int = 1) -> Path:
    """Copy a video's packets from its `keyframe`-th intra frame on (decode order), as a
    stream cut from the middle of a broadcast: with open GOPs it then starts with B-frames
    that show before its first keyframe and refer to frames it no longer has."""
    path = Path(path)
    with av.open(str(source)) as src:
        intra = [f.pts for f in src.decode(video=0) if f.pict_type == av.video.frame.PictureType.I]
    with av.open(str(source)) as src, av.open(str(path), "w") as dst:
        stream = src.streams.video[0]
        out = dst.add_stream_from_template(stream)
        copying = False
        for packet in src.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts == intra[keyframe]:
                copying, packet.is_keyframe = True, True
            if copying:
                packet.stream = out
                dst.mux(packet)
    return path


SCENE_COLOURS = ((200, 40, 40), (40, 160, 60), (40, 60, 200), (230, 210, 40))


def make_scenes(
    path: str | Path,
    *,
    scenes: Sequence[float] = (2.5, 2.5, 2.5),
    fps: int = 10,
    width: int = 64,
    height: int = 48,
    encoder_options: dict[str, str] | None = None,
) -> Path:
    """A video of hard cuts: scene i (`scenes[i]` seconds) is a flat `SCENE_COLOURS[i]` picture
    with a small grey square moving across it. Encoded with x264 `veryfast` (B-frames with
    b-pyramid, scenecut on: what real files have), so the first frame of each scene is where an
    encoder puts a new shot. The cuts lie at the frame times round(sum(scenes[:i]) · fps) / fps."""
    counts = [round(s * fps) for s in scenes]

    def pictures() -> Iterator[np.ndarray]:
        for scene, count in enumerate(counts):
            colour = SCENE_COLOURS[scene % len(SCENE_COLOURS)]
            for i in range(count):
                img = np.empty((height, width, 3), np.uint8)
                img[:] = colour
                side = max(4, height // 6)
                x = (i * 2) % max(1, width - side)
                img[height // 2 - side // 2 : height // 2 + side // 2, x : x + side] = 128
                yield img

    return _encode_h264(path, pictures(), fps, encoder_options or {"preset": "veryfast", "crf": "18"})


def _encode_h264(path: str | Path, pictures: Iterable[np.ndarray], fps: int, options: dict[str, str]) -> Path:
    """Encode RGB pictures (all one size) with x264 at a constant `fps`, frame i at pts i."""
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.pix_fmt, stream.options = "yuv420p", options
        for index, picture in enumerate(pictures):
            if index == 0:
                stream.height, stream.width = picture.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def scene_cuts(scenes: Sequence[float] = (2.5, 2.5, 2.5), fps: int = 10) -> list[float]:
    """The true cut times of `make_scenes`: the first frame time of every scene after the first."""
    counts = [round(s * fps) for s in scenes]
    return [sum(counts[:i]) / fps for i in range(1, len(counts))]


def make_pan(
    path: str | Path,
    *,
    seconds: float = 8.0,
    fps: int = 10,
    width: int = 96,
    height: int = 64,
    speed: int = 1,
    encoder_options: dict[str, str] | None = None,
) -> Path:
    """One shot, no cut: a colourful smooth texture panning `speed` pixels a frame (x264
    `veryfast` unless `encoder_options` say otherwise). Over a second of frames it changes as
    much as a cut does between neighbours; between neighbours it changes little."""
    total = round(seconds * fps)
    ys, xs = np.mgrid[0:height, 0 : width + speed * total].astype(np.float32)
    texture = np.stack(
        [
            128 + 90 * np.sin(xs / 5.0) * np.cos(ys / 7.0),
            128 + 90 * np.cos(xs / 9.0 + ys / 4.0),
            128 + 90 * np.sin((xs + ys) / 6.0),
        ],
        axis=-1,
    )
    texture = texture.clip(0, 255).astype(np.uint8)
    pictures = (texture[:, speed * i : speed * i + width] for i in range(total))
    return _encode_h264(path, pictures, fps, encoder_options or {"preset": "veryfast", "crf": "18"})


def make_grainy_scenes(
    path: str | Path,
    *,
    scenes: Sequence[float] = (1.5, 2.0, 4.5),
    fps: int = 10,
    width: int = 320,
    height: int = 192,
    grain: int = 40,
    encoder_options: dict[str, str] | None = None,
) -> Path:
    """Hard cuts between panning textures under heavy grain (fresh noise up to `grain` on every
    frame, from 7 patterns), x264 `medium` unless `encoder_options` say otherwise. The grain
    makes every frame cost about the same bits, so a cut's packets hardly stand out by size.
    Scene k permutes the colour channels (and inverts the odd ones); the cuts lie where
    `scene_cuts` says."""
    rng = np.random.default_rng(0)
    counts = [round(s * fps) for s in scenes]
    span = 3 * sum(counts) + 97 * len(counts)  # the pan never wraps: no cut but the scenes'
    ys, xs = np.mgrid[0:height, 0 : width + span].astype(np.float32)
    base = (100 + 60 * np.sin(xs / 41.0) * np.cos(ys / 29.0) + 40 * np.sin((xs + 2 * ys) / 13.0)).astype(np.int16)
    noise = [rng.integers(0, grain, (height, width, 3)) for _ in range(7)]

    def pictures() -> Iterator[np.ndarray]:
        index = 0
        for scene, count in enumerate(counts):
            for _ in range(count):
                start = 3 * index + 97 * scene
                plane = base[:, start : start + width]
                rgb = np.stack([plane, plane + 30, plane - 20], axis=-1)[..., [(scene + c) % 3 for c in range(3)]]
                if scene % 2:
                    rgb = 255 - rgb
                yield (rgb + noise[(3 * index) % 7]).clip(0, 255).astype(np.uint8)
                index += 1

    return _encode_h264(path, pictures(), fps, encoder_options or {"preset": "medium", "crf": "23"})
