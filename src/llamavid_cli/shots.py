"""Shot cuts, found in the decode pass that samples frames for the model (issue 9).

PySceneDetect's `AdaptiveDetector` (its content score: the mean change of hue, saturation
and brightness between consecutive frames, compared with the rolling average of its
neighbours, so fast camera motion is not taken for a cut) runs on every frame the decoder
outputs, through `video.iter_frames(on_decoded=...)`: one decode feeds both the model and
the detector. Each frame is first scaled by FFmpeg (swscale, fast bilinear, one scaler kept
for the whole stream: a new one per frame costs six times as much) to DETECT_WIDTH pixels
wide, which keeps the detector's cost small next to decoding (bench/encode.py, part 6).

Precision. The detector sees what the decoder outputs. Non-reference frames that are not
chosen are never decoded (video.py), so it sees the reference frames and the chosen frames
only: with x264's defaults (3 B-frames, b-pyramid) those are at most 2 frames apart, so a cut
is placed at most 2 frames (under 0.1 s at 25–30 fps) after where a full decode would put it.
Encoders start a new shot with a reference frame (x264's scenecut makes it an I-frame), and
then the cut is exact. The rest of a GOP after its last chosen frame is decoded only where a
shot may start in it (video.py: a reference packet much larger than the ones before it, or a
keyframe before the encoder's clock would put one). After a stretch left undecoded, or a seek
over a gap between chosen frames, the next frame is no neighbour of the last one. When the
colours on the two sides of a tail differ (`histogram_change`: a new shot, not motion), the
tail is decoded after all by a second decoder (`video.Gap.frames`) and goes through the
detector like any other stretch; otherwise the frame after the gap is given the median of the
last genuine scores (`_Adaptive`), so no cut is found across it and the rolling average goes on
undisturbed on both sides. A stretch a seek skipped (sparse sampling on a stream with short
keyframe intervals, video.py's seek path) is never decoded: a cut inside it is not found.

The threshold on the adaptive ratio is 2.0, not PySceneDetect's 3.0: with non-reference frames
left undecoded, consecutive frames the detector sees are 1 to 4 frame periods apart, so the
scores of moving footage vary more and its neighbours' average rises. On bench/encode.py's
part 6 clip (panning noisy texture, 8 hard cuts in 20 s, x264 medium) 3.0 missed 3 of the 8
cuts when skipping (none decoding every frame); 2.0 finds all 8, within one frame, and no extra.
MIN_CONTENT still keeps a nearly still shot from cutting on small changes.

A cut's time is the time of the first frame of the new shot, in seconds on the stream's clock.
"""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from . import video

DETECT_WIDTH = 96  # pixels; the height keeps the aspect ratio (even, at least 2)
MIN_SHOT = 0.5  # seconds: no two cuts closer than this (PySceneDetect's default is 15 frames)
ADAPTIVE_THRESHOLD = 2.0  # score ratio to the neighbours' average (PySceneDetect: 3.0; see below) …
MIN_CONTENT = 15.0  # … and smallest content score that can be a cut
# Across a gap (a GOP tail left undecoded), the colour histograms of the frames on its two sides
# (hue, saturation, value, 16 bins each; the largest total-variation distance of the three)
# tell a new shot from motion: panning moves pixels, not the histogram. bench/encode.py part 6:
# at most 0.045 across up to a second of panning, at least 0.23 across a cut.
HISTOGRAM_CHANGE = 0.15


def _adaptive_detector():
    """PySceneDetect's AdaptiveDetector, told which frames follow a gap (`across_gap`).

    It scores each frame against the one before, assuming the two are neighbours. Across a gap
    they are not (motion over a second of frames scores like a cut), so that frame is given the
    median of the last genuine scores instead (a cut just before the gap does not count twice
    in its neighbours' average). This overrides the detector's frame-score method, which is not
    public API: pyproject pins scenedetect below 0.8, and the tests fail if the hook stops
    being called."""
    from scenedetect.detectors import AdaptiveDetector

    class _Adaptive(AdaptiveDetector):
        def __init__(self, **options):
            super().__init__(**options)
            self.across_gap = False
            self._genuine: collections.deque[float] = collections.deque(maxlen=5)

        def _calculate_frame_score(self, timecode, frame_img):
            score = super()._calculate_frame_score(timecode, frame_img)  # also keeps this frame
            if self.across_gap:
                return statistics.median(self._genuine) if self._genuine else 0.0
            self._genuine.append(score)
            return score

    return _Adaptive(adaptive_threshold=ADAPTIVE_THRESHOLD, min_scene_len=MIN_SHOT, min_content_val=MIN_CONTENT)


