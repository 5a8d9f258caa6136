"""config.json of a released LLaMA-VID checkpoint, parsed once into typed, validated fields.

The released configs describe the LLM in the usual Llama fields and the visual side in a
handful of `mm_*` / `bert_type` / `compress_type` strings (method.md §1). Every string is
turned into an explicit value here and anything unknown is refused by name, so nothing
downstream inspects substrings of names or paths. Sizes are range-checked here too, so a
nonsensical config.json is one line naming the field, never an error from tensor creation.
Pure Python: importing this module does not import torch.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError

# Real sizes of the frozen encoders; the released configs do not spell them out (method.md §2, §5.1).
EVA_G = dict(hidden_size=1408, num_hidden_layers=39, num_attention_heads=16, intermediate_size=6144)
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
BERT_VOCAB_SIZE = 30523  # bert-base-uncased (30522) + the [DEC] bos token
PATCH_SIZE = 14


class Compress(enum.Enum):
    """How a frame's patches become content tokens (method.md §5.3)."""

    MEAN = "mean"  # one token: mean over patches
    GRID = "grid"  # N×N average-pooled tokens
    NONE = "none"  # every patch is a token (image models)


@dataclass(frozen=True)
class VisionConfig:
    hidden_size: int = 1408
    num_hidden_layers: int = 39
    num_attention_heads: int = 16
    intermediate_size: int = 6144
    patch_size: int = PATCH_SIZE
    image_size: int = 224
    layer_norm_eps: float = 1e-6

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def parameter_count(self) -> int:
        """Parameters of the tower as we build it (qkv bias 3W: q, a zero k, v)."""
        w, m = self.hidden_size, self.intermediate_size
        embeddings = w + (1 + self.num_patches) * w + w * 3 * self.patch_size**2 + w
        block = 2 * w + (3 * w * w + 3 * w) + (w * w + w) + 2 * w + (m * w + m) + (w * m + w)
        return embeddings + self.num_hidden_layers * block


@dataclass(frozen=True)
class QFormerConfig:
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = BERT_VOCAB_SIZE
    max_position_embeddings: int = 512
    cross_attention_frequency: int = 2
    layer_norm_eps: float = 1e-12

    def parameter_count(self, encoder_width: int) -> int:
        """Parameters of the Q-Former (BERT-base + query feed-forward + cross-attention every 2nd layer)."""
        d, m, v = self.hidden_size, self.intermediate_size, encoder_width
        embeddings = (self.vocab_size + self.max_position_embeddings) * d + 2 * d
        attention_out = (d * d + d) + 2 * d  # dense + LayerNorm
        self_attention = 3 * (d * d + d) + attention_out
        cross_attention = (d * d + d) + 2 * (v * d + d) + attention_out
        feed_forward = (m * d + m) + (d * m + d) + 2 * d  # intermediate + output (dense, LayerNorm)
        total = embeddings
        for layer in range(self.num_hidden_layers):
            total += self_attention + 2 * feed_forward  # text and query feed-forwards
            if layer % self.cross_attention_frequency == 0:
                total += cross_attention
        return total


