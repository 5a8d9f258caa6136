"""Loading the official on-disk layout, and refusing what cannot be loaded, with one clear line."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import checkpoint_factory as factory
import media
from llamavid_cli import checkpoints
from llamavid_cli.config import Compress, parse_config, read_config
from llamavid_cli.errors import CheckpointError, DownloadError, LlamaVidError, UsageError
from llamavid_cli.loader import check_memory, load_model, weight_bytes
from test_checkpoint_factory import RELEASED_KEY_PATTERNS, key_patterns


@pytest.fixture(scope="module")
def video(tiny_video_ckpt):
    return load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")


def copy_ckpt(src, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def test_tiny_checkpoint_loads_and_yields_two_tokens_per_frame(video):
    tokens = video.model.encode_frames(torch.randn(3, 3, 224, 224), "What is happening?")
    assert tokens.context.shape == (3, 1, 64)
    assert tokens.content.shape == (3, 1, 64)
    assert tokens.sequence().shape == (6, 64)


def test_grid_and_image_checkpoints_give_their_token_counts(tiny_grid_ckpt, tiny_image_ckpt):
    pixels = torch.randn(2, 3, 224, 224)
    grid = load_model(str(tiny_grid_ckpt), device="cpu", dtype="float32")
    assert grid.model.encode_frames(pixels, "q").content.shape == (2, 4, 64)
    image = load_model(str(tiny_image_ckpt), device="cpu", dtype="float32")
    assert image.model.encode_frames(pixels[:1], "q").content.shape == (1, 256, 64)


def test_long_checkpoint_is_recognised_with_its_64k_context(tiny_long_ckpt):
    long = load_model(str(tiny_long_ckpt), device="cpu", dtype="float32")
    assert long.config.long_video and long.config.compress is Compress.MEAN
    assert long.config.context_length == 4096 * 16
    assert long.model.llm.config.rope_parameters["rope_type"] == "linear"


def test_greedy_generation_is_identical_across_runs(video):
    from llamavid_cli import pipeline

    tokens = video.model.encode_frames(torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1)), "Who?")
    ids = pipeline.build_prompt(video, "Who?", 2)
    first = video.model.generate(ids, tokens.sequence(), max_new_tokens=12, temperature=0)
    second = video.model.generate(ids, tokens.sequence(), max_new_tokens=12, temperature=0)
    assert first.output_ids == second.output_ids and len(first.output_ids) > 0


def test_float16_and_bfloat16_load(tiny_video_ckpt):
    for dtype, expected in (("bfloat16", torch.bfloat16), ("float16", torch.float16)):
        loaded = load_model(str(tiny_video_ckpt), device="cpu", dtype=dtype)
        assert {p.dtype for p in loaded.model.parameters()} == {expected}


def test_alias_resolves_through_the_hub_cache_offline(tiny_video_ckpt, hub):
    factory.install_in_hub_cache(tiny_video_ckpt, "YanweiLi/llama-vid-7b-full-224-video-fps-1", hub)
    loaded = load_model("vid-7b", device="cpu", dtype="float32")
    assert loaded.name == "YanweiLi/llama-vid-7b-full-224-video-fps-1"


def test_missing_model_offline_says_how_to_get_it(hub):
    with pytest.raises(DownloadError) as err:
        checkpoints.resolve("vid-13b")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(
        "model YanweiLi/llama-vid-13b-full-224-video-fps-1 is not in the local Hugging Face cache ("
    )
    assert ") and offline mode is on (HF_HUB_OFFLINE), so it cannot be downloaded; " in message
    for way in (
        "`llamavid models pull YanweiLi/llama-vid-13b-full-224-video-fps-1` on a connected machine",
        "copy its Hugging Face cache",
        "--model /path/to/checkpoint",
    ):
        assert way in message


def test_an_unreachable_hub_is_named_as_such(hub, monkeypatch):
    """Online mode, but nothing listens at the endpoint: the message says the hub could not be reached."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}"
    )
    with pytest.raises(
        DownloadError,
        match=r"^model YanweiLi/llama-vid-13b-full-224-video-fps-1 is not in the local "
        r"Hugging Face cache \(.*\) and the Hugging Face hub could not be reached \(\w+\); run "
        r"`llamavid models pull",
    ):
        checkpoints.resolve("vid-13b")


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_model(str(tmp_path), device="cpu")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("compress_type", "max", "unknown compress_type 'max'"),
        ("compress_type", "grid:1", "unknown compress_type 'grid:1'"),
        ("mm_projector_type", "resampler", "unknown mm_projector_type 'resampler'"),
        ("bert_type", "raw_bert_layer:12", "unknown bert_type 'raw_bert_layer:12'"),
        ("mm_vision_select_feature", "cls", "unknown mm_vision_select_feature 'cls'"),
    ],
)
def test_unknown_config_values_are_refused_by_name(tiny_video_ckpt, field, value, message):
    raw = json.loads((tiny_video_ckpt / "config.json").read_text())
    raw[field] = value
    with pytest.raises(CheckpointError, match=message):
        parse_config(raw)


