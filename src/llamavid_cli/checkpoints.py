"""Where a model's files come from, and the one place that reads its weights.

`--model` takes a local folder, a hub id (`YanweiLi/llama-vid-7b-full-224-video-fps-1`) or a
short alias (`vid-7b`). Hub downloads land in the standard Hugging Face cache. Shards are read
once: pickled `.bin` files with `torch.load(weights_only=True)` (memory-mapped), safetensors
with `safe_open`. `KEY_MAP` renames the released keys to our module tree.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from .errors import CheckpointError, DownloadError

if TYPE_CHECKING:  # torch is imported where weights are read, so `llamavid --help` does without it
    import torch

BERT_TOKENIZER_REPO = "google-bert/bert-base-uncased"


@dataclass(frozen=True)
class KnownModel:
    alias: str
    repo_id: str
    kind: str  # "video", "long" or "image"
    size_gb: float  # download size of the fp16 shards, roughly


KNOWN_MODELS = [
    KnownModel("vid-7b", "YanweiLi/llama-vid-7b-full-224-video-fps-1", "video", 14.0),
    KnownModel("vid-13b", "YanweiLi/llama-vid-13b-full-224-video-fps-1", "video", 27.0),
    KnownModel("long-7b", "YanweiLi/llama-vid-7b-full-224-long-video", "long", 14.0),
    KnownModel("image-7b", "YanweiLi/llama-vid-7b-full-224", "image", 14.0),
    KnownModel("image-7b-336", "YanweiLi/llama-vid-7b-full-336", "image", 14.0),
    KnownModel("image-13b-336", "YanweiLi/llama-vid-13b-full-336", "image", 27.0),
]
ALIASES = {m.alias: m.repo_id for m in KNOWN_MODELS}
DEFAULT_MODEL = "vid-7b"

# Files a checkpoint needs; the hub repos also hold training leftovers we do not fetch.
CHECKPOINT_PATTERNS = ["*.json", "*.bin", "*.safetensors", "tokenizer.model"]


def resolve(model: str, *, download: bool = True) -> Path:
    """Turn an alias, hub id or folder into a local checkpoint folder, downloading if needed."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CheckpointError(f"{model} is a file; --model wants a checkpoint folder, a hub id or an alias")
        return path
    repo_id = ALIASES.get(model, model)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise CheckpointError(
            f"unknown model {model!r}: not a folder, a hub id (owner/name) or an alias ({', '.join(ALIASES)})"
        )
    return _snapshot(repo_id, CHECKPOINT_PATTERNS, download=download, what=f"model {repo_id}")


def is_cached(model: str) -> bool:
    """Whether resolve() would succeed without the network."""
    try:
        shard_files(resolve(model, download=False))
    except (DownloadError, CheckpointError):
        return False
    return True


def hub_file(repo_id: str, filename: str) -> Path:
    """One file from the hub cache (downloaded on first use), e.g. BERT's vocab.txt."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise DownloadError(
            f"{filename} of {repo_id} is not in the Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}); connect once, or run `hf download {repo_id} {filename}`"
        ) from None


def _snapshot(repo_id: str, patterns: list[str], *, download: bool, what: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=not download))
    except RepositoryNotFoundError:
        raise DownloadError(f"{what} does not exist on the Hugging Face hub (check the id)") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise DownloadError(
            f"{what} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}); run `llamavid models pull {repo_id}` on a connected machine "
            "or pass --model /path/to/checkpoint"
        ) from None


# --- shard reading -----------------------------------------------------------------------


def shard_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint, from its index when it has one."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CheckpointError(f"{index} is not a valid shard index") from None
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (folder / f).is_file()]
            if missing:
                raise CheckpointError(f"{folder} lacks shard {missing[0]} named in {index_name}; download it again")
            return [folder / f for f in files]
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (folder / single).is_file():
            return [folder / single]
    raise CheckpointError(f"{folder} holds no weights (no *.bin or *.safetensors shards with an index)")


def read_shard(path: Path) -> dict[str, torch.Tensor]:
    """Read one shard without running arbitrary pickled code."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path.name} is not a readable safetensors file ({exc})") from None
    try:
        # mmap keeps a 10 GB shard out of RAM until a tensor is actually used.
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path.name} holds something other than plain tensors; refusing to unpickle it "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path.name} is damaged or not a PyTorch weight file ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path.name} holds something other than a dict of tensors")
    return data


def read_weights(files: Iterable[Path], keep: Callable[[str], bool] = lambda k: True) -> dict[str, torch.Tensor]:
    """Merge shards into one state dict of the keys `keep` accepts."""
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update((k, v) for k, v in read_shard(path).items() if keep(k))
    return state


