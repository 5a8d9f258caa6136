"""The tiny checkpoints really have the released layout, and the test environment is offline."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

import checkpoint_factory as factory

H = factory.TINY_LLM["hidden_size"]
I = factory.TINY_LLM["intermediate_size"]  # noqa: E741
V = factory.TINY_VISION["hidden_size"]
IV = factory.TINY_VISION["intermediate_size"]
D = factory.TINY_QFORMER["hidden_size"]
IQ = factory.TINY_QFORMER["intermediate_size"]
TOWER = "model.vision_tower.vision_tower."
BERT = "model.vlm_att_encoder.bert."

SHARDS = tuple(f"pytorch_model-0000{n}-of-00005.bin" for n in range(1, 6))  # the tiny fp32 model at the default size
OFFICIAL_FILES = (
    "config.json",
    *SHARDS,
    "pytorch_model.bin.index.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)

# docs/released-checkpoints.md, copied as data: what the released checkpoints hold.
RELEASED_VIDEO_CONFIG_KEYS = {
    "_name_or_path",
    "architectures",
    "bert_type",
    "bos_token_id",
    "compress_type",
    "eos_token_id",
    "freeze_mm_mlp_adapter",
    "hidden_act",
    "hidden_size",
    "image_aspect_ratio",
    "image_grid_pinpoints",
    "image_processor",
    "initializer_range",
    "intermediate_size",
    "max_position_embeddings",
    "max_token",
    "mm_hidden_size",
    "mm_projector_type",
    "mm_use_im_patch_token",
    "mm_use_im_start_end",
    "mm_vision_select_feature",
    "mm_vision_select_layer",
    "mm_vision_tower",
    "model_type",
    "num_attention_heads",
    "num_hidden_layers",
    "num_key_value_heads",
    "num_query",
    "pad_token_id",
    "pretraining_tp",
    "rms_norm_eps",
    "rope_scaling",
    "tie_word_embeddings",
    "torch_dtype",
    "transformers_version",
    "tune_mm_mlp_adapter",
    "use_cache",
    "use_mm_proj",
    "vocab_size",
}
RELEASED_LONG_CONFIG_KEYS = (RELEASED_VIDEO_CONFIG_KEYS - {"num_query"}) | {
    "cross_att_freq",
    "debug_use",
    "fusion_type",
    "num_qformer",
    "position_type",
    "use_raw_query_trans",
}
OUR_TINY_SIZE_KEYS = {"vision_config", "qformer_config"}
# values of the released configs that do not depend on the model's size
RELEASED_VIDEO_VALUES = {
    "architectures": ["LlavaLlamaAttForCausalLM"],
    "bert_type": "qformer_pretrain",
    "compress_type": "mean",
    "image_aspect_ratio": "pad",
    "image_grid_pinpoints": None,
    "image_processor": "./llamavid/processor/clip-patch14-224",
    "max_position_embeddings": 4096,
    "max_token": 4096,
    "mm_projector_type": "mlp2x_gelu",
    "mm_vision_select_feature": "patch",
    "mm_vision_select_layer": -2,
    "mm_vision_tower": "./model_zoo/LAVIS/eva_vit_g.pth",
    "model_type": "llava",
    "num_query": 32,
    "rope_scaling": None,
    "torch_dtype": "float16",
    "transformers_version": "4.31.0",
}
RELEASED_LONG_VALUES = {
    **{k: v for k, v in RELEASED_VIDEO_VALUES.items() if k != "num_query"},
    "bert_type": "qformer_pretrain_freeze",
    "compress_type": "mean_concat",
    "cross_att_freq": 2,
    "debug_use": False,
    "fusion_type": "attention_concat_all_query",
    "image_processor": "./model_zoo/OpenAI/clip-vit-large-patch14",
    "max_token": 65536,
    "num_qformer": 32,
    "position_type": None,
    "rope_scaling": {"factor": 16.0, "type": "linear"},
    "use_raw_query_trans": False,
}
RELEASED_KEY_PATTERNS = set(
    """
