"""Prompts: the vicuna_v1 template, `<image>` splitting and the long-video wrapping (method.md §6, §7).

Tokenisation follows the released tokenizer_config (LLaMA SentencePiece, `legacy: false`):
each piece between `<image>` markers is tokenised on its own, so it gets SentencePiece's own
leading `▁`; BOS only on the first piece; text right after a special token written in the
prompt (`</s>USER`) gets no leading `▁`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .llamavid import IMAGE_PLACEHOLDER

IMAGE_TOKEN = "<image>"
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
USER, ASSISTANT = "USER", "ASSISTANT"
SEP, SEP2 = " ", "</s>"
MOVIE_START = "Below is a movie. Memorize the content and answer my question after watching this movie."
MOVIE_END = "Now the movie end."


class LlamaTokenizer:
    """LLaMA SentencePiece with the `legacy: false` rules, exact to the released tokenizer."""

    def __init__(self, model_file: Path):
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as model_pb2

        data = Path(model_file).read_bytes()
        self.sp = spm.SentencePieceProcessor(model_proto=data)
        proto = model_pb2.ModelProto()
        proto.ParseFromString(data)
        proto.normalizer_spec.add_dummy_prefix = False
        self.sp_bare = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())  # no leading ▁
        self.bos_id, self.eos_id, self.unk_id = self.sp.bos_id(), self.sp.eos_id(), self.sp.unk_id()
        self.specials = {self.sp.id_to_piece(i): i for i in (self.bos_id, self.eos_id, self.unk_id) if i >= 0}
        self._split = re.compile("(" + "|".join(re.escape(s) for s in self.specials) + ")")

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = [self.bos_id] if bos else []
        after_special = False
        for part in self._split.split(text):
            if part in self.specials:
                ids.append(self.specials[part])
                after_special = True
            elif part:
                ids.extend((self.sp_bare if after_special else self.sp).encode(part))
                after_special = False
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of the ids, special tokens left out."""
        return self.sp.decode([i for i in ids if i not in self.specials.values()])


def tokenize_prompt(tokenizer: LlamaTokenizer, prompt: str) -> list[int]:
    """Split on `<image>`, tokenise each piece alone, put IMAGE_PLACEHOLDER between pieces."""
    ids: list[int] = []
    for i, piece in enumerate(prompt.split(IMAGE_TOKEN)):
        if i:
            ids.append(IMAGE_PLACEHOLDER)
        ids.extend(tokenizer.encode(piece, bos=i == 0))
    return ids


@dataclass
class Conversation:
    """A vicuna_v1 chat: finished (question, answer) turns plus the question being asked.

    The image placeholder travels with the latest user message only, and the Q-Former
    instruction is that latest question (method.md §6).
    """

    history: list[tuple[str, str]] = field(default_factory=list)

    def prompt(self, question: str, video_text: str = IMAGE_TOKEN + "\n") -> str:
        """`video_text` goes in front of the latest question: `<image>\\n` for short videos and
        images, `movie_text(...)` for long-video mode, "" for a text-only turn."""
        text = SYSTEM + SEP
        for asked, answered in self.history:
            text += f"{USER}: {asked}{SEP}{ASSISTANT}: {answered}{SEP2}"
        return text + f"{USER}: {video_text}{question}{SEP}{ASSISTANT}:"

    def add(self, question: str, answer: str) -> None:
        self.history.append((question, answer.strip()))


def movie_text(subtitles_per_frame: list[list[str]]) -> str:
    """Long-video text (method.md §7): `<image><image>` + that frame's subtitles, per frame, then
    the movie wrapper; ends with "\\n" so the question follows on its own line."""
    body = "".join(IMAGE_TOKEN * 2 + " ".join(subs) for subs in subtitles_per_frame)
    return MOVIE_START + body + MOVIE_END + "\n"
