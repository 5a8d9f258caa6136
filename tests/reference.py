"""An independent, plain-PyTorch LLaMA-VID forward over the *raw released tensors*.

Nothing here imports `llamavid_cli`, transformers' Blip2 / InstructBlip / Llama classes or
any nn.Module: every function takes the state dict exactly as it sits in the released
shards (`model.vision_tower.vision_tower.*`, `model.vlm_att_encoder.bert.*`,
`model.layers.*`, …) and spells the computation out with torch.nn.functional, step by step
as the original code does it:

- EVA-ViT-G: LAVIS `eva_vit.py` (VisionTransformer.forward_features, Attention, Block,
  interpolate_pos_embed);
- Q-Former: LAVIS `Qformer.py` (BertEmbeddings, BertSelfAttention, BertLayer with
  query_length / crossattention / intermediate_query / output_query, the additive
  (1 - mask) * -10000 extended mask);
- the two tokens per frame: LLaMA-VID `llamavid_arch.py` (vlm_attention, token_generation);
- the splice: LLaVA / LLaMA-VID prepare_inputs_labels_for_multimodal;
- the LLM: transformers 4.31 `modeling_llama.py` (RMSNorm in float32, rotary embedding with
  linear scaling t / factor, causal softmax attention in float32, SwiGLU);
- the pixels of a video: LLaMA-VID's `load_video` (frames 0, stride, 2·stride, … with
  stride = round(average_fps), every frame as full-resolution RGB) and CLIP's image
  processor on them (transformers' PIL backend, the shipped config).

It is the test oracle for tests/test_parity.py and must stay free of our own code.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

IMAGE_TOKEN_INDEX = -200  # LLaVA's placeholder id
VISION_PREFIX = "model.vision_tower.vision_tower."
BERT_PREFIX = "model.vlm_att_encoder.bert."

# real sizes (method.md §2, §5.1) when the config carries no tiny overrides
EVA_G = dict(num_hidden_layers=39, num_attention_heads=16)
BERT_BASE = dict(num_hidden_layers=12, num_attention_heads=12)


# --------------------------------------------------------------------------------------
# pixels
# --------------------------------------------------------------------------------------


def original_video_pixels(path: Path, size: int = 224) -> torch.Tensor:
    """[F, 3, S, S] float32 as the original feeds the tower: frames 0, stride, 2·stride, …
    (stride = round(average_fps / 1)), each `to_ndarray("rgb24")`, then CLIP's processor."""
    from transformers import CLIPImageProcessor

    processor_cls = getattr(__import__("transformers"), "CLIPImageProcessorPil", CLIPImageProcessor)
    processor = processor_cls(
        do_resize=True,
        size={"shortest_edge": size},
        resample=3,
        do_center_crop=True,
        crop_size=size,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        do_convert_rgb=True,
    )
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stride = max(1, round(float(stream.average_rate)))
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(container.decode(stream)) if i % stride == 0]
    return processor(images=np.stack(frames), return_tensors="pt")["pixel_values"].float()


# --------------------------------------------------------------------------------------
# raw checkpoint
# --------------------------------------------------------------------------------------


