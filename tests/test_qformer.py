"""The Q-Former's instruction tokenizer: bert-base-uncased + [DEC], left truncation (method.md §5.1)."""

import torch

from llamavid_cli import checkpoints
from llamavid_cli.model.qformer import MAX_INSTRUCTION_TOKENS, load_bert_tokenizer, tokenize_instruction


def tokenizer():
    return load_bert_tokenizer(checkpoints.bert_vocab())


def test_vocabulary_is_bert_base_uncased_plus_dec():
    tok = tokenizer()
    assert len(tok) == 30523
    assert tok.bos_token == "[DEC]" and tok.convert_tokens_to_ids("[DEC]") == 30522


def test_instruction_is_lower_cased_and_framed_by_cls_and_sep():
    ids = tokenize_instruction(tokenizer(), "What is the MAN doing?", torch.device("cpu"))["input_ids"]
    assert ids.tolist() == [[101, 2054, 2003, 1996, 2158, 2725, 1029, 102]]


def test_a_long_instruction_keeps_its_end():
    text = "word " * 400 + "villain"
    encoded = tokenize_instruction(tokenizer(), text, torch.device("cpu"))
    ids = encoded["input_ids"][0].tolist()
    assert len(ids) == MAX_INSTRUCTION_TOKENS
    assert ids[0] == 101 and ids[-1] == 102
    assert tokenizer().convert_ids_to_tokens(ids[-2]) == "villain"