lm_head.weight
model.embed_tokens.weight
model.layers.N.input_layernorm.weight
model.layers.N.mlp.down_proj.weight
model.layers.N.mlp.gate_proj.weight
model.layers.N.mlp.up_proj.weight
model.layers.N.post_attention_layernorm.weight
model.layers.N.self_attn.k_proj.weight
model.layers.N.self_attn.o_proj.weight
model.layers.N.self_attn.q_proj.weight
model.layers.N.self_attn.rotary_emb.inv_freq
model.layers.N.self_attn.v_proj.weight
model.mm_projector.N.bias
model.mm_projector.N.weight
model.norm.weight
model.vision_tower.vision_tower.blocks.N.attn.proj.bias
model.vision_tower.vision_tower.blocks.N.attn.proj.weight
model.vision_tower.vision_tower.blocks.N.attn.q_bias
model.vision_tower.vision_tower.blocks.N.attn.qkv.weight
model.vision_tower.vision_tower.blocks.N.attn.v_bias
model.vision_tower.vision_tower.blocks.N.mlp.fc1.bias
model.vision_tower.vision_tower.blocks.N.mlp.fc1.weight
model.vision_tower.vision_tower.blocks.N.mlp.fc2.bias
model.vision_tower.vision_tower.blocks.N.mlp.fc2.weight
model.vision_tower.vision_tower.blocks.N.norm1.bias
model.vision_tower.vision_tower.blocks.N.norm1.weight
model.vision_tower.vision_tower.blocks.N.norm2.bias
model.vision_tower.vision_tower.blocks.N.norm2.weight
model.vision_tower.vision_tower.cls_token
model.vision_tower.vision_tower.patch_embed.proj.bias
model.vision_tower.vision_tower.patch_embed.proj.weight
model.vision_tower.vision_tower.pos_embed
model.vlm_att_encoder.bert.embeddings.LayerNorm.bias
model.vlm_att_encoder.bert.embeddings.LayerNorm.weight
model.vlm_att_encoder.bert.embeddings.position_embeddings.weight
model.vlm_att_encoder.bert.embeddings.position_ids
model.vlm_att_encoder.bert.embeddings.word_embeddings.weight
model.vlm_att_encoder.bert.encoder.layer.N.attention.output.LayerNorm.bias
model.vlm_att_encoder.bert.encoder.layer.N.attention.output.LayerNorm.weight
model.vlm_att_encoder.bert.encoder.layer.N.attention.output.dense.bias
model.vlm_att_encoder.bert.encoder.layer.N.attention.output.dense.weight
model.vlm_att_encoder.bert.encoder.layer.N.attention.self.key.bias
model.vlm_att_encoder.bert.encoder.layer.N.attention.self.key.weight
model.vlm_att_encoder.bert.encoder.layer.N.attention.self.query.bias
model.vlm_att_encoder.bert.encoder.layer.N.attention.self.query.weight
model.vlm_att_encoder.bert.encoder.layer.N.attention.self.value.bias
model.vlm_att_encoder.bert.encoder.layer.N.attention.self.value.weight
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.output.LayerNorm.bias
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.output.LayerNorm.weight
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.output.dense.bias
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.output.dense.weight
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.self.key.bias
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.self.key.weight
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.self.query.bias
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.self.query.weight
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.self.value.bias
model.vlm_att_encoder.bert.encoder.layer.N.crossattention.self.value.weight
model.vlm_att_encoder.bert.encoder.layer.N.intermediate.dense.bias
model.vlm_att_encoder.bert.encoder.layer.N.intermediate.dense.weight
model.vlm_att_encoder.bert.encoder.layer.N.intermediate_query.dense.bias
model.vlm_att_encoder.bert.encoder.layer.N.intermediate_query.dense.weight
model.vlm_att_encoder.bert.encoder.layer.N.output.LayerNorm.bias
model.vlm_att_encoder.bert.encoder.layer.N.output.LayerNorm.weight
model.vlm_att_encoder.bert.encoder.layer.N.output.dense.bias
model.vlm_att_encoder.bert.encoder.layer.N.output.dense.weight
model.vlm_att_encoder.bert.encoder.layer.N.output_query.LayerNorm.bias
model.vlm_att_encoder.bert.encoder.layer.N.output_query.LayerNorm.weight
model.vlm_att_encoder.bert.encoder.layer.N.output_query.dense.bias
model.vlm_att_encoder.bert.encoder.layer.N.output_query.dense.weight
model.vlm_att_key_projector.bias
model.vlm_att_key_projector.weight
model.vlm_att_ln.bias
model.vlm_att_ln.weight
model.vlm_att_projector.bias
model.vlm_att_projector.weight
model.vlm_att_query
model.vlm_att_val_projector.bias
model.vlm_att_val_projector.weight
""".split()
)


def key_patterns(keys) -> set[str]:
    """Released key names with every layer / block number written as N."""
    return {re.sub(r"\.\d+(?=\.|$)", ".N", k) for k in keys}


def _load(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    state: dict[str, torch.Tensor] = {}
    where: dict[str, str] = {}
    for shard in sorted(folder.glob("pytorch_model-*.bin")):
        part = torch.load(shard, weights_only=True, map_location="cpu")
        for k, v in part.items():
            assert k not in state, f"{k} is in two shards"
            state[k] = v
            where[k] = shard.name
    return index, state, where


def test_official_file_names(tiny_video_ckpt: Path):
    assert sorted(p.name for p in tiny_video_ckpt.iterdir()) == sorted(OFFICIAL_FILES)


def test_index_covers_every_key_once(tiny_video_ckpt: Path):
    index, state, where = _load(tiny_video_ckpt)
    assert index["weight_map"] == where
    assert set(state) == factory.expected_keys()
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in state.values())
    text = (tiny_video_ckpt / "pytorch_model.bin.index.json").read_text()
    assert text == json.dumps(index, indent=2, sort_keys=True) + "\n"  # as 4.31 writes it


def test_keys_and_config_are_the_released_ones(tiny_video_ckpt: Path, tiny_long_ckpt: Path):
    """Key for key what docs/released-checkpoints.md lists, for the short and the long model."""
    for folder, keys, values in (
        (tiny_video_ckpt, RELEASED_VIDEO_CONFIG_KEYS, RELEASED_VIDEO_VALUES),
        (tiny_long_ckpt, RELEASED_LONG_CONFIG_KEYS, RELEASED_LONG_VALUES),
    ):
        config = json.loads((folder / "config.json").read_text())
        assert set(config) == keys | OUR_TINY_SIZE_KEYS, folder.name
        assert {k: config[k] for k in values} == values, folder.name
        index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
        assert key_patterns(index["weight_map"]) == RELEASED_KEY_PATTERNS, folder.name


def test_shards_are_cut_like_transformers_4_31(tiny_video_ckpt: Path):
    """State-dict order of the original model, cut greedily at max_shard_size: LLM layer 1 spans
    shards 1 and 2, and a tensor larger than the limit (BERT's word embeddings) has a shard alone."""
    _, _, where = _load(tiny_video_ckpt)
    order: list[str] = []
    for shard in sorted(tiny_video_ckpt.glob("pytorch_model-*.bin")):
        order += list(torch.load(shard, weights_only=True, map_location="cpu"))
    assert order == list(factory.state_dict(0, vocab=8))  # every shard in state-dict order
    assert order[:3] == ["model.vlm_att_query", "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"]
    assert order[-1] == "lm_head.weight"
    layer1 = {where[k] for k in where if k.startswith("model.layers.1.")}
    assert layer1 == {SHARDS[0], SHARDS[1]}
    assert [k for k in where if where[k] == SHARDS[3]] == [BERT + "embeddings.word_embeddings.weight"]
    # greedy: each shard stays under the limit unless it is one oversized tensor, and the next
    # shard's first tensor would not have fitted
    _, state, _ = _load(tiny_video_ckpt)
    sizes = {k: t.numel() * t.element_size() for k, t in state.items()}
    for n, shard in enumerate(SHARDS):
        keys = [k for k in order if where[k] == shard]
        total = sum(sizes[k] for k in keys)
        assert total <= factory.DEFAULT_MAX_SHARD_SIZE or len(keys) == 1
        if n + 1 < len(SHARDS):
            first_next = next(k for k in order if where[k] == SHARDS[n + 1])
            assert total + sizes[first_next] > factory.DEFAULT_MAX_SHARD_SIZE


def test_buffers_431_persisted(tmp_path: Path, tiny_long_ckpt: Path):
    """inv_freq of every LLM layer in the storage dtype, shape [head_dim/2], unscaled even for
    the long model (4.31 scaled positions, not frequencies); position_ids int64 [1, 512]."""
    head_dim = H // factory.TINY_LLM["num_attention_heads"]
    exact = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    half = factory.write_checkpoint(tmp_path / "fp16", dtype=torch.float16)
    for folder, dtype in ((tiny_long_ckpt, torch.float32), (half, torch.float16)):
        _, sd, _ = _load(folder)
        for n in range(factory.TINY_LLM["num_hidden_layers"]):
            buf = sd[f"model.layers.{n}.self_attn.rotary_emb.inv_freq"]
            assert buf.dtype == dtype and buf.shape == (head_dim // 2,)
            assert torch.equal(buf, exact.to(dtype))
        assert sd[BERT + "embeddings.position_ids"].dtype == torch.int64


def test_shapes_and_values(tiny_video_ckpt: Path):
    config = json.loads((tiny_video_ckpt / "config.json").read_text())
    vocab = config["vocab_size"]
    _, sd, _ = _load(tiny_video_ckpt)
    expect = {
        "model.embed_tokens.weight": (vocab, H),
        "lm_head.weight": (vocab, H),
        "model.norm.weight": (H,),
        "model.layers.1.self_attn.o_proj.weight": (H, H),
        "model.layers.1.mlp.gate_proj.weight": (I, H),
        "model.layers.1.mlp.down_proj.weight": (H, I),
        "model.layers.1.post_attention_layernorm.weight": (H,),
        "model.mm_projector.0.weight": (H, V),
        "model.mm_projector.0.bias": (H,),
        "model.mm_projector.2.weight": (H, H),
        BERT + "embeddings.word_embeddings.weight": (30523, D),
        BERT + "embeddings.position_embeddings.weight": (512, D),
        BERT + "embeddings.position_ids": (1, 512),
        BERT + "encoder.layer.0.crossattention.self.key.weight": (D, V),
        BERT + "encoder.layer.0.crossattention.self.value.bias": (D,),
        BERT + "encoder.layer.1.intermediate_query.dense.weight": (IQ, D),
        BERT + "encoder.layer.1.output.dense.weight": (D, IQ),
        "model.vlm_att_query": (1, 32, D),
        "model.vlm_att_ln.weight": (V,),
        "model.vlm_att_projector.weight": (V, D),
        "model.vlm_att_key_projector.weight": (V, V),
        "model.vlm_att_val_projector.weight": (H, V),
        "model.vlm_att_val_projector.bias": (H,),
        TOWER + "cls_token": (1, 1, V),
        TOWER + "pos_embed": (1, 1 + 16 * 16, V),
        TOWER + "patch_embed.proj.weight": (V, 3, 14, 14),
        TOWER + "blocks.1.attn.qkv.weight": (3 * V, V),
        TOWER + "blocks.1.attn.q_bias": (V,),
        TOWER + "blocks.1.mlp.fc1.weight": (IV, V),
        TOWER + "blocks.1.mlp.fc2.weight": (V, IV),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert BERT + "encoder.layer.1.crossattention.self.query.weight" not in sd  # every 2nd layer only
    assert TOWER + "blocks.0.attn.qkv.bias" not in sd
    assert TOWER + "blocks.2.norm1.weight" not in sd
    assert torch.equal(sd[BERT + "embeddings.position_ids"], torch.arange(512)[None])
    assert sd[BERT + "embeddings.position_ids"].dtype == torch.int64
    # biases are non-zero, norms near one
    assert sd["model.mm_projector.0.bias"].abs().min() > 0
    assert (sd["model.norm.weight"] - 1).abs().max() < 0.2
    assert all(t.is_contiguous() for t in sd.values())


def test_configs_per_kind(tiny_video_ckpt, tiny_grid_ckpt, tiny_long_ckpt, tiny_image_ckpt):
    video, grid, long, image = (
        json.loads((p / "config.json").read_text())
        for p in (tiny_video_ckpt, tiny_grid_ckpt, tiny_long_ckpt, tiny_image_ckpt)
    )
    assert video["model_type"] == "llava" and video["architectures"] == ["LlavaLlamaAttForCausalLM"]
    assert video["compress_type"] == "mean" and video["rope_scaling"] is None and video["max_token"] == 4096
    assert video["mm_hidden_size"] == V and video["vision_config"]["hidden_size"] == V
    assert grid["compress_type"] == "grid:2"
    assert long["rope_scaling"] == {"type": "linear", "factor": 16.0}
    assert long["max_token"] == 65536 and long["compress_type"] == "mean_concat"
    assert long["bert_type"] == "qformer_pretrain_freeze" and long["num_qformer"] == 32 and "num_query" not in long
    assert "compress_type" not in image
    assert image["image_processor"] == "./llamavid/processor/clip-patch14-224"


def test_options(tmp_path: Path):
    folder = factory.write_checkpoint(
        tmp_path / "c",
        kind="image",
        image_size=336,
        dtype=torch.float16,
        max_shard_size="2MB",
        include_vision_tower=False,
        include_position_ids=False,
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["image_processor"] == "./llamavid/processor/clip-patch14-336"
    index, sd, where = _load(folder)
    assert sorted(set(where.values())) == [f"pytorch_model-0000{n}-of-00003.bin" for n in (1, 2, 3)]
    assert set(sd) == factory.expected_keys(include_vision_tower=False, include_position_ids=False)
    assert all(t.dtype == torch.float16 for t in sd.values())
    # one shard: a plain pytorch_model.bin without an index, as 4.31 wrote it
    single = factory.write_checkpoint(tmp_path / "one", max_shard_size="1GB")
    assert sorted(p.name for p in single.glob("pytorch_model*")) == ["pytorch_model.bin"]


def test_deterministic_and_seeded(tmp_path: Path, tiny_video_ckpt: Path):
    again = factory.write_checkpoint(tmp_path / "again", seed=0)
    other = factory.write_checkpoint(tmp_path / "other", seed=5)
    _, a, _ = _load(tiny_video_ckpt)
    _, b, _ = _load(again)
    _, c, _ = _load(other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["lm_head.weight"], c["lm_head.weight"])
    assert (tiny_video_ckpt / "tokenizer.model").read_bytes() == (other / "tokenizer.model").read_bytes()


def test_eva_pth_matches_the_shards(tiny_video_ckpt: Path, tiny_eva_pth: Path):
    pth = torch.load(tiny_eva_pth, weights_only=True)
    _, sd, _ = _load(tiny_video_ckpt)
    tower = {k[len(TOWER) :]: v for k, v in sd.items() if k.startswith(TOWER)}
    assert set(pth) == set(tower) | {k.replace("blocks.1.", "blocks.2.") for k in tower if k.startswith("blocks.1.")}
    for k, v in tower.items():
        assert torch.equal(pth[k], v), k
    # the tower depends only on the seed, not on the image size (except pos_embed's length)
    at336 = torch.load(
        factory.write_eva_vit_g(tiny_eva_pth.parent / "336.pth", seed=0, image_size=336), weights_only=True
    )
    assert at336["pos_embed"].shape == (1, 1 + 24 * 24, V)


def test_sentencepiece_round_trip(tiny_video_ckpt: Path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny_video_ckpt / "tokenizer.model"))
    config = json.loads((tiny_video_ckpt / "config.json").read_text())
    assert sp.get_piece_size() == config["vocab_size"]
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert sp.pad_id() == -1
    for text in (
        "Describe the video in detail.",
        "Who is the villain in this movie?\nThe man in the black coat.",
        "  two  spaces, digits 2024, ünïcödé, 日本語 and emoji 🎬",
    ):
        assert sp.decode(sp.encode(text)) == text
    assert sp.encode("\n", out_type=str) == ["▁", "<0x0A>"]  # byte fallback, as in LLaMA
    assert sp.encode("2024", out_type=str) == ["▁", "2", "0", "2", "4"]  # split digits


def test_llama_tokenizer_loads_offline(tiny_video_ckpt: Path):
    import sentencepiece as spm
    import transformers

    sp = spm.SentencePieceProcessor(model_file=str(tiny_video_ckpt / "tokenizer.model"))
    tok = transformers.LlamaTokenizer.from_pretrained(tiny_video_ckpt)
    for text in ("A chat. USER: ", "\nWhat is in the video? ASSISTANT:"):
        assert tok(text).input_ids == [1] + sp.encode(text)
    # legacy: false -> no "▁" after a special token written in the text
    no_prefix = sp.encode("<unk>USER: hi")[len(sp.encode("<unk>")) :]  # how transformers 4 did it
    assert tok("</s>USER: hi").input_ids == [1, 2] + no_prefix
    assert transformers.AutoTokenizer.from_pretrained(tiny_video_ckpt) is not None


@pytest.mark.parametrize("repo_id", ["bert-base-uncased", "google-bert/bert-base-uncased"])
def test_bert_vocab_installs_in_a_hub_cache_under_either_name(hub: Path, repo_id: str):
    from huggingface_hub import hf_hub_download

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    factory.install_bert_tokenizer(hub, repo_id)
    path = Path(hf_hub_download(repo_id, "vocab.txt"))
    assert path.is_relative_to(hub)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 30522 and lines[:1] == ["[PAD]"] and lines[101:103] == ["[CLS]", "[SEP]"]
    assert Path(hf_hub_download(repo_id, "tokenizer_config.json")).is_file()


def test_install_in_hub_cache(tiny_video_ckpt: Path, hf_home: Path):
    from huggingface_hub import snapshot_download

    repo = "YanweiLi/llama-vid-7b-full-224-video-fps-1"
    snap = factory.install_in_hub_cache(tiny_video_ckpt, repo, hf_home)
    assert Path(snapshot_download(repo)) == snap
    assert sorted(p.name for p in snap.iterdir()) == sorted(OFFICIAL_FILES)
    ref = (hf_home / "hub" / "models--YanweiLi--llama-vid-7b-full-224-video-fps-1" / "refs" / "main").read_text()
    assert ref == snap.name and len(ref) == 40


def test_environment_is_isolated(hf_home: Path):
    assert os.environ["HF_HOME"] == str(hf_home)
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    for name in ("LLAMAVID_MODEL", "LLAMAVID_DEVICE", "LLAMAVID_DTYPE", "NO_COLOR"):
        assert name not in os.environ
    dirs = [
        os.environ[n]
        for n in (
            "LLAMAVID_CACHE_DIR",
            "LLAMAVID_CONFIG_DIR",
            "LLAMAVID_DATA_DIR",
            "XDG_CACHE_HOME",
            "XDG_CONFIG_HOME",
            "XDG_DATA_HOME",
        )
    ]
    assert len(set(dirs)) == 6 and all(not Path(d).exists() for d in dirs)
    assert os.environ["COLUMNS"] == "100"