# --- the key map: released names → our module tree ----------------------------------------

# Ordered (pattern, replacement) pairs; the first match wins. Keys that match no pattern are
# reported as unexpected by the strict load. `None` drops a key we recompute ourselves.
KEY_MAP: list[tuple[str, str | None]] = [
    # Llama LLM (method.md §1): LlamaForCausalLM names under `llm.`
    (r"^(model\.(?:embed_tokens|layers|norm)\..*)$", r"llm.\1"),
    (r"^lm_head\.(.*)$", r"llm.lm_head.\1"),
    # content projector
    (r"^model\.mm_projector\.(.*)$", r"mm_projector.\1"),
    # Q-Former: LAVIS BERT names → transformers' InstructBlipQFormerModel names
    (r"^model\.vlm_att_encoder\.bert\.embeddings\.position_ids$", None),
    (r"^model\.vlm_att_encoder\.bert\.embeddings\.LayerNorm\.(.*)$", r"qformer.embeddings.layernorm.\1"),
    (r"^model\.vlm_att_encoder\.bert\.(.*)\.(attention|crossattention)\.self\.(.*)$", r"qformer.\1.\2.attention.\3"),
    (r"^model\.vlm_att_encoder\.bert\.(.*)$", r"qformer.\1"),
    (r"^model\.vlm_att_query$", r"query_tokens"),
    (r"^model\.vlm_att_ln\.(.*)$", r"att_ln.\1"),
    (r"^model\.vlm_att_projector\.(.*)$", r"att_projector.\1"),
    (r"^model\.vlm_att_key_projector\.(.*)$", r"key_projector.\1"),
    (r"^model\.vlm_att_val_projector\.(.*)$", r"val_projector.\1"),
    # EVA-ViT-G (LAVIS names) → transformers' Blip2 vision embeddings + encoder
    (r"^model\.vision_tower\.vision_tower\.(.*)$", r"vision.\1"),
]

EVA_KEY_MAP: list[tuple[str, str]] = [
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.(.*)$", r"embeddings.patch_embedding.\1"),
    (r"^blocks\.(\d+)\.norm1\.(.*)$", r"encoder.layers.\1.layer_norm1.\2"),
    (r"^blocks\.(\d+)\.norm2\.(.*)$", r"encoder.layers.\1.layer_norm2.\2"),
    (r"^blocks\.(\d+)\.attn\.qkv\.weight$", r"encoder.layers.\1.self_attn.qkv.weight"),
    (r"^blocks\.(\d+)\.attn\.proj\.(.*)$", r"encoder.layers.\1.self_attn.projection.\2"),
    (r"^blocks\.(\d+)\.mlp\.(fc[12])\.(.*)$", r"encoder.layers.\1.mlp.\2.\3"),
]
VISION_PREFIX = "model.vision_tower.vision_tower."


def rename(key: str) -> str | None:
    """Our module path for a released key, None for keys we drop; unknown keys pass unchanged."""
    for pattern, replacement in KEY_MAP:
        if re.match(pattern, key):
            return None if replacement is None else re.sub(pattern, replacement, key)
    return key


def convert_eva(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """LAVIS EVA tower weights → Blip2 vision names; q/v biases fuse into one qkv bias.

    LAVIS' eva_vit_g.pth holds more blocks than the 39 that BLIP-2 uses; extra blocks and the
    classification head are ignored, as the original's non-strict load did.
    """
    import torch

    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        block = re.match(r"^blocks\.(\d+)\.", key)
        if block and int(block.group(1)) >= num_layers:
            continue
        bias = re.match(r"^blocks\.(\d+)\.attn\.q_bias$", key)
        if bias:
            i = bias.group(1)
            v_bias = state[f"blocks.{i}.attn.v_bias"]
            # (q, k, v) bias with no key bias (method.md §2)
            out[f"encoder.layers.{i}.self_attn.qkv.bias"] = torch.cat([value, torch.zeros_like(value), v_bias])
            continue
        for pattern, replacement in EVA_KEY_MAP:
            if re.match(pattern, key):
                out[re.sub(pattern, replacement, key)] = value
                break
    return out


def load_lavis_eva(path: Path) -> dict[str, torch.Tensor]:
    """A LAVIS `eva_vit_g.pth`: the fallback for checkpoints whose shards lack the tower."""
    if not path.is_file():
        raise CheckpointError(
            f"this checkpoint has no vision tower weights and {path} does not exist; download LAVIS' "
            "eva_vit_g.pth and pass it with --eva-weights"
        )
    return read_shard(path)


def default_eva_path() -> Path:
    return Path(os.environ.get("LLAMAVID_EVA_WEIGHTS", "eva_vit_g.pth")).expanduser()
