"""The one loader: model spec → a ready LlamaVid with its tokenizers, weights read once.

resolve (folder / hub id / alias) → config.json → will it fit? → modules built without memory
→ shards read once and renamed through KEY_MAP → strict load → dtype, device, optional 4/8-bit
LLM → RoPE frequencies back to exact float32.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoints, defaults
from .config import Compress, ModelConfig, image_size_from_processor, read_config
from .devices import available_bytes, check_fits, gpus_needed, spread_llm
from .errors import CheckpointError, UsageError
from .model.llamavid import LlamaVid, parameters_on_meta
from .model.prompt import LlamaTokenizer
from .model.qformer import load_bert_tokenizer
from .model.vision import resize_pos_embed

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANTIZE = ("none", "8bit", "4bit")
QUANTIZED_BYTES = {"8bit": 1.0, "4bit": 0.5}  # per decoder-linear weight (4bit's scales are ~3% more)


@dataclass
class Loaded:
    model: LlamaVid
    tokenizer: LlamaTokenizer
    config: ModelConfig
    name: str  # what the user asked for, resolved to a hub id where there is one
    folder: Path
    fingerprint: str  # identifies the weights: .vidtok files record it
    device: torch.device
    dtype: torch.dtype
    quantize: str
    long_video: bool  # method.md §7 semantics: the movie checkpoint's, or forced by --long-video
    dtype_reason: str = ""  # why this dtype, for the CLI to print: "float32: the CPU has no fast float16"


def pick_device(device: str = defaults.DEVICE) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        picked = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r} (expected auto, cpu, cuda, cuda:N or mps)") from None
    if picked.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    if picked.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps was asked for but this PyTorch has no MPS support; use --device cpu")
    return picked


def pick_dtype(dtype: str, device: torch.device) -> tuple[torch.dtype, str]:
    """fp16 on GPUs (the released precision), float32 on the CPU where fp16 matmuls are slow;
    returns the dtype and a short reason the CLI can show."""
    if dtype == "auto":
        if device.type == "cpu":
            return torch.float32, "float32: the CPU has no fast float16"
        return torch.float16, f"float16: the released precision, on {device.type}"
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r} (expected auto, {', '.join(DTYPES)})")
    return DTYPES[dtype], f"{dtype}: asked for with --dtype"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def quantized_half(dtype: torch.dtype, target: torch.device) -> torch.dtype:
    """What the unquantized parts (and the compute) use with --quantize: fp16 for a float32 ask on a GPU."""
    return torch.float16 if dtype == torch.float32 and target.type != "cpu" else dtype


def weight_bytes(config: ModelConfig, dtype: torch.dtype, quantize: str = "none") -> int:
    """Bytes the loaded weights take: parameters from the config × bytes per element; with
    --quantize the decoder's linear weights take 1 (8bit) or 0.5 (4bit) byte each."""
    counts = config.parameter_counts()
    size = torch.empty((), dtype=dtype).element_size()
    linears = counts.pop("llm_linears")
    per_linear = QUANTIZED_BYTES[quantize] if quantize != "none" else size
    return int(linears * per_linear + sum(counts.values()) * size)


def memory_options(config: ModelConfig, target: torch.device) -> dict[str, int]:
    """Bytes needed for each way of loading on `target`: each dtype, and 8bit / 4bit."""
    options = {name: weight_bytes(config, dtype) for name, dtype in DTYPES.items()}
    half = quantized_half(torch.float16, target)
    options.update({q: weight_bytes(config, half, q) for q in QUANTIZED_BYTES})
    return options


def check_memory(
    config: ModelConfig, target: torch.device, dtype: torch.dtype, quantize: str, available: int | None
) -> None:
    """Refuse before reading any shard when the weights cannot fit in `available` bytes."""
    options = memory_options(config, target)
    choice = quantize if quantize != "none" else _dtype_name(dtype)
    if quantize != "none":
        options[choice] = weight_bytes(config, quantized_half(dtype, target), quantize)
    where = "the CPU" if target.type == "cpu" else f"{target}" if target.index is not None else "the GPUs"
    check_fits(options, choice, available, where)


