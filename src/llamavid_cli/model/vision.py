"""EVA-ViT-G, the frozen vision tower of BLIP-2 / LAVIS (method.md §2).

transformers' Blip2 vision embeddings and encoder compute exactly this tower: patch 14,
pre-norm blocks with LayerNorm eps 1e-6, a fused qkv with query and value biases only,
exact-erf GELU. What differs is the end: LAVIS' tower has no final norm, so we take the
last block's output and never build Blip2's `post_layernorm`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.blip_2.configuration_blip_2 import Blip2VisionConfig
from transformers.models.blip_2.modeling_blip_2 import Blip2Encoder, Blip2VisionEmbeddings

from ..config import VisionConfig


class EvaVisionTower(nn.Module):
    def __init__(self, config: VisionConfig, attn_implementation: str = "sdpa"):
        super().__init__()
        blip_config = Blip2VisionConfig(
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            image_size=config.image_size,
            patch_size=config.patch_size,
            hidden_act="gelu",  # exact erf GELU, as nn.GELU() in LAVIS
            layer_norm_eps=config.layer_norm_eps,
            qkv_bias=True,
            attention_dropout=0.0,
        )
        blip_config._attn_implementation = attn_implementation
        self.config = config
        self.embeddings = Blip2VisionEmbeddings(blip_config)
        self.encoder = Blip2Encoder(blip_config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, S, S] (normalised) → features [B, 1+P, width], CLS first, no final norm."""
        x = self.embeddings(pixels)  # (B, 1+P, W): CLS + patches + absolute positions
        return self.encoder(inputs_embeds=x).last_hidden_state


def resize_pos_embed(pos_embed: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Bicubic resize of a stored [1, 1+P0, W] position table to 1+P entries, CLS kept (as LAVIS)."""
    stored = pos_embed.shape[1] - 1
    if stored == num_patches:
        return pos_embed
    old, new = int(stored**0.5), int(num_patches**0.5)
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:].float()
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)  # (1, W, old, old)
    grid = nn.functional.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).flatten(1, 2).to(pos_embed.dtype)  # (1, new², W)
    return torch.cat([cls, grid], dim=1)