def test_shards_missing_keys_are_named(tiny_video_ckpt, tmp_path):
    folder = copy_ckpt(tiny_video_ckpt, tmp_path)
    shard = sorted(folder.glob("pytorch_model-*.bin"))[-1]
    state = torch.load(shard, weights_only=True)
    del state["model.vlm_att_key_projector.weight"], state["lm_head.weight"]
    torch.save(state, shard)
    with pytest.raises(CheckpointError, match=r"missing 2 keys \(key_projector.weight, llm.lm_head.weight\)"):
        load_model(str(folder), device="cpu")


def test_a_shard_holding_more_than_tensors_is_not_unpickled(tiny_video_ckpt, tmp_path):
    folder = copy_ckpt(tiny_video_ckpt, tmp_path)
    shard = sorted(folder.glob("pytorch_model-*.bin"))[0]
    torch.save({"model.norm.weight": torch.ones(2), "note": torch.nn.Linear(2, 2)}, shard)
    with pytest.raises(CheckpointError, match="holds something other than plain tensors; refusing to unpickle"):
        load_model(str(folder), device="cpu")


def test_a_missing_shard_file_is_named(tiny_video_ckpt, tmp_path):
    folder = copy_ckpt(tiny_video_ckpt, tmp_path)
    first = sorted(folder.glob("pytorch_model-*.bin"))[0]
    first.unlink()
    with pytest.raises(CheckpointError, match=f"lacks shard {first.name}"):
        load_model(str(folder), device="cpu")


def test_shapes_that_contradict_the_config_are_refused(tiny_video_ckpt, tmp_path):
    folder = copy_ckpt(tiny_video_ckpt, tmp_path)
    edit_config(folder, intermediate_size=96)
    with pytest.raises(CheckpointError, match="does not match its config.json: .*size mismatch"):
        load_model(str(folder), device="cpu")


def test_safetensors_shards_load_too(tiny_video_ckpt, tmp_path):
    from safetensors.torch import save_file

    folder = copy_ckpt(tiny_video_ckpt, tmp_path)
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    for shard in sorted(folder.glob("pytorch_model-*.bin")):
        save_file(torch.load(shard, weights_only=True), folder / shard.name.replace(".bin", ".safetensors"))
        shard.unlink()
    index["weight_map"] = {k: v.replace(".bin", ".safetensors") for k, v in index["weight_map"].items()}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "pytorch_model.bin.index.json").unlink()
    pixels = torch.randn(1, 3, 224, 224)
    a = load_model(str(folder), device="cpu", dtype="float32").model.encode_frames(pixels, "q").sequence()
    b = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32").model.encode_frames(pixels, "q").sequence()
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_vision_tower_falls_back_to_lavis_eva_file(tmp_path, tiny_eva_pth, tiny_video_ckpt):
    folder = factory.write_checkpoint(tmp_path / "no-tower", kind="video", include_vision_tower=False)
    with pytest.raises(CheckpointError, match="no vision tower weights"):
        load_model(str(folder), device="cpu", eva_weights=tmp_path / "absent.pth")
    pixels = torch.randn(1, 3, 224, 224)
    from_pth = load_model(str(folder), device="cpu", dtype="float32", eva_weights=tiny_eva_pth)
    from_shards = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    torch.testing.assert_close(
        from_pth.model.vision_features(pixels), from_shards.model.vision_features(pixels), rtol=0, atol=0
    )