def fingerprint(folder: Path, files: list[Path]) -> str:
    """Cheap identity of a checkpoint: config, shard names and sizes (no hashing of gigabytes)."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in files:
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def model_name(spec: str, folder: Path) -> str:
    repo = checkpoints.ALIASES.get(spec, spec)
    return repo if not Path(spec).expanduser().exists() else str(folder)


def identify(spec: str, *, download: bool = True) -> tuple[str, str]:
    """(name, fingerprint) of a checkpoint without reading its weights: lets a command refuse a
    mismatched .vidtok before spending a minute loading the model."""
    folder = checkpoints.resolve(spec, download=download)
    read_config(folder)
    return model_name(spec, folder), fingerprint(folder, checkpoints.shard_files(folder))


def load_state(config: ModelConfig, files: list[Path], eva_weights: Path | None) -> dict[str, torch.Tensor]:
    """Read the shards once and rename to our module tree, the EVA tower included.

    A tower stored in the shards must be for the config's image size (its pos_embed length is
    1 + (S/14)², method.md §3); LAVIS' separate eva_vit_g.pth is for 224 px and its position
    table is resized bicubically to the model's size, as LAVIS does.
    """
    raw = checkpoints.read_weights(files)
    state: dict[str, torch.Tensor] = {}
    eva: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.startswith(checkpoints.VISION_PREFIX):
            eva[key[len(checkpoints.VISION_PREFIX) :]] = value
            continue
        new = checkpoints.rename(key)
        if new is not None:
            state[new] = value
    if eva:
        pos = eva.get("pos_embed")
        if pos is not None:
            image_size_from_processor(config.image_processor, pos.shape[1] if pos.ndim == 3 else -1)
    else:  # older checkpoints: the tower lives in LAVIS' separate file
        eva = checkpoints.load_lavis_eva(eva_weights or checkpoints.default_eva_path())
    vision = checkpoints.convert_eva(eva, config.vision.num_hidden_layers)
    pos = vision.get("embeddings.position_embedding")
    if pos is not None:
        vision["embeddings.position_embedding"] = resize_pos_embed(pos, config.vision.num_patches)
    state.update({f"vision.{k}": v for k, v in vision.items()})
    return state


def assemble(config: ModelConfig, state: dict[str, torch.Tensor]) -> LlamaVid:
    """Build on meta, then load strictly: any missing or unexpected key is named in one line."""
    with parameters_on_meta():
        model = LlamaVid(config)
    expected = set(model.state_dict())  # meta tensors: no memory
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''})")
        if unexpected:
            parts.append(
                f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:3])}{', …' if len(unexpected) > 3 else ''})"
            )
        raise CheckpointError("checkpoint does not match its config.json: " + "; ".join(parts))
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
        raise CheckpointError(f"checkpoint does not match its config.json: {first.strip()}") from None
    return model.eval().requires_grad_(False)


def cast(model: LlamaVid, dtype: torch.dtype) -> None:
    """`model.to(dtype)`, keeping the RoPE inverse frequencies exact float32.

    Module.to(dtype) casts floating buffers too, and transformers' rotary embedding would then
    compute cos/sin from float16-rounded frequencies (method.md: we keep exact RoPE); the
    buffers built at construction (linear ×16 scaling included) are put back after the cast.
    """
    exact = {name: buf.clone() for name, buf in model.named_buffers() if name.endswith("inv_freq")}
    model.to(dtype=dtype)
    for name, value in exact.items():
        owner, _, attr = name.rpartition(".")
        module = model.get_submodule(owner)
        setattr(module, attr, value.to(getattr(module, attr).device))


def place(model: LlamaVid, target: torch.device, dtype: torch.dtype) -> None:
    """Move to `target`; with `cuda` (no index) and an LLM too big for the first GPU, spread the
    LLM's layers over all visible GPUs."""
    cast(model, dtype)
    gpus = [target]
    if target.type == "cuda" and target.index is None:
        llm_bytes = sum(p.numel() * p.element_size() for p in model.llm.parameters())
        gpus = gpus_needed(llm_bytes) or [target]
    if len(gpus) == 1:
        model.to(gpus[0])
        return
    for name, child in model.named_children():
        if name != "llm":
            child.to(gpus[0])
    for param in model.parameters(recurse=False):  # the learned queries
        param.data = param.data.to(gpus[0])
    spread_llm(model.llm, gpus)


def load_model(
    spec: str = checkpoints.DEFAULT_MODEL,
    *,
    device: str = defaults.DEVICE,
    dtype: str = defaults.DTYPE,
    quantize: str = defaults.QUANTIZE,
    eva_weights: Path | None = None,
    download: bool = True,
    long_video: bool | None = None,
) -> Loaded:
    """Everything `ask`, `encode` and `chat` need from a checkpoint, loaded once."""
    if quantize not in QUANTIZE:
        raise UsageError(f"unknown quantization {quantize!r} (expected {', '.join(QUANTIZE)})")
    folder = checkpoints.resolve(spec, download=download)
    config = read_config(folder)
    files = checkpoints.shard_files(folder)
    tokenizer_file = folder / "tokenizer.model"
    if not tokenizer_file.is_file():
        raise CheckpointError(f"{folder} has no tokenizer.model")
    target = pick_device(device)
    torch_dtype, dtype_reason = pick_dtype(dtype, target)
    long_video = config.long_video if long_video is None else long_video
    if long_video and config.compress is not Compress.MEAN:
        raise UsageError("long-video mode needs a model with mean compression (two tokens per frame)")
    vocab = checkpoints.bert_vocab()
    check_memory(config, target, torch_dtype, quantize, available_bytes(target))

    model = assemble(config, load_state(config, files, eva_weights))
    if quantize == "none":
        place(model, target, torch_dtype)
    else:
        from .quantize import quantize_llm

        # The vision tower and Q-Former stay in half precision; only the LLM's linears shrink.
        half = quantized_half(torch_dtype, target)
        cast(model, half)
        quantize_llm(model.llm, quantize, compute_dtype=half)
        model.to(device=target)
        if half != torch_dtype:
            dtype_reason = f"{_dtype_name(half)}: the compute precision of the {quantize} LLM on {target.type}"
        torch_dtype = half
    model.bert_tokenizer = load_bert_tokenizer(vocab)
    return Loaded(
        model=model,
        tokenizer=LlamaTokenizer(tokenizer_file),
        config=config,
        name=model_name(spec, folder),
        folder=folder,
        fingerprint=fingerprint(folder, files),
        device=target,
        dtype=torch_dtype,
        quantize=quantize,
        long_video=long_video,
        dtype_reason=dtype_reason,
    )


def describe(loaded: Loaded) -> dict:
    """What `--json` outputs say about the model in use."""
    return {
        "model": loaded.name,
        "fingerprint": loaded.fingerprint,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "quantize": loaded.quantize,
        "context_length": loaded.config.context_length,
        "long_video": loaded.long_video,
    }
