"""Where in the video an answer comes from: attention-based relevance per frame (issue 9).

Each frame's score is the attention mass that the rows producing the answer tokens put on that
frame's tokens in the prompt (its context and content tokens), summed over heads and answer
rows, averaged over layers, and normalised over frames so the scores sum to 1. It is read off
the model's own attention, not a trained grounding head: it says where the model looked while
answering, which is often, not always, where the answer is (docs/method.md, "Evidence").

Cost: the prefill stays on SDPA and no L×L matrix is made. The LLM runs with one attention
function registered through transformers' `AttentionInterface` that returns SDPA's output
unchanged and, for the last query row of each call (the row whose output predicts the next
token: the prefill's last position, then the one position of each decode step), adds
softmax(q·Kᵀ·scale + mask) per frame into a [layers, frames] accumulator.

The answer rows are the positions whose outputs are the answer tokens: the last prompt position
(it produces the first token) and each generated token but the last, one row per output id.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from .defaults import EVIDENCE_MOMENTS
from .model.llamavid import IMAGE_PLACEHOLDER

ATTENTION = "llamavid_evidence"  # the name the LLM's config carries while a capture is attached
MERGE_FRACTION = 0.5  # a neighbour joins a moment while its score is at least this share of the peak's
LAYERS = "all"  # which layers' attention is averaged: "all", or "upper" (the upper half); bench/evidence.py


def frame_positions(prompt_ids: Sequence[int], num_frames: int, tokens_per_frame: int) -> torch.Tensor:
    """For each position of the embedded prompt (`LlamaVid.embed_prompt`), the frame whose token
    sits there, or -1 for text. One placeholder takes all F·(1+K) rows; F·(1+K) placeholders take
    one row each (long video: `<image><image>` per frame, subtitles between)."""
    rows = num_frames * tokens_per_frame
    slots = sum(1 for i in prompt_ids if i == IMAGE_PLACEHOLDER)
    if slots not in (1, rows):
        raise ValueError(f"prompt has {slots} image placeholders for {rows} visual tokens")
    out: list[int] = []
    row = 0
    for token in prompt_ids:
        if token != IMAGE_PLACEHOLDER:
            out.append(-1)
            continue
        take = rows if slots == 1 else 1
        out.extend((row + j) // tokens_per_frame for j in range(take))
        row += take
    return torch.tensor(out, dtype=torch.long)


class Capture:
    """Per-layer attention mass of the answer rows on each frame, gathered during `generate`."""

    def __init__(self, positions: torch.Tensor, num_frames: int):
        self.num_frames = num_frames
        self.prompt_length = positions.shape[0]
        # text positions go to an overflow bin (index F) that is dropped
        self._bins = torch.where(positions < 0, num_frames, positions)
        self._mass: dict[int, torch.Tensor] = {}  # layer → [F+1] float32
        self._rows: dict[int, int] = {}

    @property
    def rows(self) -> int:
        """Answer rows captured (one per output id when generation ran with the capture)."""
        return max(self._rows.values(), default=0)

    @contextlib.contextmanager
    def attached(self, llm: nn.Module) -> Iterator[Capture]:
        """Run `llm` with the capturing attention for the duration of the block."""
        layers = [m for m in llm.modules() if hasattr(m, "layer_idx") and hasattr(m, "num_key_value_groups")]
        config = llm.config
        previous = config._attn_implementation
        config._attn_implementation = ATTENTION
        for layer in layers:
            layer._llamavid_capture = self
        try:
            yield self
        finally:
            config._attn_implementation = previous
            for layer in layers:
                del layer._llamavid_capture

    def add(
        self,
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None,
    ) -> None:
        """Softmax of the last query row over all keys, summed over heads, binned by frame.

        query [B,H,Q,d], key [B,KVH,S,d] (the cache's keys, prompt first); GQA shares one key
        head among H/KVH query heads, so the row is grouped instead of repeating the keys."""
        batch, heads, _, dim = query.shape
        kv_heads, keys = key.shape[1], key.shape[2]
        scale = dim**-0.5 if scaling is None else scaling
        q = query[:, :, -1, :].reshape(batch, kv_heads, heads // kv_heads, dim)
        scores = torch.matmul(q, key.transpose(2, 3)) * scale  # [B,KVH,H/KVH,S], in the model's dtype like eager
        if attention_mask is not None:
            mask = attention_mask[:, :, -1:, -keys:]  # [B,1|H,1,S]; broadcast over the grouped heads
            if mask.shape[1] != 1:
                mask = mask.reshape(batch, kv_heads, heads // kv_heads, keys)
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))
            else:
                scores = scores + mask
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        on_prompt = probs[..., : self.prompt_length].sum(dim=(1, 2))  # [B, P]: summed over heads
        if self._bins.device != on_prompt.device:
            self._bins = self._bins.to(on_prompt.device)
        bins = self._bins
        mass = torch.zeros(self.num_frames + 1, dtype=torch.float32, device=on_prompt.device)
        mass.index_add_(0, bins, on_prompt.sum(dim=0))
        layer = module.layer_idx
        if layer in self._mass:
            self._mass[layer] += mass
        else:
            self._mass[layer] = mass
        self._rows[layer] = self._rows.get(layer, 0) + batch

    def layer_mass(self) -> torch.Tensor:
        """[layers, F]: attention mass on each frame, summed over heads and answer rows."""
        if not self._mass:
            return torch.zeros(0, self.num_frames)
        return torch.stack([self._mass[k][: self.num_frames].cpu() for k in sorted(self._mass)])

    def scores(self, layers: str | None = None) -> list[float]:
        """Per-frame relevance: mass averaged over heads, rows and `layers`, normalised over frames."""
        return normalise(self.layer_mass(), layers)


def normalise(layer_mass: torch.Tensor, layers: str | None = None) -> list[float]:
    """[layers, F] mass → F scores summing to 1 (uniform when nothing was captured); `layers`
    defaults to LAYERS."""
    frames = layer_mass.shape[-1]
    layers = layers or LAYERS
    if layers == "upper":
        layer_mass = layer_mass[layer_mass.shape[0] // 2 :]
    elif layers != "all":
        raise ValueError(f"unknown layer choice {layers!r}")
    per_frame = layer_mass.double().mean(dim=0) if layer_mass.shape[0] else torch.zeros(frames, dtype=torch.double)
    total = float(per_frame.sum())
    if frames == 0:
        return []
    if not total > 0 or not math.isfinite(total):
        return [1.0 / frames] * frames
    return (per_frame / total).tolist()


def _attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """SDPA's result, unchanged; the capture (when one is attached to the layer) reads the last row."""
    out = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    capture = getattr(module, "_llamavid_capture", None)
    if capture is not None:
        capture.add(module, query, key, attention_mask, scaling)
    return out


AttentionInterface.register(ATTENTION, _attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, sdpa_mask)  # the same masks SDPA gets


# ---- from scores to moments -------------------------------------------------------------------


@dataclass(frozen=True)
class Moment:
    start: float
    end: float
    score: float  # the share of the evidence in [start, end)

    def as_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "score": self.score}


