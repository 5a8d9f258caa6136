"""8-bit and 4-bit NF4 LLM weights through bitsandbytes (method.md §8).

Settings as the original's `--load-4bit`: NF4, double quantisation, fp16 compute; 8-bit is
LLM.int8 with outlier threshold 6. Only the Llama decoder's linear layers are quantised; the
embeddings, lm_head, projectors, Q-Former and vision tower keep their precision.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import UsageError


def quantize_llm(llm: nn.Module, mode: str, compute_dtype: torch.dtype = torch.float16) -> None:
    """Swap every nn.Linear inside the decoder layers for its bitsandbytes counterpart, in place."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise UsageError(
            "--quantize needs bitsandbytes: pip install 'llamavid-cli[quant]' "
            "(from a source checkout: pip install -e '.[quant]'; or just pip install bitsandbytes)"
        ) from None
    for layer in llm.model.layers:
        for parent in layer.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, _quantized(bnb, child, mode, compute_dtype))


def _quantized(bnb, linear: nn.Linear, mode: str, compute_dtype: torch.dtype) -> nn.Module:
    weight = linear.weight.data
    has_bias = linear.bias is not None
    if mode == "4bit":
        new = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=has_bias,
            compute_dtype=compute_dtype,
            quant_type="nf4",
            compress_statistics=True,
        )
        new.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=True)
    else:
        new = bnb.nn.Linear8bitLt(
            linear.in_features, linear.out_features, bias=has_bias, has_fp16_weights=False, threshold=6.0
        )
        new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    if has_bias:
        new.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return new
