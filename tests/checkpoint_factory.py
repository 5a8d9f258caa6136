"""Tiny random LLaMA-VID checkpoints in the on-disk layout of the released ones.

Plain module (no pytest): the fixtures in conftest.py and any ad-hoc script can call it.

What gets written is what transformers 4.31's `save_pretrained` of the original model wrote
for `YanweiLi/llama-vid-*` (docs/method.md §1, docs/released-checkpoints.md): `config.json`
with exactly the released keys, the state dict in 4.31's module order (buffers included: every
LLM layer's `rotary_emb.inv_freq` in the storage dtype and the Q-Former's int64 `position_ids`),
cut into pickled `pytorch_model-0000K-of-0000N.bin` shards the way 4.31's `shard_checkpoint`
cuts (greedily by `max_shard_size`, in key order, so a layer can span two shards) plus
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
from collections.abc import Iterator
from pathlib import Path

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
    "state_dict",
    "shard_checkpoint",
    "config_dict",
    "DEFAULT_MAX_SHARD_SIZE",
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
    """LAVIS BertLMHeadModel (`cls` removed) under `model.vlm_att_encoder.`, in its state-dict order:
    the embeddings' own buffer `position_ids` first, then its children; per layer attention,
    crossattention (every 2nd layer), intermediate, output, intermediate_query, output_query."""
    pre = "model.vlm_att_encoder.bert."
    sd: dict[str, torch.Tensor] = {}
    if include_position_ids:
        sd[pre + "embeddings.position_ids"] = torch.arange(BERT_MAX_POSITIONS, dtype=torch.int64)[None]
    sd[pre + "embeddings.word_embeddings.weight"] = _matrix(gen, BERT_VOCAB_SIZE, width)
    sd[pre + "embeddings.position_embeddings.weight"] = _matrix(gen, BERT_MAX_POSITIONS, width)
    _layernorm(sd, gen, pre + "embeddings.LayerNorm", width)
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


def inv_freq(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """4.31 LlamaRotaryEmbedding's persistent buffer (float32 at init; the linear-scaling variant
    scales positions, not this buffer)."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))


def state_dict(
    seed: int = 0,
    *,
    vocab: int,
    image_size: int = 224,
    include_vision_tower: bool = True,
    include_position_ids: bool = True,
) -> dict[str, torch.Tensor]:
    """The tiny model's state dict as 4.31's `LlavaLlamaAttForCausalLM.state_dict()` orders it (float32).

    nn.Module.state_dict lists a module's own parameters and buffers before its children's, so
    `model.vlm_att_query` (a Parameter of LlavaLlamaAttModel itself) comes first; then the
    children in the order the original registered them: embed_tokens, layers, norm (LlamaModel),
    vision_tower, mm_projector (initialize_vision_modules), vlm_att_encoder, vlm_att_projector,
    vlm_att_key_projector, vlm_att_val_projector, vlm_att_ln (initialize_attention_modules);
    lm_head last.
    """
    gen = torch.Generator().manual_seed(int(seed))
    h, i = TINY_LLM["hidden_size"], TINY_LLM["intermediate_size"]
    v, q = TINY_VISION["hidden_size"], TINY_QFORMER
    d = q["hidden_size"]
    sd: dict[str, torch.Tensor] = {"model.vlm_att_query": _matrix(gen, 1, NUM_QUERY, d)}
    sd["model.embed_tokens.weight"] = _matrix(gen, vocab, h)
    head_dim = h // TINY_LLM["num_attention_heads"]
    for n in range(TINY_LLM["num_hidden_layers"]):
        p = f"model.layers.{n}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"self_attn.{proj}.weight"] = _matrix(gen, h, h)
        sd[p + "self_attn.rotary_emb.inv_freq"] = inv_freq(head_dim)
        sd[p + "mlp.gate_proj.weight"] = _matrix(gen, i, h)
        sd[p + "mlp.up_proj.weight"] = _matrix(gen, i, h)
        sd[p + "mlp.down_proj.weight"] = _matrix(gen, h, i)
        sd[p + "input_layernorm.weight"] = _norm_weight(gen, h)
        sd[p + "post_attention_layernorm.weight"] = _norm_weight(gen, h)
    sd["model.norm.weight"] = _norm_weight(gen, h)
    if include_vision_tower:
        tower = _eva_state(
            seed,
            width=v,
            layers=TINY_VISION["num_hidden_layers"],
            mlp=TINY_VISION["intermediate_size"],
            image_size=image_size,
        )
        sd.update({"model.vision_tower.vision_tower." + k: t for k, t in tower.items()})
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
    _linear(sd, gen, "model.vlm_att_projector", v, d)
    _linear(sd, gen, "model.vlm_att_key_projector", v, v)
    _linear(sd, gen, "model.vlm_att_val_projector", h, v)
    _layernorm(sd, gen, "model.vlm_att_ln", v)
    sd["lm_head.weight"] = _matrix(gen, vocab, h)
    return sd


