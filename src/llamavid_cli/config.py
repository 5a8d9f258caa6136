"""config.json of a released LLaMA-VID checkpoint, parsed once into typed, validated fields.

The released configs describe the LLM in the usual Llama fields and the visual side in a
handful of `mm_*` / `bert_type` / `compress_type` strings (method.md §1). Every string is
turned into an explicit value here and anything unknown is refused by name, so nothing
downstream inspects substrings of names or paths.
"""

from __future__ import annotations

import enum
import json
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
            num_key_value_heads=raw.get("num_key_value_heads") or heads,
            max_position_embeddings=raw.get("max_position_embeddings", 4096),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
            rope_theta=float(raw.get("rope_theta", 10000.0)),
            rope_linear_factor=_rope(raw),
            bos_token_id=raw.get("bos_token_id", 1),
            eos_token_id=raw.get("eos_token_id", 2),
        )
        image_processor = str(raw.get("image_processor") or "clip-patch14-224")
        vision = VisionConfig(
            **_sub(EVA_G, raw.get("vision_config"), "vision_config"), image_size=_image_size(image_processor)
        )
        qformer = QFormerConfig(**_sub(BERT_BASE, raw.get("qformer_config"), "qformer_config"))
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
            num_query=int(raw.get("num_query", 32)),
            long_video=raw.get("compress_type") == "mean_concat",
            pad_images=raw.get("image_aspect_ratio") == "pad",
            image_processor=image_processor,
            max_token=raw.get("max_token"),
            raw=raw,
        )
    except KeyError as exc:
        raise CheckpointError(f"config.json lacks the field {exc.args[0]!r}") from None
    except TypeError as exc:
        raise CheckpointError(f"config.json has a malformed field: {exc}") from None


def _image_size(processor: str) -> int:
    """224 or 336, from the tail of the authors' image_processor path (method.md §3)."""
    name = processor.rstrip("/").rsplit("/", 1)[-1]
    match = re.search(r"-(\d+)$", name)
    if match:
        return int(match.group(1))
    if name == "clip-vit-large-patch14":
        return 224
    raise CheckpointError(f"cannot tell the image size from image_processor {processor!r}")


def read_config(folder: Path) -> ModelConfig:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder} has no config.json: point --model at a LLaMA-VID checkpoint folder")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc})") from None
    return parse_config(raw)

