"""Context and content tokens: the two halves of "an image is worth 2 tokens" (method.md §5.2–5.4).

Pure functions on tensors, so each formula can be checked against a plain computation.
Shapes: F frames, Q text queries (32), P patches (256 at 224 px), V vision width (1408),
H LLM width.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import Compress


def context_tokens(
    queries: torch.Tensor, patches: torch.Tensor, key_projector: nn.Module, val_projector: nn.Module
) -> torch.Tensor:
    """Question-guided attention over a frame's patches, pooled into one token.

    queries [F, Q, V] (Q-Former output after vlm_att_projector), patches [F, P, V] → [F, 1, H].
    The values are the raw patches, not the projected keys (method.md §5.2).
    """
    keys = key_projector(patches)  # (F, P, V)
    scores = queries @ keys.transpose(-1, -2) / patches.shape[-1] ** 0.5  # (F, Q, P)
    attended = scores.softmax(dim=-1) @ patches  # (F, Q, V)
    pooled = attended.mean(dim=1)  # (F, V): mean over the queries
    return val_projector(pooled[:, None])  # (F, 1, H)


def pool_patches(patches: torch.Tensor, compress: Compress, grid_size: int | None = None) -> torch.Tensor:
    """Compress a frame's patches before the content projector: [F, P, V] → [F, K, V]."""
    if compress is Compress.MEAN:
        return patches.mean(dim=1, keepdim=True)  # (F, 1, V)
    if compress is Compress.GRID:
        frames, num, width = patches.shape
        side = int(num**0.5)
        stride = side // grid_size
        grid = patches.reshape(frames, side, side, width).permute(0, 3, 1, 2)  # (F, V, side, side)
        pooled = nn.functional.avg_pool2d(grid, kernel_size=stride, stride=stride)  # (F, V, N, N)
        return pooled.permute(0, 2, 3, 1).flatten(1, 2)  # (F, N², V), row-major
    return patches  # Compress.NONE: every patch is a content token


def content_tokens(
    patches: torch.Tensor, compress: Compress, grid_size: int | None, projector: nn.Module
) -> torch.Tensor:
    """[F, P, V] → [F, K, H]: pooled patches through mm_projector."""
    return projector(pool_patches(patches, compress, grid_size))


def interleave(context: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Per frame [context, content…], frames in time order: [F,1,H] + [F,K,H] → [F·(1+K), H]."""
    return torch.cat([context, content], dim=1).flatten(0, 1)