def load_raw(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict with the released key names, config.json) of a checkpoint folder."""
    folder = Path(folder)
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    sd: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        sd.update(torch.load(folder / shard, map_location="cpu", weights_only=True))
    config = json.loads((folder / "config.json").read_text())
    return sd, config


def _sub(config: dict | None, name: str, defaults: dict) -> dict:
    return {**defaults, **((config or {}).get(name) or {})}


def _ln(x, sd, name, eps):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps)


def _lin(x, sd, name):
    return F.linear(x, sd[name + ".weight"], sd.get(name + ".bias"))


# --------------------------------------------------------------------------------------
# EVA-ViT-G (LAVIS eva_vit.py)
# --------------------------------------------------------------------------------------


def interpolate_pos_embed(pos_embed: torch.Tensor, num_patches: int) -> torch.Tensor:
    """LAVIS interpolate_pos_embed: bicubic resize of the patch part, CLS kept, in float32."""
    pos = pos_embed.float()
    width = pos.shape[-1]
    extra = 1  # the CLS token
    orig = int((pos.shape[-2] - extra) ** 0.5)
    new = int(num_patches**0.5)
    if orig == new:
        return pos_embed
    extra_tokens = pos[:, :extra]
    tokens = pos[:, extra:].reshape(-1, orig, orig, width).permute(0, 3, 1, 2)
    tokens = F.interpolate(tokens, size=(new, new), mode="bicubic", align_corners=False)
    tokens = tokens.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra_tokens, tokens), dim=1)


def eva_forward(
    sd: dict[str, torch.Tensor], pixels: torch.Tensor, config: dict | None = None, prefix: str = VISION_PREFIX
) -> torch.Tensor:
    """pixels [B,3,S,S] → last block's hidden states [B,1+P,V], CLS first, no final norm."""
    vc = _sub(config, "vision_config", EVA_G)
    depth, heads = vc["num_hidden_layers"], vc["num_attention_heads"]
    p = prefix

    # PatchEmbed: conv stride = kernel = patch, flatten(2).transpose(1, 2)
    conv_w = sd[p + "patch_embed.proj.weight"]
    x = F.conv2d(pixels, conv_w, sd[p + "patch_embed.proj.bias"], stride=conv_w.shape[-1])
    x = x.flatten(2).transpose(1, 2)  # (B, P, V)
    batch, num_patches, width = x.shape
    cls = sd[p + "cls_token"].expand(batch, -1, -1)
    x = torch.cat((cls, x), dim=1)
    x = x + interpolate_pos_embed(sd[p + "pos_embed"], num_patches).to(x.dtype)

    head_dim = width // heads
    scale = head_dim**-0.5
    for i in range(depth):
        b = f"{p}blocks.{i}."
        # attention: qkv with bias cat(q_bias, 0, v_bias)
        h = _ln(x, sd, b + "norm1", 1e-6)
        q_bias, v_bias = sd[b + "attn.q_bias"], sd[b + "attn.v_bias"]
        qkv_bias = torch.cat((q_bias, torch.zeros_like(v_bias), v_bias))
        qkv = F.linear(h, sd[b + "attn.qkv.weight"], qkv_bias)
        qkv = qkv.reshape(batch, -1, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        h = (attn @ v).transpose(1, 2).reshape(batch, -1, width)
        x = x + _lin(h, sd, b + "attn.proj")
        # MLP: fc1, exact GELU, fc2
        h = _ln(x, sd, b + "norm2", 1e-6)
        h = _lin(F.gelu(_lin(h, sd, b + "mlp.fc1")), sd, b + "mlp.fc2")
        x = x + h
    return x


# --------------------------------------------------------------------------------------
# Q-Former (LAVIS Qformer.py, BertModel with query_embeds)
# --------------------------------------------------------------------------------------


def _attention(hidden, kv_states, sd, name, heads, additive_mask):
    """BertSelfAttention: q from `hidden`, k/v from `kv_states`, scores / sqrt(d) + mask."""

    def split(t):  # (B, T, D) → (B, heads, T, d)
        return t.view(*t.shape[:-1], heads, t.shape[-1] // heads).permute(0, 2, 1, 3)

    q = split(_lin(hidden, sd, name + ".query"))
    k = split(_lin(kv_states, sd, name + ".key"))
    v = split(_lin(kv_states, sd, name + ".value"))
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if additive_mask is not None:
        scores = scores + additive_mask
    ctx = scores.softmax(dim=-1) @ v
    ctx = ctx.permute(0, 2, 1, 3).contiguous()
    return ctx.view(*ctx.shape[:-2], -1)


def _bert_output(h, residual, sd, name, eps):
    """BertSelfOutput / BertOutput: LayerNorm(dense(h) + residual)."""
    return _ln(_lin(h, sd, name + ".dense") + residual, sd, name + ".LayerNorm", eps)


def qformer_forward(
    sd: dict[str, torch.Tensor],
    input_ids: torch.Tensor,
    text_mask: torch.Tensor,
    queries: torch.Tensor,
    encoder_states: torch.Tensor,
    config: dict | None = None,
    prefix: str = BERT_PREFIX,
    eps: float = 1e-12,
) -> torch.Tensor:
    """input_ids/text_mask [B,T], queries [B,Q,D], encoder_states [B,N,E] → last hidden [B,Q+T,D]."""
    heads = _sub(config, "qformer_config", BERT_BASE)["num_attention_heads"]
    p = prefix
    nq = queries.shape[1]

    # BertEmbeddings: word + absolute positions (from 0) for the text, queries in front, LayerNorm
    positions = torch.arange(input_ids.shape[1])
    text = sd[p + "embeddings.word_embeddings.weight"][input_ids]
    text = text + sd[p + "embeddings.position_embeddings.weight"][positions][None]
    x = torch.cat((queries, text), dim=1)
    x = _ln(x, sd, p + "embeddings.LayerNorm", eps)

    # get_extended_attention_mask (encoder, not decoder): [B,1,1,Q+T], (1 - m) * -10000
    mask = torch.cat((torch.ones(queries.shape[:2], dtype=text_mask.dtype), text_mask), dim=1)
    extended = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
    # encoder_attention_mask = ones → inverted to zeros: no effect on the cross-attention

    layer_ids = sorted({int(m.group(1)) for k in sd if (m := re.match(re.escape(p) + r"encoder\.layer\.(\d+)\.", k))})
    for j in layer_ids:
        lp = f"{p}encoder.layer.{j}."
        # self-attention over queries + text with the padding mask
        att = _attention(x, x, sd, lp + "attention.self", heads, extended)
        att = _bert_output(att, x, sd, lp + "attention.output", eps)
        # query positions: cross-attention (layers 0, 2, …) + their own feed-forward
        qh = att[:, :nq]
        if lp + "crossattention.self.query.weight" in sd:
            cross = _attention(qh, encoder_states, sd, lp + "crossattention.self", heads, None)
            qh = _bert_output(cross, qh, sd, lp + "crossattention.output", eps)
        qh = _bert_output(F.gelu(_lin(qh, sd, lp + "intermediate_query.dense")), qh, sd, lp + "output_query", eps)
        # text positions: the ordinary feed-forward
        th = att[:, nq:]
        if th.shape[1]:
            th = _bert_output(F.gelu(_lin(th, sd, lp + "intermediate.dense")), th, sd, lp + "output", eps)
        x = torch.cat((qh, th), dim=1)
    return x


# --------------------------------------------------------------------------------------
# context + content tokens (llamavid_arch.py vlm_attention + token_generation)
# --------------------------------------------------------------------------------------


def bert_text(bert_tokenizer, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The original's vlm_att_tokenlizer call for one prompt: ids and mask [1, T]."""
    tok = bert_tokenizer([instruction], padding="longest", truncation=True, max_length=256, return_tensors="pt")
    return tok.input_ids, tok.attention_mask


def mm_projector(sd: dict[str, torch.Tensor], config: dict, x: torch.Tensor) -> torch.Tensor:
    """LLaVA build_vision_projector: `linear`, or `mlpNx_gelu` = Linear, (GELU, Linear) × (N-1)."""
    kind = config.get("mm_projector_type", "linear")
    if kind == "linear":
        return _lin(x, sd, "model.mm_projector")
    depth = int(re.fullmatch(r"mlp(\d+)x_gelu", kind).group(1))
    x = _lin(x, sd, "model.mm_projector.0")
    for i in range(1, depth):
        x = _lin(F.gelu(x), sd, f"model.mm_projector.{2 * i}")
    return x


def text_queries(
    sd: dict[str, torch.Tensor],
    config: dict,
    bert_feat: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """vlm_att_query + instruction through the Q-Former into ln(bert_feat) → Q [F, 32, V]."""
    frames = bert_feat.shape[0]
    query_tokens = sd["model.vlm_att_query"].expand(frames, -1, -1)
    if "pretrain" in config.get("bert_type", "qformer_pretrain"):
        mm_img_in = _ln(bert_feat, sd, "model.vlm_att_ln", 1e-5)
    else:
        mm_img_in = bert_feat
    out = qformer_forward(
        sd, input_ids.expand(frames, -1), attention_mask.expand(frames, -1), query_tokens, mm_img_in, config
    )
    return _lin(out[:, : query_tokens.shape[1]], sd, "model.vlm_att_projector")


def vlm_tokens(
    sd: dict[str, torch.Tensor],
    config: dict,
    features: torch.Tensor,
    instruction: str,
    bert_tokenizer,
    long_video: bool = False,
) -> torch.Tensor:
    """Per-frame LLM tokens [F, 1+K, H] for one prompt.

    Short video / image: `features` is the tower output with CLS [F,1+P,V].
    Long video: `features` are stored without CLS [F,P,V], as the original kept them.
    """
    frames = features.shape[0]
    input_ids, attention_mask = bert_text(bert_tokenizer, instruction)
    input_ids = input_ids.expand(frames, -1)
    attention_mask = attention_mask.expand(frames, -1)

    img_feat = features
    bert_feat = img_feat.clone()  # no vlm_att_bert_proj: mm_hidden_size == 1408 (or the tiny V)
    # remove cls embedding (mm_vision_select_feature == 'patch' and an odd token count)
    if config.get("mm_vision_select_feature", "patch") == "patch" and img_feat.shape[1] % 2 == 1:
        img_feat = img_feat[:, 1:]

    text_q = text_queries(sd, config, bert_feat, input_ids, attention_mask)  # (F, Q, V)

    # token_generation, part 1: context token
    ctx = text_q @ _lin(img_feat, sd, "model.vlm_att_key_projector").transpose(-1, -2)
    ctx = ctx / (img_feat.shape[-1] ** 0.5)
    ctx = (ctx.softmax(-1) @ img_feat).mean(1)  # (F, V)
    ctx = _lin(ctx[:, None], sd, "model.vlm_att_val_projector")  # (F, 1, H)

    # part 2: content token(s)
    vis = img_feat
    compress = config.get("compress_type")
    if compress is not None:
        if "grid" in compress:
            grid = int(compress.split("grid:")[-1])
            side = int(vis.shape[1] ** 0.5)
            vis = vis.reshape(vis.shape[0], side, side, -1)
            stride = side // grid
            vis = F.avg_pool2d(vis.permute(0, 3, 1, 2), padding=0, kernel_size=stride, stride=stride)
            vis = vis.permute(0, 2, 3, 1).flatten(1, 2)
        elif "mean" in compress:
            vis = vis.mean(dim=1, keepdim=True)
    vis = mm_projector(sd, config, vis)
    return torch.cat([ctx, vis], dim=1)


# --------------------------------------------------------------------------------------
# splice (prepare_inputs_labels_for_multimodal) and the Llama LLM (transformers 4.31)
# --------------------------------------------------------------------------------------


def splice(sd: dict[str, torch.Tensor], prompt_ids: list[int], visual_rows: torch.Tensor) -> torch.Tensor:
    """Input embeddings [L', H]: one placeholder takes every row; else one row per placeholder."""
    embed = sd["model.embed_tokens.weight"]
    ids = torch.tensor(prompt_ids)
    slots = torch.where(ids == IMAGE_TOKEN_INDEX)[0]
    if len(slots) == 1:  # short video / image: the while-loop over image tokens
        s = int(slots[0])
        return torch.cat([embed[ids[:s]], visual_rows.to(embed.dtype), embed[ids[s + 1 :]]])
    # long video: text rows at the text positions, visual rows at the placeholders in order
    assert len(slots) == visual_rows.shape[0], (len(slots), visual_rows.shape)
    out = torch.empty(len(ids), embed.shape[1], dtype=embed.dtype)
    text = torch.where(ids != IMAGE_TOKEN_INDEX)[0]
    out[text] = embed[ids[text]]
    out[slots] = visual_rows.to(embed.dtype)
    return out


def _rms(x, weight, eps):
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rope_factor(config: dict) -> float | None:
    scaling = config.get("rope_scaling")
    if not scaling:
        return None
    assert scaling.get("type", scaling.get("rope_type")) == "linear", scaling
    return float(scaling["factor"])


def llama_logits(
    sd: dict[str, torch.Tensor], config: dict, inputs_embeds: torch.Tensor, *, rope_scale: float | None | str = "config"
) -> torch.Tensor:
    """inputs_embeds [L, H] → logits [L, vocab] (float32), no cache.

    `rope_scale` overrides the config's linear factor (None: unscaled) for sensitivity checks.
    """
    factor = rope_factor(config) if rope_scale == "config" else rope_scale
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    eps = config.get("rms_norm_eps", 1e-6)
    base = config.get("rope_theta", 10000.0)
    n_layers = config["num_hidden_layers"]

    x = inputs_embeds
    length, width = x.shape
    head_dim = width // heads

    # LlamaLinearScalingRotaryEmbedding: t = arange / factor; emb = cat(freqs, freqs)
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    t = torch.arange(length, dtype=inv_freq.dtype)
    if factor:
        t = t / factor
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)  # (L, d)

    causal = torch.full((length, length), float("-inf")).triu(1)

    for n in range(n_layers):
        p = f"model.layers.{n}."
        h = _rms(x, sd[p + "input_layernorm.weight"], eps)
        q = F.linear(h, sd[p + "self_attn.q_proj.weight"]).view(length, heads, head_dim).transpose(0, 1)
        k = F.linear(h, sd[p + "self_attn.k_proj.weight"]).view(length, kv_heads, head_dim).transpose(0, 1)
        v = F.linear(h, sd[p + "self_attn.v_proj.weight"]).view(length, kv_heads, head_dim).transpose(0, 1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if kv_heads != heads:  # repeat_kv
            k = k.repeat_interleave(heads // kv_heads, dim=0)
            v = v.repeat_interleave(heads // kv_heads, dim=0)
        scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) + causal
        probs = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
        att = (probs @ v).transpose(0, 1).reshape(length, width)
        x = x + F.linear(att, sd[p + "self_attn.o_proj.weight"])

        h = _rms(x, sd[p + "post_attention_layernorm.weight"], eps)
        gate = F.silu(F.linear(h, sd[p + "mlp.gate_proj.weight"]))
        up = F.linear(h, sd[p + "mlp.up_proj.weight"])
        x = x + F.linear(gate * up, sd[p + "mlp.down_proj.weight"])

    x = _rms(x, sd["model.norm.weight"], eps)
    return F.linear(x, sd["lm_head.weight"]).float()


def greedy(sd: dict[str, torch.Tensor], config: dict, inputs_embeds: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Plain greedy decoding: recompute every position from scratch at each step; stop on EOS."""
    eos = config.get("eos_token_id", 2)
    embeds = inputs_embeds
    out: list[int] = []
    for _ in range(max_new_tokens):
        nxt = int(llama_logits(sd, config, embeds)[-1].argmax())
        out.append(nxt)
        if nxt == eos:
            break
        embeds = torch.cat([embeds, sd["model.embed_tokens.weight"][nxt][None]])
    return out
