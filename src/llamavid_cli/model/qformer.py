"""The instruction-guided Q-Former that turns a question into 32 text queries per frame (method.md §5.1).

It is BLIP-2's Q-Former with the instruction appended after the learned queries, as in
InstructBLIP; transformers' `InstructBlipQFormerModel` computes exactly that (queries +
text share self-attention, only queries cross-attend into the frame, queries use their own
feed-forward). The tokenizer is bert-base-uncased with `[DEC]` added as bos, truncating from
the left so a long question keeps its end.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import BertTokenizer
from transformers.models.instructblip.configuration_instructblip import InstructBlipQFormerConfig
from transformers.models.instructblip.modeling_instructblip import InstructBlipQFormerModel

from ..config import QFormerConfig

MAX_INSTRUCTION_TOKENS = 256  # the original's max_length for the Q-Former text


def build_qformer(config: QFormerConfig, encoder_width: int, attn_implementation: str = "sdpa") -> nn.Module:
    hf_config = InstructBlipQFormerConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        hidden_act="gelu",
        max_position_embeddings=config.max_position_embeddings,
        layer_norm_eps=config.layer_norm_eps,
        cross_attention_frequency=config.cross_attention_frequency,
        encoder_hidden_size=encoder_width,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    hf_config._attn_implementation = attn_implementation
    return InstructBlipQFormerModel(hf_config)


def load_bert_tokenizer(vocab_file: Path) -> BertTokenizer:
    """bert-base-uncased WordPiece + `[DEC]` as bos → 30523 ids, left truncation."""
    # transformers 5 takes `vocab=`; an unknown `vocab_file=` would be ignored silently (all [UNK])
    tokenizer = BertTokenizer(vocab=str(vocab_file), do_lower_case=True, truncation_side="left")
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


def tokenize_instruction(tokenizer: BertTokenizer, instruction: str, device: torch.device) -> dict[str, torch.Tensor]:
    """[CLS] instruction [SEP], lower-cased, at most 256 tokens keeping the end → ids and mask [1, T]."""
    encoded = tokenizer([instruction], truncation=True, max_length=MAX_INSTRUCTION_TOKENS, return_tensors="pt")
    return {"input_ids": encoded["input_ids"].to(device), "attention_mask": encoded["attention_mask"].to(device)}
