"""One encoded video in memory: what `encode_source` makes, a .vidtok holds and the cache keeps.

Frozen, like whisper's `DecodingResult` and transformers' output dataclasses: a step that
changes it (fewer frames, attached cues, notes to show) makes a new one with
`dataclasses.replace` or `select`. `VidtokHeader` is what `vidtok.read_header` reads without
any token data. Importing this module imports neither torch nor the model (the CLI's
`cache list` reads headers without them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .loader import Loaded
    from .model.llamavid import FrameTokens
    from .subtitles import Cue


@dataclass(frozen=True)
class EncodedVideo:
    """A source's frames as LLaMA-VID tokens (method.md §4–§5), and what they were made from.

    `context` and `content` are the tokens made for `prompt` in mode `long_video`; `features`
    (the tower's output, kept on request) give any later question its own context tokens."""

    timestamps: tuple[float, ...]  # seconds, ascending
    context: torch.Tensor  # [N, 1, H] for `prompt`
    content: torch.Tensor  # [N, K, H]
    prompt: str
    model: str
    fingerprint: str  # of the weights that made the tokens
    long_video: bool | None  # the mode the tokens were made in; None: not recorded (older .vidtok)
    features: torch.Tensor | None = None  # [N, T, V] float16 on the CPU
    features_cls: bool = True  # features[:, 0] is the CLS token
    sampling: dict[str, Any] = field(default_factory=dict)  # video.Sampling.as_dict()
    source: dict[str, Any] = field(default_factory=dict)  # name, size, content hash, stream shape
    cues: tuple[Cue, ...] = ()
    notes: tuple[str, ...] = ()  # warnings and notes gathered on the way, for the user
    cuts: tuple[float, ...] | None = None  # shot cuts in seconds (shots.py); None: not looked for

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)

    @property
    def has_features(self) -> bool:
        return self.features is not None

    @property
    def tokens(self) -> FrameTokens:
        from .model.llamavid import FrameTokens

        return FrameTokens(self.context, self.content)

    def select(self, indices: Sequence[int]) -> EncodedVideo:
        """These frames only (a time range, or evenly spaced ones to fit a context)."""
        from dataclasses import replace

        pick = list(indices)
        return replace(
            self,
            timestamps=tuple(self.timestamps[i] for i in pick),
            context=self.context[pick],
            content=self.content[pick],
            features=None if self.features is None else self.features[pick],
        )

    def tokens_for(self, loaded: Loaded, question: str) -> FrameTokens:
        """Context tokens for `question`: from the features when kept (exact for any question and
        mode), else the stored ones, made for `prompt` (a .vidtok without features)."""
        if self.features is None or (question == self.prompt and self.long_video == loaded.long_video):
            return self.tokens
        return loaded.model.frame_tokens(
            self.features, question, has_cls=self.features_cls, long_video=loaded.long_video
        )


@dataclass(frozen=True)
class VidtokHeader:
    """A .vidtok's metadata, tensor shapes and timestamps: no token data read."""

    model: str
    fingerprint: str
    prompt: str
    long_video: bool | None
    features_cls: bool
    sampling: dict[str, Any]
    source: dict[str, Any]
    subtitles: int  # cues stored
    created: str
    tool_version: str
    shapes: dict[str, tuple[int, ...]]  # tensor name → shape
    timestamps: tuple[float, ...]
    cuts: tuple[float, ...] | None = None  # shot cuts in seconds; None: the file has none recorded

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)

    @property
    def has_features(self) -> bool:
        return "features" in self.shapes
