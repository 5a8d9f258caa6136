"""Placing the model: one device, or the LLM's layers spread over several GPUs; and whether
it fits there at all.

Spreading is a plain pipeline split, what `device_map="auto"` does for a decoder: contiguous
blocks of layers per GPU, the vision side and embeddings on the first, the final norm and
lm_head on the last; hooks move activations across and bring the logits back.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .errors import LlamaVidError

GPU_HEADROOM = 0.85  # share of a GPU's free memory the weights may take; the rest is activations


def _to(device: torch.device, value):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(_to(device, v) for v in value)
    if isinstance(value, dict):
        return {k: _to(device, v) for k, v in value.items()}
    return value


def _inputs_to(device: torch.device, module: nn.Module, args: tuple, kwargs: dict):
    return _to(device, args), _to(device, kwargs)


def spread_llm(llm: nn.Module, devices: list[torch.device]) -> list[int]:
    """Split a LlamaForCausalLM's decoder layers over `devices`; return layers per device."""
    layers = llm.model.layers
    per_device = -(-len(layers) // len(devices))  # ceil
    first, last = devices[0], devices[-1]
    llm.model.embed_tokens.to(first)
    llm.model.rotary_emb.to(first)
    counts = [0] * len(devices)
    for i, layer in enumerate(layers):
        device = devices[i // per_device]
        counts[i // per_device] += 1
        layer.to(device)
        layer.register_forward_pre_hook(partial(_inputs_to, device), with_kwargs=True)
    for module in (llm.model.norm, llm.lm_head):
        module.to(last)
        module.register_forward_pre_hook(partial(_inputs_to, last), with_kwargs=True)
    # generate() appends the next token to ids living on the first device
    llm.lm_head.register_forward_hook(lambda module, args, output: output.to(first))
    return counts


def gpus_needed(llm_bytes: int) -> list[torch.device]:
    """All visible GPUs when the LLM does not fit in the first one's free memory, else just it."""
    count = torch.cuda.device_count()
    if count < 2:
        return [torch.device("cuda", 0)] if count else []
    free, _ = torch.cuda.mem_get_info(0)
    if llm_bytes <= GPU_HEADROOM * free:
        return [torch.device("cuda", 0)]
    return [torch.device("cuda", i) for i in range(count)]


# --- memory: refuse before reading gigabytes of shards ------------------------------------


def available_bytes(target: torch.device) -> int | None:
    """Memory the weights can go into: MemAvailable on the CPU, free memory of the GPU(s) the
    model would be placed on (all visible ones for plain `cuda`); None where it cannot be told."""
    if target.type == "cuda":
        indices = [target.index] if target.index is not None else range(torch.cuda.device_count())
        return sum(torch.cuda.mem_get_info(i)[0] for i in indices) or None
    if target.type == "cpu":
        return cpu_available_bytes()
    return None  # mps shares the CPU's memory in ways torch does not report


def cpu_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable (what the kernel can hand out without swapping), else free physical pages."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_fits(needed: dict[str, int], choice: str, available: int | None, where: str) -> None:
    """Refuse in one line when the weights in `choice` cannot fit in `available` bytes.

    needed: bytes per way of loading ("float32", "bfloat16", "8bit", "4bit", …), `choice` among
    them; the message names the ways that would fit.
    """
    if available is None or needed[choice] <= available:
        return
    flags = {
        "float32": "--dtype float32",
        "float16": "--dtype float16",
        "bfloat16": "--dtype bfloat16",
        "8bit": "--quantize 8bit",
        "4bit": "--quantize 4bit",
    }
    fits = [f"{flags[k]} (~{_gb(v)})" for k, v in needed.items() if k != choice and v <= available and k in flags]
    hint = f"; would fit: {', '.join(fits)}" if fits else "; even --quantize 4bit would not fit here"
    raise LlamaVidError(
        f"not enough memory: the weights need ~{_gb(needed[choice])} in {choice} but {where} has "
        f"{_gb(available)} available{hint}"
    )
