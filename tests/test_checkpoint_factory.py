"""The tiny checkpoints really have the released layout, and the test environment is offline."""

from __future__ import annotations

import json
import os
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

OFFICIAL_FILES = (
    "config.json",
    "pytorch_model-00001-of-00002.bin",
    "pytorch_model-00002-of-00002.bin",
    "pytorch_model.bin.index.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


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
    # like the releases: LLM layers first, the multimodal keys in the last shard
    assert where["model.layers.0.self_attn.q_proj.weight"] == "pytorch_model-00001-of-00002.bin"
    for k in ("model.mm_projector.0.weight", "model.vlm_att_query", TOWER + "pos_embed", BERT + "embeddings.position_ids"):
        assert where[k] == "pytorch_model-00002-of-00002.bin"


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
        json.loads((p / "config.json").read_text()) for p in (tiny_video_ckpt, tiny_grid_ckpt, tiny_long_ckpt, tiny_image_ckpt)
    )
    assert video["model_type"] == "llava" and video["architectures"] == ["LlavaLlamaAttForCausalLM"]
    assert video["compress_type"] == "mean" and video["rope_scaling"] is None and video["max_token"] == 2048
    assert video["mm_hidden_size"] == V and video["vision_config"]["hidden_size"] == V
    assert grid["compress_type"] == "grid:2"
    assert long["rope_scaling"] == {"type": "linear", "factor": 16.0}
    assert long["max_token"] == 65536 and long["compress_type"] == "mean_concat"
    assert long["bert_type"] == "qformer_pretrain_freeze_all"
    assert "compress_type" not in image
    assert image["image_processor"] == "./llamavid/processor/clip-patch14-224"


def test_options(tmp_path: Path):
    folder = factory.write_checkpoint(
        tmp_path / "c", kind="image", image_size=336, dtype=torch.float16, num_shards=3,
        include_vision_tower=False, include_position_ids=False,
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["image_processor"] == "./llamavid/processor/clip-patch14-336"
    index, sd, where = _load(folder)
    assert sorted(set(where.values())) == [f"pytorch_model-0000{n}-of-00003.bin" for n in (1, 2, 3)]
    assert set(sd) == factory.expected_keys(include_vision_tower=False, include_position_ids=False)
    assert all(t.dtype == torch.float16 for t in sd.values())


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
    tower = {k[len(TOWER):]: v for k, v in sd.items() if k.startswith(TOWER)}
    assert set(pth) == set(tower) | {k.replace("blocks.1.", "blocks.2.") for k in tower if k.startswith("blocks.1.")}
    for k, v in tower.items():
        assert torch.equal(pth[k], v), k
    # the tower depends only on the seed, not on the image size (except pos_embed's length)
    at336 = torch.load(factory.write_eva_vit_g(tiny_eva_pth.parent / "336.pth", seed=0, image_size=336), weights_only=True)
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


def test_bert_vocab_resolves_offline(hf_home: Path):
    from huggingface_hub import hf_hub_download

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    path = Path(hf_hub_download(factory.BERT_REPO_ID, "vocab.txt"))
    assert path.is_relative_to(hf_home)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 30522 and lines[:1] == ["[PAD]"] and lines[101:103] == ["[CLS]", "[SEP]"]
    assert Path(hf_hub_download(factory.BERT_REPO_ID, "tokenizer_config.json")).is_file()


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
    dirs = [os.environ[n] for n in ("LLAMAVID_CACHE_DIR", "LLAMAVID_CONFIG_DIR", "LLAMAVID_DATA_DIR",
                                    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")]
    assert len(set(dirs)) == 6 and all(not Path(d).exists() for d in dirs)
    assert os.environ["COLUMNS"] == "100"
