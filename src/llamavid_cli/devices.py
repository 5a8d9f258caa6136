"""Placing the model: one device, or the LLM's layers spread over several GPUs.

Spreading is a plain pipeline split, what `device_map="auto"` does for a decoder: contiguous
blocks of layers per GPU, the vision side and embeddings on the first, the final norm and
lm_head on the last; hooks move activations across and bring the logits back.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

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
