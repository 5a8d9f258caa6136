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
over a gap between chosen frames, the next frame is no neighbour of the last one: its score is
taken to be the last genuine one (`_Adaptive`), so no cut is found across the gap, and the
rolling average goes on undisturbed on both sides of it.

The threshold on the adaptive ratio is 2.0, not PySceneDetect's 3.0: with non-reference frames
left undecoded, consecutive frames the detector sees are 1 to 4 frame periods apart, so the
scores of moving footage vary more and its neighbours' average rises. On bench/encode.py's
part 6 clip (panning noisy texture, 8 hard cuts in 20 s, x264 medium) 3.0 missed 3 of the 8
cuts when skipping (none decoding every frame); 2.0 finds all 8, within one frame, and no extra.
MIN_CONTENT still keeps a nearly still shot from cutting on small changes.

A cut's time is the time of the first frame of the new shot, in seconds on the stream's clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import av

from . import video

DETECT_WIDTH = 96  # pixels; the height keeps the aspect ratio (even, at least 2)
MIN_SHOT = 0.5  # seconds: no two cuts closer than this (PySceneDetect's default is 15 frames)
ADAPTIVE_THRESHOLD = 2.0  # score ratio to the neighbours' average (PySceneDetect: 3.0; see below) …
MIN_CONTENT = 15.0  # … and smallest content score that can be a cut


def _adaptive_detector():
    """PySceneDetect's AdaptiveDetector, told which frames follow a gap (`across_gap`).

    It scores each frame against the one before, assuming the two are neighbours. Across a gap
    they are not (motion over a second of frames scores like a cut), so that frame is given the
    last genuine score instead. This overrides the detector's frame-score method, which is not
    public API: pyproject pins scenedetect below 0.8, and the tests fail if the hook stops
    being called."""
    from scenedetect.detectors import AdaptiveDetector

    class _Adaptive(AdaptiveDetector):
        across_gap = False
        _genuine = 0.0

        def _calculate_frame_score(self, timecode, frame_img):
            score = super()._calculate_frame_score(timecode, frame_img)  # also keeps this frame
            if self.across_gap:
                return self._genuine
            self._genuine = score
            return score

    return _Adaptive(adaptive_threshold=ADAPTIVE_THRESHOLD, min_scene_len=MIN_SHOT, min_content_val=MIN_CONTENT)


class CutDetector:
    """Call it with each decoded frame, its time and whether a gap lies before it (an
    `on_decoded` hook, `video.DecodedHook`); `cuts()` at the end."""

    def __init__(self, fps: float):
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self._cuts: list[float] = []
        self._detector = _adaptive_detector()
        self._size: tuple[int, int] | None = None
        self._scaler = av.video.reformatter.VideoReformatter()
        self.gaps = 0  # frames seen after a gap (a GOP tail left undecoded, a seek)

    def __call__(self, frame: av.VideoFrame, time: float, after_gap: bool = False) -> None:
        from scenedetect import FrameTimecode

        self.gaps += after_gap
        self._detector.across_gap = after_gap
        if self._size is None:
            height = max(2, round(DETECT_WIDTH * frame.height / max(frame.width, 1) / 2) * 2)
            self._size = (min(DETECT_WIDTH, frame.width), min(height, frame.height))
        width, height = self._size
        image = self._scaler.reformat(frame, width=width, height=height, format="bgr24", interpolation="FAST_BILINEAR")
        found = self._detector.process_frame(FrameTimecode(float(time), self.fps), image.to_ndarray())
        self._cuts += [float(tc.seconds) for tc in found]

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