@dataclass(frozen=True)
class Evidence:
    """Every frame's time and score (time order, summing to 1) and the top moments, best first."""

    times: tuple[float, ...]
    scores: tuple[float, ...]
    duration: float | None
    moments: tuple[Moment, ...] = field(default=())

    def top(self, count: int = EVIDENCE_MOMENTS) -> Evidence:
        """The same scores with the best `count` moments."""
        return Evidence(self.times, self.scores, self.duration, tuple(moments(self, count)))

    def spans(self) -> list[tuple[float, float]]:
        return frame_spans(self.times, self.duration)

    @classmethod
    def from_dict(cls, data: dict, duration: float | None) -> Evidence:
        """Back from `as_dict` (an answer from `llamavid serve`)."""
        frames, found = data["frames"], data["moments"]
        moments = tuple(Moment(m["start"], m["end"], m["score"]) for m in found)
        return cls(tuple(f["time"] for f in frames), tuple(f["score"] for f in frames), duration, moments)

    def as_dict(self) -> dict:
        return {
            "frames": [{"time": round(t, 3), "score": s} for t, s in zip(self.times, self.scores)],
            "moments": [m.as_dict() for m in self.moments],
        }


def make(
    times: Sequence[float], scores: Sequence[float], duration: float | None, count: int = EVIDENCE_MOMENTS
) -> Evidence:
    return Evidence(tuple(times), tuple(scores), duration).top(count)


def frame_spans(times: Sequence[float], duration: float | None) -> list[tuple[float, float]]:
    """The part of the video each frame stands for: from its time to the next frame's; the last
    frame's runs to the end of the video (or one typical frame step when the length is unknown)."""
    if not times:
        return []
    steps = [b - a for a, b in zip(times, times[1:]) if b > a]
    step = sorted(steps)[len(steps) // 2] if steps else 0.0
    last_end = times[-1] + step
    if duration is not None and duration > times[-1]:
        last_end = min(last_end, duration) if steps else duration
    ends = list(times[1:]) + [last_end]
    return [(start, max(end, start)) for start, end in zip(times, ends)]


def moments(evidence: Evidence, count: int) -> list[Moment]:
    """The `count` best moments: the highest frame not yet taken, grown over adjacent frames that
    keep at least MERGE_FRACTION of its score; scored by their share of the evidence, best first."""
    scores = evidence.scores
    spans = evidence.spans()
    taken = [False] * len(scores)
    found: list[tuple[float, int, int]] = []
    for peak in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if len(found) >= count:
            break
        if taken[peak]:
            continue
        floor = scores[peak] * MERGE_FRACTION
        lo = hi = peak
        while lo > 0 and not taken[lo - 1] and scores[lo - 1] >= floor:
            lo -= 1
        while hi + 1 < len(scores) and not taken[hi + 1] and scores[hi + 1] >= floor:
            hi += 1
        for i in range(lo, hi + 1):
            taken[i] = True
        found.append((sum(scores[lo : hi + 1]), lo, hi))
    found.sort(key=lambda m: (-m[0], m[1]))
    return [Moment(spans[lo][0], spans[hi][1], score) for score, lo, hi in found]
