"""Where a model's files come from, and the one place that reads its weights.

`--model` takes a local folder, a hub id (`YanweiLi/llama-vid-7b-full-224-video-fps-1`) or a
short alias (`vid-7b`). Hub downloads land in the standard Hugging Face cache. Shards are read
once: pickled `.bin` files with `torch.load(weights_only=True)` (memory-mapped), safetensors
with `safe_open`. `KEY_MAP` renames the released keys to our module tree.

The Q-Former's BERT vocabulary ships with the package (data/, see its NOTICE), so a local
checkpoint folder is all a user needs. Importing this module imports neither torch nor the
hub client: the CLI reads KNOWN_MODELS / ALIASES before deciding whether to load anything.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CheckpointError, DownloadError

if TYPE_CHECKING:
    import torch

# bert-base-uncased's vocab.txt (google-bert/bert-base-uncased on the hub, Apache-2.0, Google),
# shipped as package data; its digest is checked whenever it is read.
BERT_VOCAB_FILE = "bert-base-uncased-vocab.txt"
BERT_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"


@dataclass(frozen=True)
class KnownModel:
    alias: str
    repo_id: str
    kind: str  # "video", "long" or "image"
    size_gb: float  # download size of the fp16 shards, roughly
    # Tokens the LLM holds, as its released config.json gives it: max_position_embeddings × the
    # linear RoPE factor (config.LlmConfig.context_length): 4096 for Vicuna v1.5, 4096 × 16 for
    # the long-video model (released-checkpoints.md). Used before the model is downloaded.
    context_length: int = 4096


KNOWN_MODELS = [
    KnownModel("vid-7b", "YanweiLi/llama-vid-7b-full-224-video-fps-1", "video", 14.0),
    KnownModel("vid-13b", "YanweiLi/llama-vid-13b-full-224-video-fps-1", "video", 27.0),
    KnownModel("long-7b", "YanweiLi/llama-vid-7b-full-224-long-video", "long", 14.0, 4096 * 16),
    KnownModel("image-7b", "YanweiLi/llama-vid-7b-full-224", "image", 14.0),
    KnownModel("image-7b-336", "YanweiLi/llama-vid-7b-full-336", "image", 14.0),
    KnownModel("image-13b-336", "YanweiLi/llama-vid-13b-full-336", "image", 27.0),
]
ALIASES = {m.alias: m.repo_id for m in KNOWN_MODELS}
DEFAULT_MODEL = "vid-7b"
SHORT_VIDEO_MODEL, LONG_VIDEO_MODEL = "vid-7b", "long-7b"  # what `--model auto` chooses between


def known(alias: str) -> KnownModel:
    return next(m for m in KNOWN_MODELS if m.alias == alias)


def context_length(alias: str) -> int:
    """A known model's context, from its config.json when it is in the local cache (nothing is
    downloaded to decide), else the table's value for the released config."""
    from .config import read_config

    try:
        return read_config(resolve(alias, download=False)).context_length
    except (CheckpointError, DownloadError):
        return known(alias).context_length


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


def bert_vocab() -> Path:
    """The packaged bert-base-uncased vocab.txt, its sha256 verified (method.md §5.1)."""
    import hashlib
    from importlib.resources import files as package_files

    path = Path(str(package_files(__package__) / "data" / BERT_VOCAB_FILE))
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        raise CheckpointError(f"the installed package lacks {path}; reinstall llamavid-cli") from None
    if digest != BERT_VOCAB_SHA256:
        raise CheckpointError(
            f"{path} is damaged (sha256 {digest[:12]}…, expected {BERT_VOCAB_SHA256[:12]}…); reinstall llamavid-cli"
        )
    return path


def _how_to_get(repo_id: str) -> str:
    return (
        f"run `llamavid models pull {repo_id}` on a connected machine and copy its Hugging Face cache "
        "(~/.cache/huggingface/hub) here, or pass --model /path/to/checkpoint"
    )


def _snapshot(repo_id: str, patterns: list[str], *, download: bool, what: str) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=not download))
    except RepositoryNotFoundError:
        raise DownloadError(f"{what} does not exist on the Hugging Face hub (check the id)") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        why = f"{what} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE})"
        if download and constants.HF_HUB_OFFLINE:
            why += " and offline mode is on (HF_HUB_OFFLINE), so it cannot be downloaded"
        elif download:
            why += f" and the Hugging Face hub could not be reached ({type(exc).__name__})"
        raise DownloadError(f"{why}; {_how_to_get(repo_id)}") from None


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
    import pickle  # here, not at the top: the CLI reads ALIASES from this module at start-up
    import zipfile

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
# reported as unexpected by the strict load. `None` drops a key.
KEY_MAP: list[tuple[str, str | None]] = [
    # The two buffers transformers 4.31 persisted and we recompute (method.md §1), dropped by
    # this one rule: every LLM layer's RoPE `inv_freq` (stored rounded to the storage dtype; we
    # keep exact float32 frequencies) and the Q-Former's `position_ids` (arange(512)). Nothing
    # else is dropped: any other unknown or missing key is refused by name.
    (
        r"^model\.(?:layers\.\d+\.self_attn\.rotary_emb\.inv_freq|vlm_att_encoder\.bert\.embeddings\.position_ids)$",
        None,
    ),
    # Llama LLM (method.md §1): LlamaForCausalLM names under `llm.`
    (r"^(model\.(?:embed_tokens|layers|norm)\..*)$", r"llm.\1"),
    (r"^lm_head\.(.*)$", r"llm.lm_head.\1"),
    # content projector
    (r"^model\.mm_projector\.(.*)$", r"mm_projector.\1"),
    # Q-Former: LAVIS BERT names → transformers' InstructBlipQFormerModel names
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