@dataclass(frozen=True)
class LlmConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    rope_linear_factor: float | None  # linear RoPE scaling (the long-video model: 16)
    bos_token_id: int
    eos_token_id: int

    @property
    def context_length(self) -> int:
        """Positions the model was trained for, scaling included (4K short, 64K long)."""
        return int(self.max_position_embeddings * (self.rope_linear_factor or 1))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def parameter_counts(self) -> tuple[int, int]:
        """(decoder-layer linear weights, everything else): the part `--quantize` shrinks, and the rest."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim
        linears = self.num_hidden_layers * (2 * h * h + 2 * h * kv + 3 * h * i)
        rest = 2 * self.vocab_size * h + self.num_hidden_layers * 2 * h + h  # embed, lm_head, norms
        return linears, rest


@dataclass(frozen=True)
class ModelConfig:
    llm: LlmConfig
    vision: VisionConfig
    qformer: QFormerConfig
    mm_hidden_size: int
    projector_depth: int  # 1 = linear, N = mlpNx_gelu
    compress: Compress
    grid_size: int | None
    drop_cls: bool  # mm_vision_select_feature == "patch"
    qformer_layernorm: bool  # bert_type qformer_pretrain*: vlm_att_ln before the Q-Former
    num_query: int
    long_video: bool  # the movie checkpoint: features stored without CLS (method.md §7)
    pad_images: bool  # image_aspect_ratio == "pad"
    image_processor: str
    max_token: int | None
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def tokens_per_frame(self) -> int:
        """LLM tokens each frame costs: one context token plus the content tokens."""
        if self.compress is Compress.MEAN:
            return 2
        if self.compress is Compress.GRID:
            return 1 + self.grid_size**2
        return 1 + self.vision.num_patches

    @property
    def context_length(self) -> int:
        return self.llm.context_length

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part, from the config alone (the memory check runs before any shard is read)."""
        v, h, d = self.mm_hidden_size, self.llm.hidden_size, self.qformer.hidden_size
        linears, rest = self.llm.parameter_counts()
        multimodal = (
            self.num_query * d
            + (2 * v if self.qformer_layernorm else 0)
            + (d * v + v)
            + (v * v + v)
            + (v * h + h)  # att_projector, key_projector, val_projector
            + (v * h + h)
            + (self.projector_depth - 1) * (h * h + h)  # mm_projector
        )
        return {
            "llm_linears": linears,
            "llm_rest": rest,
            "vision": self.vision.parameter_count(),
            "qformer": self.qformer.parameter_count(v),
            "multimodal": multimodal,
        }


def parse_compress(value: str | None) -> tuple[Compress, int | None]:
    """`mean`, `mean_concat` (the movie model; behaves as mean), `grid:N`, or absent (image models)."""
    if value is None or value == "none":
        return Compress.NONE, None
    if value in ("mean", "mean_concat"):
        return Compress.MEAN, None
    match = re.fullmatch(r"grid:(\d+)", value)
    if match and int(match.group(1)) > 1:
        return Compress.GRID, int(match.group(1))
    raise CheckpointError(f"unknown compress_type {value!r} (expected mean, mean_concat, grid:N with N>1, or none)")


def parse_projector(value: str) -> int:
    """Depth of the content projector: `linear` → 1, `mlpNx_gelu` → N."""
    if value == "linear":
        return 1
    match = re.fullmatch(r"mlp(\d+)x_gelu", value)
    if match and int(match.group(1)) >= 1:
        return int(match.group(1))
    raise CheckpointError(f"unknown mm_projector_type {value!r} (expected linear or mlpNx_gelu)")


def parse_bert_type(value: str) -> bool:
    """Return whether vlm_att_ln is used; only the Q-Former variants were released."""
    match = re.fullmatch(r"qformer(_pretrain)?(_freeze(_all)?)?", value)
    if not match:
        raise CheckpointError(
            f"unknown bert_type {value!r} (expected qformer, qformer_pretrain, qformer_pretrain_freeze "
            "or qformer_pretrain_freeze_all)"
        )
    return match.group(1) is not None


def _rope(raw: dict[str, Any]) -> float | None:
    scaling = raw.get("rope_scaling")
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise CheckpointError(f"rope_scaling in config.json must be an object, not {scaling!r}")
    kind = scaling.get("type", scaling.get("rope_type"))
    if kind != "linear":
        raise CheckpointError(f"unsupported rope_scaling type {kind!r} (only linear scaling was released)")
    return float(scaling["factor"])


def _sub(defaults: dict[str, int], override: Any, name: str) -> dict[str, Any]:
    """Merge an optional small `vision_config` / `qformer_config` (test checkpoints) over real sizes."""
    if override is None:
        return dict(defaults)
    if not isinstance(override, dict):
        raise CheckpointError(f"{name} in config.json must be an object")
    return {**defaults, **override}


