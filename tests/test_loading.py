"""Loading the official on-disk layout, and refusing what cannot be loaded, with one clear line."""

import json
import shutil

import pytest
import torch

import checkpoint_factory as factory
from llamavid_cli import checkpoints
from llamavid_cli.config import Compress, parse_config, read_config
from llamavid_cli.errors import CheckpointError, DownloadError, UsageError
from llamavid_cli.loader import load_model


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
    factory.install_bert_tokenizer(hub)
    factory.install_in_hub_cache(tiny_video_ckpt, "YanweiLi/llama-vid-7b-full-224-video-fps-1", hub)
    loaded = load_model("vid-7b", device="cpu", dtype="float32")
    assert loaded.name == "YanweiLi/llama-vid-7b-full-224-video-fps-1"


def test_missing_model_offline_says_how_to_get_it():
    with pytest.raises(DownloadError, match="llamavid models pull YanweiLi/llama-vid-13b"):
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
    sorted(folder.glob("pytorch_model-*.bin"))[0].unlink()
    with pytest.raises(CheckpointError, match="lacks shard pytorch_model-00001-of-00002.bin"):
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
    assert (config.vision.hidden_size, config.vision.num_hidden_layers, config.vision.intermediate_size) == (1408, 39, 6144)
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