def test_real_sizes_are_used_when_the_config_has_no_small_overrides(tiny_video_ckpt):
    raw = json.loads((tiny_video_ckpt / "config.json").read_text())
    del raw["vision_config"], raw["qformer_config"]
    raw["mm_hidden_size"] = 1408
    config = parse_config(raw)
    assert (config.vision.hidden_size, config.vision.num_hidden_layers, config.vision.intermediate_size) == (
        1408,
        39,
        6144,
    )
    assert (config.qformer.hidden_size, config.qformer.num_hidden_layers, config.qformer.vocab_size) == (768, 12, 30523)
    assert read_config(tiny_video_ckpt).vision.image_size == 224


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_cuda_without_a_gpu_is_a_usage_error(tiny_video_ckpt):
    with pytest.raises(UsageError, match="PyTorch sees no CUDA GPU"):
        load_model(str(tiny_video_ckpt), device="cuda")


def test_bad_device_and_dtype_are_usage_errors(tiny_video_ckpt):
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        load_model(str(tiny_video_ckpt), device="tpu")
    with pytest.raises(UsageError, match="unknown dtype 'float8'"):
        load_model(str(tiny_video_ckpt), device="cpu", dtype="float8")


def test_spreading_the_llm_over_devices_keeps_greedy_output(tiny_video_ckpt):
    """The multi-GPU split, exercised with two CPU 'devices': hooks must carry activations,
    position embeddings and the cache through, and bring the logits back."""
    from llamavid_cli import pipeline
    from llamavid_cli.devices import spread_llm

    single = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    split = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    assert spread_llm(split.model.llm, [torch.device("cpu"), torch.device("cpu")]) == [1, 1]
    tokens = single.model.encode_frames(torch.randn(2, 3, 224, 224), "Who?").sequence()
    ids = pipeline.build_prompt(single, "Who?", 2)
    a = single.model.generate(ids, tokens, max_new_tokens=8, temperature=0).output_ids
    b = split.model.generate(ids, tokens, max_new_tokens=8, temperature=0).output_ids
    assert a == b


# --------------------------------------------------------------------------------------
# issue 14: checkpoints as transformers 4.31 saved them
# --------------------------------------------------------------------------------------


