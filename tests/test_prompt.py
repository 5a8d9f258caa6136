"""Prompts and their token ids (method.md §6, §7), on the tiny checkpoint's SentencePiece model."""

import pytest
import sentencepiece as spm
from transformers import LlamaTokenizer as HFLlamaTokenizer

from llamavid_cli.model.llamavid import IMAGE_PLACEHOLDER
from llamavid_cli.model.prompt import Conversation, LlamaTokenizer, movie_text, tokenize_prompt

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


@pytest.fixture(scope="module")
def sp_file(tiny_video_ckpt):
    return tiny_video_ckpt / "tokenizer.model"


@pytest.fixture(scope="module")
def tok(sp_file):
    return LlamaTokenizer(sp_file)


@pytest.fixture(scope="module")
def sp(sp_file):
    return spm.SentencePieceProcessor(model_file=str(sp_file))


def test_single_turn_prompt_string_is_vicuna_v1():
    assert Conversation().prompt("What is he doing?") == f"{SYSTEM} USER: <image>\nWhat is he doing? ASSISTANT:"


def test_later_turns_move_the_image_to_the_latest_question():
    chat = Conversation([("Who is there?", "A man.")])
    assert chat.prompt("What is he doing?") == (
        f"{SYSTEM} USER: Who is there? ASSISTANT: A man.</s>USER: <image>\nWhat is he doing? ASSISTANT:"
    )


def test_history_keeps_clean_answers():
    chat = Conversation()
    chat.add("Who?", " A man. ")
    assert chat.history == [("Who?", "A man.")]


def test_movie_prompt_wraps_frames_and_subtitles():
    text = movie_text([["Hello there."], [], ["Bye.", "See you."]])
    assert text == (
        "Below is a movie. Memorize the content and answer my question after watching this movie."
        "<image><image>Hello there.<image><image><image><image>Bye. See you.Now the movie end.\n"
    )
    assert Conversation().prompt("Who left?", text).endswith("Now the movie end.\nWho left? ASSISTANT:")


def test_pieces_are_tokenised_separately_with_one_bos_and_a_placeholder(tok, sp):
    prompt = Conversation().prompt("What is in the video?")
    before, after = prompt.split("<image>")
    ids = tokenize_prompt(tok, prompt)
    assert ids == [1] + sp.encode(before) + [IMAGE_PLACEHOLDER] + sp.encode(after)
    # the piece after <image> starts with SentencePiece's own "▁" then the newline byte
    assert sp.id_to_piece(ids[ids.index(IMAGE_PLACEHOLDER) + 1 : ids.index(IMAGE_PLACEHOLDER) + 3]) == ["▁", "<0x0A>"]


def test_text_after_a_written_special_token_gets_no_leading_space(tok, sp):
    ids = tok.encode("yes.</s>USER: hi", bos=False)
    eos = ids.index(2)
    assert ids[:eos] == sp.encode("yes.")
    assert not sp.id_to_piece(ids[eos + 1]).startswith("▁")
    assert tok.decode(ids) == "yes.USER: hi"


def test_long_video_prompt_has_two_placeholders_per_frame(tok):
    ids = tokenize_prompt(tok, Conversation().prompt("Who?", movie_text([[], ["Hi."], []])))
    assert ids.count(IMAGE_PLACEHOLDER) == 6
    assert ids.count(1) == 1  # BOS only once, though every piece was tokenised alone


@pytest.mark.parametrize(
    "text",
    [
        f"{SYSTEM} USER: ",
        "\nWhat is in the video? ASSISTANT:",
        "USER: Who is there? ASSISTANT: A man.</s>USER: ",
        "Numbers 2024 and   spaces\n\nnewlines ünïcode",
    ],
)
def test_matches_transformers_llama_tokenizer(tiny_video_ckpt, tok, text):
    """Ours reads tokenizer.model directly (transformers 5 converts it on every load, which costs
    seconds on the real 32K vocab); on ordinary text it agrees with transformers' LlamaTokenizer."""
    reference = HFLlamaTokenizer.from_pretrained(str(tiny_video_ckpt))
    assert tok.encode(text) == reference(text).input_ids
    assert tok.decode(tok.encode(text)) == reference.decode(reference(text).input_ids, skip_special_tokens=True)


def test_a_piece_starting_with_a_space_keeps_sentencepieces_dummy_prefix(tok, sp):
    """A subtitle can start with a space (" Hello"). SentencePiece, and the slow tokenizer of the
    transformers 4.31 the original ran, prefix "▁" regardless: "▁▁Hello". transformers 5's fast
    Llama tokenizer drops that "▁"; we keep the original's ids."""
    assert tok.encode(" Hello there.", bos=False) == sp.encode(" Hello there.")
    assert sp.id_to_piece(sp.encode(" Hello there.")[0]) == "▁"