def _histograms(image: np.ndarray) -> list[np.ndarray]:
    import cv2

    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hists = [cv2.calcHist([hsv], [c], None, [16], [0, 180 if c == 0 else 256]).ravel() for c in range(3)]
    return [h / max(float(h.sum()), 1.0) for h in hists]


def histogram_change(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two BGR images' colours are (0–1, see HISTOGRAM_CHANGE), whatever moved."""
    return max(0.5 * float(np.abs(x - y).sum()) for x, y in zip(_histograms(a), _histograms(b)))


class CutDetector:
    """Call it with each decoded frame, its time and the gap before it, if any (an
    `on_decoded` hook, `video.DecodedHook`); `cuts()` at the end.

    Across a gap the colours decide: unchanged, no cut is looked for there (motion); changed,
    the gap's frames are decoded (`Gap.frames`) and go through the detector like any other,
    so a cut inside a GOP tail the decoder left out is still placed at its frame."""

    def __init__(self, fps: float):
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self._cuts: list[float] = []
        self._detector = _adaptive_detector()
        self._size: tuple[int, int] | None = None
        self._scaler = av.video.reformatter.VideoReformatter()
        self._last: tuple[np.ndarray, float] | None = None  # the last image seen and its time
        self.gaps = 0  # frames seen after a gap (a GOP tail left undecoded, a seek)
        self.filled = 0  # gaps decoded after all, their colours having changed

    def __call__(self, frame: av.VideoFrame, time: float, gap: video.Gap | None = None) -> None:
        image = self._small(frame)
        if gap is not None:
            self.gaps += 1
            if self._last is not None and histogram_change(self._last[0], image) >= HISTOGRAM_CHANGE:
                filled = [(f, t) for f, t in gap.frames() if self._last[1] < t < time]
                if filled:
                    self.filled += 1
                    for f, t in filled:
                        self._feed(self._small(f), t, across_gap=False)
                    gap = None
        self._feed(image, time, across_gap=gap is not None)

    def _small(self, frame: av.VideoFrame) -> np.ndarray:
        if self._size is None:
            height = max(2, round(DETECT_WIDTH * frame.height / max(frame.width, 1) / 2) * 2)
            self._size = (min(DETECT_WIDTH, frame.width), min(height, frame.height))
        width, height = self._size
        image = self._scaler.reformat(frame, width=width, height=height, format="bgr24", interpolation="FAST_BILINEAR")
        return image.to_ndarray()

    def _feed(self, image: np.ndarray, time: float, across_gap: bool) -> None:
        from scenedetect import FrameTimecode

        self._detector.across_gap = across_gap
        found = self._detector.process_frame(FrameTimecode(float(time), self.fps), image)
        self._cuts += [float(tc.seconds) for tc in found]
        self._last = (image, time)

    def cuts(self) -> tuple[float, ...]:
        """Cut times found so far, ascending."""
        return tuple(sorted(set(self._cuts)))


def within(cuts: tuple[float, ...], start: float | None, end: float | None) -> tuple[float, ...]:
    """The cuts strictly inside a sampling's [start, end) (a cut at the start is no cut)."""
    lo, hi = start or 0.0, math.inf if end is None else end
    return tuple(c for c in cuts if lo < c < hi)


def detect(
    path: Path, sampling: video.Sampling | None = None, on_warning: Callable[[str], None] | None = None
) -> tuple[float, ...]:
    """Cuts of a video decoded for them alone: for an encode made before cuts were kept."""
    sampling = sampling or video.Sampling()
    info = video.probe(path)
    if info.is_image:
        return ()
    detector = CutDetector(info.fps)
    for _ in video.iter_frames(path, sampling, size=16, on_warning=on_warning, on_decoded=detector):
        pass
    return within(detector.cuts(), sampling.start, sampling.end)