def test_a_checkpoint_laid_out_as_released_loads_through_ask_and_load_model(tiny_video_ckpt, tmp_path):
    """Its index lists exactly the released key patterns, inv_freq and position_ids included;
    `llamavid ask --model DIR` answers and load_model loads it."""
    index = json.loads((tiny_video_ckpt / "pytorch_model.bin.index.json").read_text())
    assert key_patterns(index["weight_map"]) == RELEASED_KEY_PATTERNS
    assert "model.layers.1.self_attn.rotary_emb.inv_freq" in index["weight_map"]
    clip = media.make_video(tmp_path / "clip.mp4", seconds=2, fps=10, width=96, height=64)
    from llamavid_cli.cli.app import app

    result = CliRunner().invoke(
        app,
        [
            "ask",
            str(clip),
            "What is happening?",
            "--model",
            str(tiny_video_ckpt),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--temperature",
            "0",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 2
    loaded = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    assert loaded.model.encode_frames(torch.randn(1, 3, 224, 224), "q").sequence().shape == (2, 64)


def _add_to_shard(folder, key, value):
    index_path = folder / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    shard = folder / index["weight_map"]["model.layers.0.self_attn.q_proj.weight"]
    state = torch.load(shard, weights_only=True)
    state[key] = value
    torch.save(state, shard)
    index["weight_map"][key] = shard.name
    index_path.write_text(json.dumps(index))


def test_only_the_recomputed_buffers_are_dropped(tiny_video_ckpt, tmp_path):
    """One rule drops inv_freq and position_ids; any other unknown key, buffer-like or not, is refused by name."""
    for key, ours in (
        ("model.layers.0.self_attn.rotary_emb.cos_cached", "llm.model.layers.0.self_attn.rotary_emb.cos_cached"),
        ("model.vlm_att_encoder.bert.embeddings.token_type_ids", "qformer.embeddings.token_type_ids"),
    ):
        folder = copy_ckpt(tiny_video_ckpt, tmp_path / key)
        _add_to_shard(folder, key, torch.zeros(4))
        with pytest.raises(CheckpointError, match=rf"unexpected 1 keys \({ours}\)"):
            load_model(str(folder), device="cpu")
    assert [
        checkpoints.rename(k)
        for k in (
            "model.layers.31.self_attn.rotary_emb.inv_freq",
            "model.vlm_att_encoder.bert.embeddings.position_ids",
        )
    ] == [None, None]
    assert sum(1 for _, new in checkpoints.KEY_MAP if new is None) == 1


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_rope_frequencies_stay_exact_float32_in_half_precision(tiny_video_ckpt, tiny_long_ckpt, dtype):
    """The stored (rounded) inv_freq is not used, and the cast to half precision does not round ours:
    inv_freq = 1/θ^(2i/d) in float32, divided by 16 for the long model's linear scaling."""
    head_dim = factory.TINY_LLM["hidden_size"] // factory.TINY_LLM["num_attention_heads"]
    exact = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    for folder, factor in ((tiny_video_ckpt, 1.0), (tiny_long_ckpt, 16.0)):
        loaded = load_model(str(folder), device="cpu", dtype=dtype)
        rotary = loaded.model.llm.model.rotary_emb
        assert rotary.inv_freq.dtype == torch.float32
        assert torch.equal(rotary.inv_freq, exact / factor)
        assert loaded.model.llm.model.embed_tokens.weight.dtype == getattr(torch, dtype)


def test_a_local_folder_loads_with_an_empty_hub_cache_offline(tiny_video_ckpt, hub):
    """The BERT vocabulary ships with the package: nothing but the checkpoint folder is needed."""
    assert not hub.exists()
    loaded = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    assert len(loaded.model.bert_tokenizer) == 30523
    assert not (hub / "hub").exists()


def test_the_packaged_vocabulary_is_bert_base_uncased_and_verified(monkeypatch):
    path = checkpoints.bert_vocab()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 30522 and lines[101:103] == ["[CLS]", "[SEP]"] and lines[1996] == "the"
    assert (path.parent / "NOTICE").read_text().count("Apache") >= 1
    monkeypatch.setattr(checkpoints, "BERT_VOCAB_SHA256", "0" * 64)  # as if the file were altered
    with pytest.raises(CheckpointError, match="is damaged .*reinstall llamavid-cli"):
        checkpoints.bert_vocab()


def test_checkpoints_and_config_import_without_torch():
    code = (
        "import llamavid_cli.checkpoints, llamavid_cli.config, sys; "
        "heavy = [m for m in ('torch', 'transformers', 'av', 'huggingface_hub') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------
# issue 8: typed config ranges, image size, memory
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"hidden_size": -64}, "hidden_size"),
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"num_attention_heads": 5}, "num_attention_heads (5) does not divide hidden_size (64)"),
        ({"num_key_value_heads": 3}, "num_key_value_heads (3) does not divide num_attention_heads (4)"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"intermediate_size": 12.5}, "intermediate_size"),
        ({"rms_norm_eps": -1}, "rms_norm_eps"),
        ({"rope_scaling": {"type": "linear", "factor": 0}}, "rope_scaling.factor"),
        ({"num_query": 0}, "num_query"),
        ({"max_token": -1}, "max_token"),
        ({"vision_config": {"hidden_size": 48, "num_attention_heads": 5}}, "vision_config.num_attention_heads (5)"),
        ({"vision_config": {"num_hidden_layers": -2}}, "vision_config.num_hidden_layers"),
        ({"qformer_config": {"intermediate_size": 0}}, "qformer_config.intermediate_size"),
        ({"qformer_config": {"hidden_size": 30}}, "qformer_config.num_attention_heads (4) does not divide"),
    ],
)
def test_nonsensical_sizes_are_one_line_naming_the_field(tiny_video_ckpt, tmp_path, changes, field):
    folder = copy_ckpt(tiny_video_ckpt, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        config[key] = {**config[key], **value} if key.endswith("_config") else value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        load_model(str(folder), device="cpu")
    assert field in str(err.value) and "\n" not in str(err.value)


def test_the_long_config_names_its_query_count_num_qformer(tiny_long_ckpt):
    raw = json.loads((tiny_long_ckpt / "config.json").read_text())
    assert "num_query" not in raw and parse_config(raw).num_query == 32
    raw["num_qformer"] = 16
    assert parse_config(raw).num_query == 16
    with pytest.raises(CheckpointError, match="num_query 32 and num_qformer 16"):
        parse_config({**raw, "num_query": 32})


def _set_pos_embed(folder, length):
    key = "model.vision_tower.vision_tower.pos_embed"
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    shard = folder / index["weight_map"][key]
    state = torch.load(shard, weights_only=True)
    state[key] = torch.zeros(1, length, state[key].shape[-1])
    torch.save(state, shard)


@pytest.mark.parametrize(
    "length, message",
    [
        (1 + 24 * 24, "says 224 px but the vision tower's pos_embed \\(577 positions\\) is for 336 px"),
        (300, "pos_embed has 300 positions, which is not 1 \\+ a square number"),
    ],
)
def test_a_stored_tower_must_match_the_image_size(tiny_video_ckpt, tmp_path, length, message):
    folder = copy_ckpt(tiny_video_ckpt, tmp_path)
    _set_pos_embed(folder, length)
    with pytest.raises(CheckpointError, match=message):
        load_model(str(folder), device="cpu")


def test_a_336_px_checkpoint_loads(tmp_path):
    folder = factory.write_checkpoint(tmp_path / "img336", kind="image", image_size=336)
    loaded = load_model(str(folder), device="cpu", dtype="float32")
    assert loaded.config.vision.image_size == 336
    assert loaded.model.vision_features(torch.randn(1, 3, 336, 336)).shape == (1, 1 + 576, 48)


RELEASED_7B = {  # config.json of llama-vid-7b-full-224-video-fps-1 (docs/released-checkpoints.md), the sizes
    "architectures": ["LlavaLlamaAttForCausalLM"],
    "bert_type": "qformer_pretrain",
    "compress_type": "mean",
    "hidden_size": 4096,
    "image_aspect_ratio": "pad",
    "image_processor": "./llamavid/processor/clip-patch14-224",
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "max_token": 4096,
    "mm_hidden_size": 1408,
    "mm_projector_type": "mlp2x_gelu",
    "mm_vision_select_feature": "patch",
    "mm_vision_tower": "./model_zoo/LAVIS/eva_vit_g.pth",
    "model_type": "llava",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "num_query": 32,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "vocab_size": 32000,
}


def _released_7b_parameters() -> int:
    """Counted from the architecture (method.md §1, §2, §5.1), independently of config.py."""
    h, i, layers, vocab = 4096, 11008, 32, 32000
    llm = 2 * vocab * h + layers * (4 * h * h + 3 * h * i + 2 * h) + h
    assert llm == 6_738_415_616  # Vicuna-7B / LLaMA-2-7B
    w, m, patches = 1408, 6144, 256
    tower = w + (1 + patches) * w + (3 * 14 * 14 * w + w)  # cls, pos_embed, patch_embed
    tower += 39 * (4 * w + (3 * w * w + 3 * w) + (w * w + w) + (m * w + m) + (w * m + w))  # norms, qkv, proj, mlp
    d, dm = 768, 3072
    bert = 30523 * d + 512 * d + 2 * d
    for layer in range(12):
        bert += 4 * (d * d + d) + 2 * d  # self-attention q, k, v, output dense + LayerNorm
        bert += 2 * ((d * dm + dm) + (dm * d + d) + 2 * d)  # intermediate/output and their _query twins
        if layer % 2 == 0:
            bert += (d * d + d) + 2 * (w * d + d) + (d * d + d) + 2 * d  # cross-attention into 1408-wide features
    glue = 32 * d + 2 * w + (d * w + w) + (w * w + w) + (w * h + h) + (w * h + h) + (h * h + h)
    return llm + tower + bert + glue


def test_the_memory_estimate_of_the_released_7b_model():
    config = parse_config(RELEASED_7B)
    expected = _released_7b_parameters()
    assert 7.9e9 < expected < 8.0e9  # 6.74e9 LLM + 0.99e9 EVA-G + 0.19e9 Q-Former + glue
    counted = sum(config.parameter_counts().values())
    assert abs(counted - expected) <= 0.01 * expected
    assert weight_bytes(config, torch.float32) == pytest.approx(4 * expected, rel=0.01)  # ~31 GB
    assert weight_bytes(config, torch.bfloat16) == pytest.approx(2 * expected, rel=0.01)
    linears = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert weight_bytes(config, torch.float16, "8bit") == pytest.approx(linears + 2 * (expected - linears), rel=0.01)
    assert weight_bytes(config, torch.float16, "4bit") == pytest.approx(
        linears / 2 + 2 * (expected - linears), rel=0.01
    )


def test_the_estimate_counts_what_the_model_really_holds(video):
    counted = sum(video.config.parameter_counts().values())
    assert counted == sum(p.numel() for p in video.model.parameters())


def test_a_model_that_cannot_fit_is_refused_with_what_would():
    config = parse_config(RELEASED_7B)
    cpu = torch.device("cpu")
    with pytest.raises(LlamaVidError) as err:
        check_memory(config, cpu, torch.float32, "none", available=20 * 10**9)
    message = str(err.value)
    assert (
        message.startswith("not enough memory: the weights need ~31.")
        and "in float32 but the CPU has 20.0 GB available" in message
    )
    assert "would fit: --dtype float16 (~15.9 GB), --dtype bfloat16 (~15.9 GB), --quantize 8bit (~9.4 GB)" in message
    assert "\n" not in message
    check_memory(config, cpu, torch.bfloat16, "none", available=20 * 10**9)  # fits: no error
    check_memory(config, cpu, torch.float32, "none", available=None)  # unknown: no refusal
    with pytest.raises(LlamaVidError, match="need ~.* in 4bit but the CPU has 2.0 GB available; even --quantize 4bit"):
        check_memory(config, cpu, torch.float32, "4bit", available=2 * 10**9)


def test_the_chosen_dtype_comes_with_its_reason(tiny_video_ckpt):
    assert load_model(str(tiny_video_ckpt), device="cpu").dtype_reason == "float32: the CPU has no fast float16"
    assert (
        load_model(str(tiny_video_ckpt), device="cpu", dtype="bfloat16").dtype_reason
        == "bfloat16: asked for with --dtype"
    )


def test_rope_frequencies_stay_exact_float32_on_the_quantize_path(tiny_long_ckpt):
    pytest.importorskip("bitsandbytes")
    head_dim = factory.TINY_LLM["hidden_size"] // factory.TINY_LLM["num_attention_heads"]
    exact = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    loaded = load_model(str(tiny_long_ckpt), device="cpu", dtype="bfloat16", quantize="8bit")
    assert type(loaded.model.llm.model.layers[0].self_attn.q_proj).__name__ == "Linear8bitLt"
    assert torch.equal(loaded.model.llm.model.rotary_emb.inv_freq, exact / 16)