# --------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------


def config_dict(kind: str, compress_type: str | None, vocab: int, max_pos: int, image_size: int) -> dict:
    """config.json: exactly the released key set of the kind (docs/released-checkpoints.md),
    released values except for the sizes, plus our two tiny-size entries."""
    long = kind == "long"
    cfg = {
        "_name_or_path": _NAME_OR_PATH[kind].format(size=image_size),
        "architectures": ["LlavaLlamaAttForCausalLM"],
        "bert_type": "qformer_pretrain_freeze" if long else "qformer_pretrain",
        "bos_token_id": 1,
        "compress_type": compress_type,
        "eos_token_id": 2,
        "freeze_mm_mlp_adapter": False,
        "hidden_act": "silu",
        "hidden_size": TINY_LLM["hidden_size"],
        "image_aspect_ratio": "pad",
        "image_grid_pinpoints": None,
        "image_processor": f"./llamavid/processor/clip-patch14-{image_size}",
        "initializer_range": 0.02,
        "intermediate_size": TINY_LLM["intermediate_size"],
        "max_position_embeddings": max_pos,
        "max_token": 4096,
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
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.31.0",
        "tune_mm_mlp_adapter": False,
        "use_cache": True,
        "use_mm_proj": True,
        "vocab_size": vocab,
    }
    if long:
        del cfg["num_query"]
        cfg.update(
            {
                "cross_att_freq": 2,
                "debug_use": False,
                "fusion_type": "attention_concat_all_query",
                "image_processor": "./model_zoo/OpenAI/clip-vit-large-patch14",
                "max_token": 65536,
                "num_qformer": NUM_QUERY,
                "position_type": None,
                "rope_scaling": {"factor": 16.0, "type": "linear"},
                "use_raw_query_trans": False,
            }
        )
    if kind == "image":
        del cfg["compress_type"]  # the image releases carry no compress_type at all
    cfg = dict(sorted(cfg.items()))  # 4.31 writes config.json with sorted keys
    # not in the releases: our loader reads these so the tests stay tiny
    cfg["vision_config"] = dict(TINY_VISION)
    cfg["qformer_config"] = dict(TINY_QFORMER)
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
    "the person",
    "a young woman",
    "the old man",
    "the villain",
    "the hero",
    "a little boy",
    "the dog",
    "the cat",
    "the detective",
    "the teacher",
    "a tall stranger",
    "the driver",
]
_VERBS = [
    "walks into",
    "looks at",
    "runs across",
    "stands near",
    "points at",
    "sits beside",
    "jumps over",
    "talks about",
    "moves toward",
    "leaves",
]
_OBJECTS = [
    "the door",
    "the kitchen",
    "the car",
    "the window",
    "the table",
    "the bridge",
    "the river",
    "the stage",
    "the house",
    "the camera",
    "the street",
    "the garden",
]
_WHEN = [
    "in the first frame",
    "at the start of the video",
    "later in the movie",
    "in the last scene",
    "during the chat",
    "after a few seconds",
    "before the music stops",
]
_QUESTIONS = [
    "What does {s} do {w}?",
    "Where is {s} {w}?",
    "Why does {s} look sad {w}?",
    "Can you describe {s} {w}?",
    "Who is with {s} {w}?",
    "How does {s} react {w}?",
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
        {
            "_from_model_config": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "transformers_version": "4.31.0",
        },
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


DEFAULT_MAX_SHARD_SIZE = 400_000  # bytes; the tiny fp32 model then cuts inside LLM layer 1, as 10GB cuts the 7B


def _size_to_int(size: int | str) -> int:
    """4.31's convert_file_size_to_int: an int, or "10GB" (10**9) / "10GiB" (2**30) style strings."""
    if isinstance(size, int):
        return size
    units = {"GIB": 2**30, "MIB": 2**20, "KIB": 2**10, "GB": 10**9, "MB": 10**6, "KB": 10**3}
    for unit, factor in units.items():
        if size.upper().endswith(unit):
            return int(float(size[: -len(unit)]) * factor)
    raise ValueError(f"not a file size: {size!r}")


def shard_checkpoint(state: dict[str, torch.Tensor], max_shard_size: int | str) -> list[dict[str, torch.Tensor]]:
    """Cut a state dict as transformers 4.31's `shard_checkpoint`: in key order, a new shard starts
    when the next tensor would take the current one past `max_shard_size` (so one shard can end in
    the middle of a layer); a tensor larger than the limit gets a shard of its own."""
    limit = _size_to_int(max_shard_size)
    shards: list[dict[str, torch.Tensor]] = [{}]
    current = 0
    for key, tensor in state.items():
        size = tensor.numel() * tensor.element_size()
        if current + size > limit and shards[-1]:
            shards.append({})
            current = 0
        shards[-1][key] = tensor
        current += size
    return shards


def expected_keys(*, include_vision_tower: bool = True, include_position_ids: bool = True) -> set[str]:
    """Every key write_checkpoint puts in the shards (for tests of the layout)."""
    return set(
        state_dict(0, vocab=8, include_vision_tower=include_vision_tower, include_position_ids=include_position_ids)
    )


def write_checkpoint(
    folder: Path,
    *,
    kind: str = "video",
    compress_type: str | None = "mean",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    include_vision_tower: bool = True,
    include_position_ids: bool = True,
    max_position_embeddings: int = 4096,
    image_size: int = 224,
) -> Path:
    """Write a tiny random LLaMA-VID checkpoint in the released layout into `folder`.

    kind: "video" (short video, `compress_type` as given, default "mean"), "long" (long-video
    model: linear RoPE ×16, max_token 65536, compress_type "mean_concat" whatever is passed,
    image_processor clip-vit-large-patch14, i.e. 224 px) or "image" (no `compress_type` key,
    `image_processor` ending in the image size). Shards are cut as 4.31 cut them
    (`shard_checkpoint`); one shard is written as `pytorch_model.bin` without an index, as 4.31
    did. Returns `folder`.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, not {kind!r}")
    if kind == "long":
        compress_type = "mean_concat"
        if image_size != 224:
            raise ValueError("the long-video config names a 224 px image processor")
    elif kind == "image":
        compress_type = None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    sp_model = tokenizer_model_bytes()
    vocab = _sp_vocab_size(sp_model)
    _write_tokenizer(folder, sp_model)
    _dump(folder / "config.json", config_dict(kind, compress_type, vocab, max_position_embeddings, image_size))

    state = {
        k: _cast(v, dtype)
        for k, v in state_dict(
            seed,
            vocab=vocab,
            image_size=image_size,
            include_vision_tower=include_vision_tower,
            include_position_ids=include_position_ids,
        ).items()
    }
    shards = shard_checkpoint(state, max_shard_size)

    for old in list(folder.glob("pytorch_model*.bin")) + list(folder.glob("pytorch_model.bin.index.json")):
        old.unlink()
    if len(shards) == 1:
        torch.save(shards[0], folder / "pytorch_model.bin")
        return folder
    weight_map: dict[str, str] = {}
    for n, shard in enumerate(shards, start=1):
        name = f"pytorch_model-{n:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, folder / name)
        weight_map.update((k, name) for k in shard)
    total = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
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
    sd = _eva_state(
        seed, width=width, layers=layers, mlp=mlp, image_size=image_size, extra_blocks=1 if extra_block else 0
    )
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
    """bert-base-uncased's vocab.txt as our package ships it (src/llamavid_cli/data)."""
    from importlib.resources import files

    return Path(str(files("llamavid_cli") / "data" / "bert-base-uncased-vocab.txt"))


def install_bert_tokenizer(hf_home: Path, repo_id: str = BERT_REPO_ID) -> None:
    """Put the real bert-base-uncased vocab.txt into a hub cache as `repo_id` (the original code
    asked for "bert-base-uncased"; the hub now also serves "google-bert/bert-base-uncased")."""
    vocab = _bert_vocab_path()
    snap = _install_snapshot(hf_home, repo_id, _fake_commit(repo_id))
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