def parse_config(raw: dict[str, Any]) -> ModelConfig:
    """Validate a released config.json; refuse what we cannot compute exactly."""
    try:
        compress, grid = parse_compress(raw.get("compress_type"))
        select = raw.get("mm_vision_select_feature", "patch")
        if select not in ("patch", "cls_patch"):
            raise CheckpointError(f"unknown mm_vision_select_feature {select!r} (expected patch or cls_patch)")
        heads = raw["num_attention_heads"]
        llm = LlmConfig(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            intermediate_size=raw["intermediate_size"],
            num_hidden_layers=raw["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=heads if raw.get("num_key_value_heads") is None else raw["num_key_value_heads"],
            max_position_embeddings=raw.get("max_position_embeddings", 4096),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
            rope_theta=float(raw.get("rope_theta", 10000.0)),
            rope_linear_factor=_rope(raw),
            bos_token_id=raw.get("bos_token_id", 1),
            eos_token_id=raw.get("eos_token_id", 2),
        )
        _check_llm(llm)
        image_processor = str(raw.get("image_processor") or "clip-patch14-224")
        vision = VisionConfig(
            **_sub(EVA_G, raw.get("vision_config"), "vision_config"),
            image_size=image_size_from_processor(image_processor),
        )
        _check_encoder(vision, "vision_config")
        qformer = QFormerConfig(**_sub(BERT_BASE, raw.get("qformer_config"), "qformer_config"))
        _check_encoder(qformer, "qformer_config")
        _positive(qformer, "qformer_config", "vocab_size", "max_position_embeddings", "cross_attention_frequency")
        mm_hidden = raw.get("mm_hidden_size", vision.hidden_size)
        if mm_hidden != vision.hidden_size:
            raise CheckpointError(f"mm_hidden_size {mm_hidden} does not match the EVA tower width {vision.hidden_size}")
        if "mm_vision_tower" not in raw:
            raise CheckpointError("config.json has no mm_vision_tower: this is not a LLaMA-VID checkpoint")
        return ModelConfig(
            llm=llm,
            vision=vision,
            qformer=qformer,
            mm_hidden_size=mm_hidden,
            projector_depth=parse_projector(raw.get("mm_projector_type", "linear")),
            compress=compress,
            grid_size=grid,
            drop_cls=select == "patch",
            qformer_layernorm=parse_bert_type(raw.get("bert_type", "qformer_pretrain")),
            num_query=_num_query(raw),
            long_video=raw.get("compress_type") == "mean_concat",
            pad_images=raw.get("image_aspect_ratio") == "pad",
            image_processor=image_processor,
            max_token=_optional_positive(raw, "max_token"),
            raw=raw,
        )
    except KeyError as exc:
        raise CheckpointError(f"config.json lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config.json has a malformed field: {exc}") from None


_SIZE_SUFFIX = re.compile(r"-(224|336)$")


def image_size_from_processor(name: str, pos_embed_len: int | None = None) -> int:
    """Image size S from the config's `image_processor` name, checked against the tower.

    `…-224` and `…clip-vit-large-patch14` mean 224, `…-336` means 336 (method.md §3). When
    the stored `pos_embed` length is given it must equal 1 + (S/14)²; it alone decides when
    the name says nothing, and a disagreement is an error.
    """
    stem = name.strip().rstrip("/\\")
    match = _SIZE_SUFFIX.search(stem)
    from_name = int(match.group(1)) if match else 224 if stem.endswith("clip-vit-large-patch14") else None

    from_weights = None
    if pos_embed_len is not None:
        side = math.isqrt(max(pos_embed_len - 1, 0))
        if pos_embed_len < 2 or side * side != pos_embed_len - 1:
            raise CheckpointError(
                f"the vision tower's pos_embed has {pos_embed_len} positions, which is not 1 + a square number; "
                "the checkpoint is damaged: download it again"
            )
        from_weights = side * PATCH_SIZE

    if from_name is not None and from_weights is not None and from_name != from_weights:
        raise CheckpointError(
            f"image_processor '{name}' says {from_name} px but the vision tower's pos_embed "
            f"({pos_embed_len} positions) is for {from_weights} px; fix image_processor in config.json"
        )
    if from_name is None and from_weights is None:
        raise CheckpointError(
            f"cannot tell the image size from image_processor '{name}' (expected a name ending "
            "in -224, -336 or clip-vit-large-patch14); fix image_processor in config.json"
        )
    return from_name if from_name is not None else from_weights


def _num_query(raw: dict[str, Any]) -> int:
    """Learned queries per frame: `num_query` (short-video / image configs) or `num_qformer` (the long one)."""
    names = [n for n in ("num_query", "num_qformer") if raw.get(n) is not None]
    values = {raw[n] for n in names}
    if len(values) > 1:
        raise CheckpointError(
            f"config.json has num_query {raw['num_query']} and num_qformer {raw['num_qformer']}; keep one"
        )
    value = raw[names[0]] if names else 32
    _require_positive(value, names[0] if names else "num_query")
    return value


# --- range checks: one line naming the field, before any tensor is made ----------------


def _require_positive(value: Any, field_name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CheckpointError(f"config.json field {field_name} must be a positive integer, not {value!r}")


def _positive(obj: Any, prefix: str, *names: str) -> None:
    for n in names:
        _require_positive(getattr(obj, n), f"{prefix}.{n}" if prefix else n)


def _divides(obj: Any, prefix: str, part: str, whole: str, extra: str = "") -> None:
    a, b = getattr(obj, part), getattr(obj, whole)
    if b % a:
        where = f"{prefix}." if prefix else ""
        raise CheckpointError(f"config.json field {where}{part} ({a}) does not divide {where}{whole} ({b}){extra}")


def _optional_positive(raw: dict[str, Any], name: str) -> int | None:
    if raw.get(name) is None:
        return None
    _require_positive(raw[name], name)
    return raw[name]


def _check_encoder(cfg: VisionConfig | QFormerConfig, prefix: str) -> None:
    _positive(cfg, prefix, "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    _divides(cfg, prefix, "num_attention_heads", "hidden_size")
    if not (isinstance(cfg.layer_norm_eps, (int, float)) and cfg.layer_norm_eps > 0):
        raise CheckpointError(
            f"config.json field {prefix}.layer_norm_eps must be a positive number, not {cfg.layer_norm_eps!r}"
        )


def _check_llm(llm: LlmConfig) -> None:
    _positive(
        llm,
        "",
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
    )
    _divides(llm, "", "num_attention_heads", "hidden_size")
    _divides(llm, "", "num_key_value_heads", "num_attention_heads")
    if llm.head_dim % 2:
        raise CheckpointError(
            f"config.json: hidden_size / num_attention_heads = {llm.head_dim} is odd; RoPE needs an even head size"
        )
    for name in ("rms_norm_eps", "rope_theta"):
        value = getattr(llm, name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value)):
            raise CheckpointError(f"config.json field {name} must be a positive number, not {value!r}")
    factor = llm.rope_linear_factor
    if factor is not None and not (math.isfinite(factor) and factor >= 1):
        raise CheckpointError(f"config.json field rope_scaling.factor must be a number ≥ 1, not {factor!r}")
    for name in ("bos_token_id", "eos_token_id"):
        value = getattr(llm, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < llm.vocab_size:
            raise CheckpointError(
                f"config.json field {name} must be a token id below vocab_size {llm.vocab_size}, not {value!r}"
            )


def read_config(folder: Path) -> ModelConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json: point --model at a LLaMA-VID checkpoint folder")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    return parse_config(raw)
