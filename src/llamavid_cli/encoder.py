"""Frames to tokens: decode (video.py), normalise (pixels.py), the vision tower and the
per-frame context and content tokens (method.md §2–§5), into one `EncodedVideo`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import cache, pixels, video
from .encoded import EncodedVideo
from .errors import VideoError
from .loader import Loaded
from .model.llamavid import FrameTokens
from .video import Sampling

if TYPE_CHECKING:
    from .shots import CutDetector

DECODE_BATCH = 16  # frames decoded and pushed through the tower together
NO_FRAMES = "no frames in the chosen range; widen --start/--end or raise --fps"


def source_info(path: Path) -> dict:
    """Name, size, content hash (`cache.content_hash`) and the stream's shape."""
    info = video.probe(path)
    return {
        "name": path.name,
        "size": path.stat().st_size,
        "hash": cache.content_hash(path),
        "duration": info.duration,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "codec": info.codec,
    }


@dataclass
class Frames:
    """Decoded frames arriving from elsewhere (a batch's decoder thread): uint8 batches
    [b,S,S,3] with their timestamps, the decoder's warnings filled in as it goes, and the cut
    detector it fed (None for an image)."""

    batches: Iterable[tuple[np.ndarray, list[float]]]
    warnings: list[str] = field(default_factory=list)
    detector: CutDetector | None = None


def cut_detector(path: Path) -> CutDetector | None:
    """A shot-cut detector for the decode of `path` (shots.py); None for an image."""
    if video.is_image(path):
        return None
    from .shots import CutDetector

    return CutDetector(video.probe(path).fps)


def frame_batches(
    loaded: Loaded, path: Path, sampling: Sampling, warnings: list[str], on_decoded: video.DecodedHook | None = None
) -> Iterator[tuple[np.ndarray, list[float]]]:
    """The CPU half of encoding: decoded, resized uint8 batches [b,S,S,3] with their timestamps
    (no model is touched, so a batch can run it ahead in a thread); `on_decoded` sees every
    frame the decoder outputs (a cut detector)."""
    size = loaded.config.vision.image_size
    if video.is_image(path):
        image = video.load_image(path)
        if loaded.config.pad_images:
            image = pixels.pad_to_square(image)
        yield pixels.resize_and_crop(image, size)[None], [0.0]
        return
    batch, stamps = [], []
    frames = video.iter_frames(path, sampling, size=size, on_warning=warnings.append, on_decoded=on_decoded)
    for frame in frames:
        batch.append(frame.image)
        stamps.append(frame.time)
        if len(batch) == DECODE_BATCH:
            yield np.stack(batch), stamps
            batch, stamps = [], []
    if batch:
        yield np.stack(batch), stamps


def _pixel_batches(
    loaded: Loaded,
    path: Path,
    sampling: Sampling,
    warnings: list[str],
    frames: Frames | None = None,
    on_decoded: video.DecodedHook | None = None,
) -> Iterator[tuple[torch.Tensor, list[float]]]:
    """Normalised pixel batches [b,3,S,S] on the model's device, with their timestamps."""
    device, dtype = loaded.model.vision_device, loaded.model.vision_dtype
    batches = frames.batches if frames is not None else frame_batches(loaded, path, sampling, warnings, on_decoded)
    for batch, stamps in batches:
        yield pixels.normalize(batch, device, dtype), stamps


def encode_source(
    loaded: Loaded,
    path: Path,
    instruction: str,
    sampling: Sampling | None = None,
    *,
    keep_features: bool = False,
    on_frames: Callable[[int], None] | None = None,
    info: dict | None = None,
    frames: Frames | None = None,
    detect_cuts: bool = False,
) -> EncodedVideo:
    """Video or image → context and content tokens for `instruction` (features kept on request),
    with the video's shot cuts found in the same decode when `detect_cuts` (shots.py; else not
    looked for, `cuts` None); `frames`: the source decoded elsewhere (a batch's decoder thread), else decoded here."""
    sampling = sampling or Sampling()
    path = Path(path)
    warnings: list[str] = frames.warnings if frames is not None else []
    model = loaded.model
    if frames is not None:
        detector = frames.detector
    else:
        detector = cut_detector(path) if detect_cuts else None
    contexts, contents, stamps, kept = [], [], [], []
    for batch, times in _pixel_batches(loaded, path, sampling, warnings, frames, detector):
        features = model.vision_features(batch)  # (b, 1+P, V)
        tokens = model.frame_tokens(features, instruction, long_video=loaded.long_video)
        _check_finite(path, times, features, tokens)
        contexts.append(tokens.context)
        contents.append(tokens.content)
        stamps += times
        if keep_features:
            kept.append(features.to("cpu", torch.float16))
        if on_frames:
            on_frames(len(times))
    if not contexts:
        raise VideoError(f"{path}: {NO_FRAMES}")
    return EncodedVideo(
        timestamps=tuple(stamps),
        context=torch.cat(contexts),
        content=torch.cat(contents),
        prompt=instruction,
        model=loaded.name,
        fingerprint=loaded.fingerprint,
        long_video=loaded.long_video,
        features=torch.cat(kept) if keep_features else None,
        sampling=sampling.as_dict(),
        source=info or source_info(path),
        notes=tuple(warnings),
        cuts=_cuts(path, detector, sampling) if detect_cuts or detector is not None else None,
    )


def _cuts(path: Path, detector, sampling: Sampling) -> tuple[float, ...]:
    """The cuts inside the sampled range (an image has none)."""
    if detector is None:
        return ()
    from .shots import within

    return within(detector.cuts(), sampling.start, sampling.end)


def _check_finite(path: Path, times: list[float], features: torch.Tensor, tokens: FrameTokens) -> None:
    """NaN/Inf from an overflowing kernel would reach the LLM as garbage (or crash sampling): stop here."""
    if not all(bool(torch.isfinite(t).all()) for t in (features, tokens.context, tokens.content)):
        raise VideoError(
            f"{path}: the vision tower produced NaN or infinite values for the frames at {times[0]:.1f}–{times[-1]:.1f} s; "
            "try --dtype float32 or another --device"
        )
