"""Parity with the original LLaMA-VID computation, stage by stage and end to end.

Each tiny checkpoint (short video with mean / grid:2 compression, the long-video model with
linear RoPE ×16, the image model without compression) is run twice in float32 on the CPU:
through our loader and modules, and through tests/reference.py, a plain-PyTorch rewrite of
the original code (LAVIS EVA-ViT-G and Q-Former, llamavid_arch.py, transformers 4.31 Llama)
over the raw tensors under their released key names. Same ops, so the tolerance is tight:
1e-5 of the reference's largest magnitude; greedy ids must be identical.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import checkpoint_factory as factory  # noqa: E402
import reference as ref  # noqa: E402
from llamavid_cli import pipeline  # noqa: E402
from llamavid_cli.loader import load_model  # noqa: E402
from media import make_video  # noqa: E402

RTOL = 1e-5
FRAMES = 3
INSTRUCTION = "What is the man doing?"
KINDS = {
    "video-mean": "tiny_video_ckpt",
    "video-grid2": "tiny_grid_ckpt",
    "long": "tiny_long_ckpt",
    "image": "tiny_image_ckpt",
    "video-sharp": "sharp_video_ckpt",
}
# The tiny checkpoints' small random weights make the context attention nearly uniform, so
# their context tokens hardly depend on the question (relative change ~5e-6, under RTOL).
# "video-sharp" scales a few released tensors up so the question visibly steers the tokens
# and the LLM's answer: a wrong Q-Former input (tokenizer, mask, positions) cannot hide there.
SHARPEN = {
    r"encoder\.layer\.\d+\.attention\.self\.(query|key)\.weight$": 10.0,
    r"encoder\.layer\.\d+\.attention\.output\.dense\.weight$": 40.0,
    r"^model\.vlm_att_(key_)?projector\.weight$": 40.0,
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, rtol: float = RTOL) -> float:
    """max |a - e| ≤ rtol · max |e|; prints max/mean differences either way (visible with -s)."""
    actual, expected = actual.detach().float(), expected.detach().float()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs()
    scale = expected.abs().max().item()
    worst, mean = diff.max().item(), diff.mean().item()
    print(f"\n  {what}: max abs diff {worst:.3g} (rel {worst / scale:.3g}), mean {mean:.3g}, |ref|max {scale:.3g}")
    assert worst <= rtol * scale, (
        f"{what}: max abs diff {worst:.3g} > {rtol:g} x {scale:.3g} (mean diff {mean:.3g}, "
        f"worst at {tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))})"
    )
    return worst


class Case(SimpleNamespace):
    def __repr__(self) -> str:  # keep failure reports short: tensors and models are not printed
        return f"Case({self.name})"


def pixels(size: int = 224, frames: int = FRAMES, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def sharp_video_ckpt(tmp_path_factory) -> Path:
    """A mean-compression video checkpoint with SHARPEN applied to its shards in place."""
    folder = factory.write_checkpoint(tmp_path_factory.mktemp("ckpt") / "llama-vid-tiny-sharp", kind="video", seed=4)
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    for shard in sorted(set(index["weight_map"].values())):
        state = torch.load(folder / shard, map_location="cpu", weights_only=True)
        for key in state:
            for pattern, factor in SHARPEN.items():
                if re.search(pattern, key):
                    state[key] = state[key] * factor
        torch.save(state, folder / shard)
    return folder


@pytest.fixture(scope="module")
def bert_tokenizer(hf_home):
    """The original's vlm_att_tokenlizer, built here independently of our loader: as the original,
    from_pretrained("bert-base-uncased") out of a hub cache holding the vocabulary under that name."""
    from transformers import BertTokenizer

    factory.install_bert_tokenizer(hf_home, "bert-base-uncased")
    tok = BertTokenizer.from_pretrained("bert-base-uncased", truncation_side="left")
    tok.add_special_tokens({"bos_token": "[DEC]"})
    assert len(tok) == factory.BERT_VOCAB_SIZE
    return tok


@pytest.fixture(scope="module", params=list(KINDS))
def case(request, bert_tokenizer):
    """One checkpoint, loaded both ways, with the reference's chain pixels → features → tokens."""
    folder = request.getfixturevalue(KINDS[request.param])
    loaded = load_model(str(folder), device="cpu", dtype="float32")
    sd, config = ref.load_raw(folder)
    px = pixels()
    long_video = request.param == "long"
    with torch.no_grad():
        features = ref.eva_forward(sd, px, config)  # [F, 1+P, V]
        if long_video:  # the movie model's stored features carry no CLS
            tokens = ref.vlm_tokens(sd, config, features[:, 1:], INSTRUCTION, bert_tokenizer, long_video=True)
        else:
            tokens = ref.vlm_tokens(sd, config, features, INSTRUCTION, bert_tokenizer, long_video=False)
    return Case(
        name=request.param,
        loaded=loaded,
        sd=sd,
        config=config,
        pixels=px,
        long_video=long_video,
        features=features,
        tokens=tokens,  # reference values
    )


# --------------------------------------------------------------------------------------
# stage by stage
# --------------------------------------------------------------------------------------


def test_instruction_tokenisation_matches_the_original(case, bert_tokenizer):
    ours = case.loaded.model.bert_tokenizer
    for text in (INSTRUCTION, "word " * 400 + "final question?"):
        a = ours([text], truncation=True, max_length=256)["input_ids"]
        b = bert_tokenizer([text], padding="longest", truncation=True, max_length=256)["input_ids"]
        assert a == b, f"our Q-Former tokenizer ({len(ours)} ids) gives {a[0][:12]}, the original {b[0][:12]}"
    # left truncation keeps the end of a long question
    assert bert_tokenizer.decode(b[0][-4:]) == "final question? [SEP]"


def test_vision_features_match_eva_reference(case):
    ours = case.loaded.model.vision_features(case.pixels)
    assert ours.shape == (FRAMES, 1 + 256, factory.TINY_VISION["hidden_size"])
    assert_close(ours, case.features, f"{case.name} EVA features")


def test_frame_tokens_match_vlm_attention(case):
    model = case.loaded.model
    per_frame = case.tokens.shape[1]
    expected = case.tokens.flatten(0, 1)  # [F·(1+K), H]: per frame context, then content
    if not case.long_video:
        ours = model.frame_tokens(case.features, INSTRUCTION).sequence()
        assert_close(ours, expected, f"{case.name} frame tokens")
    else:
        stored = case.features[:, 1:]  # what the original kept per movie frame
        ours = model.frame_tokens(stored, INSTRUCTION, has_cls=False).sequence()
        assert_close(ours, expected, f"{case.name} frame tokens (features without CLS)")
        with_cls = model.frame_tokens(case.features, INSTRUCTION, has_cls=True, long_video=True).sequence()
        assert_close(with_cls, expected, f"{case.name} frame tokens (features with CLS, long_video=True)")
    expected_k = {"video-mean": 1, "video-grid2": 4, "long": 1, "image": 256, "video-sharp": 1}[case.name]
    assert per_frame == 1 + expected_k


def _qformer_input(case) -> torch.Tensor:
    """What the Q-Former cross-attends: full features (CLS included), CLS-less in long-video mode."""
    return case.features[:, 1:] if case.long_video else case.features


def test_text_queries_match_qformer(case, bert_tokenizer):
    ids, mask = ref.bert_text(bert_tokenizer, INSTRUCTION)
    with torch.no_grad():
        expected = ref.text_queries(case.sd, case.config, _qformer_input(case), ids, mask)
    ours = case.loaded.model.text_queries(_qformer_input(case), INSTRUCTION)
    assert_close(ours, expected, f"{case.name} Q-Former text queries")


def test_oracle_is_sensitive_to_the_question(case, bert_tokenizer):
    """The checks above would catch a wrong instruction: the queries move far beyond RTOL."""
    feats = _qformer_input(case)
    ids, mask = ref.bert_text(bert_tokenizer, INSTRUCTION)
    with torch.no_grad():
        q = ref.text_queries(case.sd, case.config, feats, ids, mask)
        unk = ref.text_queries(case.sd, case.config, feats, torch.full_like(ids, bert_tokenizer.unk_token_id), mask)
        other = ref.vlm_tokens(case.sd, case.config, feats, "Describe the room.", bert_tokenizer, case.long_video)
    assert (unk - q).abs().max() > 100 * RTOL * q.abs().max()
    torch.testing.assert_close(other[:, 1:], case.tokens[:, 1:], rtol=0, atol=0)  # content: question-free
    if case.name == "video-sharp":
        change = (other[:, 0] - case.tokens[:, 0]).abs().max() / case.tokens[:, 0].abs().max()
        assert change > 1e3 * RTOL, f"context token changed by only {change:.3g} with the question"


def _prompt(case) -> list[int]:
    ids = pipeline.build_prompt(case.loaded, INSTRUCTION, FRAMES)
    placeholders = sum(1 for i in ids if i == ref.IMAGE_TOKEN_INDEX)
    assert placeholders == (2 * FRAMES if case.long_video else 1)
    return ids


def test_llm_logits_match_plain_llama(case):
    ids = _prompt(case)
    model = case.loaded.model
    with torch.no_grad():
        visual = model.encode_frames(case.pixels, INSTRUCTION).sequence()  # ours, end to end
        embeds = model.embed_prompt(ids, visual)
        ours = model.llm(inputs_embeds=embeds).logits[0]
        ref_embeds = ref.splice(case.sd, ids, case.tokens.flatten(0, 1))
        expected = ref.llama_logits(case.sd, case.config, ref_embeds)
    assert_close(embeds[0], ref_embeds, f"{case.name} spliced embeddings")
    assert_close(ours, expected, f"{case.name} logits")
    if case.long_video:
        # the prompt is long enough that linear RoPE scaling (x16) changes the logits
        assert ref_embeds.shape[0] > 40
        unscaled = ref.llama_logits(case.sd, case.config, ref_embeds, rope_scale=None)
        # small random weights keep attention near uniform, so the effect is ~0.5-1% of the
        # logits: still 100x the parity tolerance, which is what makes the check above meaningful
        assert (unscaled - expected).abs().max() > 1e2 * RTOL * expected.abs().max()


def test_greedy_generation_matches_plain_loop(case):
    ids = _prompt(case)
    model = case.loaded.model
    visual = model.encode_frames(case.pixels, INSTRUCTION).sequence()
    ours = model.generate(ids, visual, max_new_tokens=8, temperature=0).output_ids
    with torch.no_grad():
        expected = ref.greedy(case.sd, case.config, ref.splice(case.sd, ids, case.tokens.flatten(0, 1)), 8)
    print(f"\n  {case.name} greedy ids: ours {ours}, reference {expected}")
    assert ours == expected


# --------------------------------------------------------------------------------------
# the tower from LAVIS' eva_vit_g.pth, and a 336 px model whose tower comes from LAVIS' 224 px file
# --------------------------------------------------------------------------------------


def test_eva_pth_tower_equals_the_shards_tower(tmp_path, tiny_eva_pth, tiny_video_ckpt):
    folder = factory.write_checkpoint(tmp_path / "no-tower", kind="video", include_vision_tower=False, seed=0)
    from_pth = load_model(str(folder), device="cpu", dtype="float32", eva_weights=tiny_eva_pth)
    from_shards = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    px = pixels()
    a = from_pth.model.vision_features(px)
    b = from_shards.model.vision_features(px)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # and the reference on the raw .pth (no prefix, one extra block that must be ignored)
    eva_sd = torch.load(tiny_eva_pth, map_location="cpu", weights_only=True)
    _, config = ref.load_raw(folder)
    assert f"blocks.{factory.TINY_VISION['num_hidden_layers']}.attn.qkv.weight" in eva_sd
    with torch.no_grad():
        expected = ref.eva_forward(eva_sd, px, config, prefix="")
    assert_close(a, expected, "EVA features from eva_vit_g.pth")


def test_336_model_interpolates_a_224_pos_embed_like_lavis(tmp_path, bert_tokenizer):
    """LAVIS' eva_vit_g.pth holds a 224 px position table; a 336 px model resizes it bicubically.
    (A tower stored in the shards must already be for the model's size: see test_loading.)"""
    folder = factory.write_checkpoint(
        tmp_path / "img336", kind="image", compress_type=None, seed=5, image_size=336, include_vision_tower=False
    )
    eva = factory.write_eva_vit_g(tmp_path / "eva_vit_g.pth", seed=5, image_size=224, extra_block=False)

    loaded = load_model(str(folder), device="cpu", dtype="float32", eva_weights=eva)
    sd, config = ref.load_raw(folder)
    sd.update({ref.VISION_PREFIX + k: v for k, v in torch.load(eva, map_location="cpu", weights_only=True).items()})
    stored = sd[ref.VISION_PREFIX + "pos_embed"]
    assert stored.shape[1] == 1 + 16 * 16  # LAVIS' file holds the 224 px table
    resized = ref.interpolate_pos_embed(stored, 24 * 24)
    assert resized.shape[1] == 1 + 24 * 24
    ours_pos = loaded.model.vision.embeddings.position_embedding
    assert_close(ours_pos.reshape(resized.shape), resized, "336 px interpolated pos_embed")

    px = pixels(size=336, frames=1, seed=7)
    ours = loaded.model.vision_features(px)
    with torch.no_grad():
        expected = ref.eva_forward(sd, px, config)
        tokens = ref.vlm_tokens(sd, config, expected, INSTRUCTION, bert_tokenizer)
    assert ours.shape == (1, 1 + 576, factory.TINY_VISION["hidden_size"])
    assert_close(ours, expected, "336 px EVA features")
    assert_close(loaded.model.frame_tokens(ours, INSTRUCTION).sequence(), tokens.flatten(0, 1), "336 px tokens")


# --------------------------------------------------------------------------------------
# from the video file: decoding, frame choice and pixels included
# --------------------------------------------------------------------------------------


def test_encode_and_ask_on_a_video_file_match_the_original_pipeline(tmp_path, sharp_video_ckpt, bert_tokenizer):
    """Our encode and ask from an H.264 file against the original's pixels (every chosen frame as
    full RGB, CLIP's PIL processor) through the reference model: tokens to RTOL, same greedy ids.
    A resize off by one level in a few pixels (the former FFmpeg path) moves these tokens past RTOL."""
    video = make_video(tmp_path / "clip.mp4", seconds=3, fps=10, width=320, height=180, pattern_kind="photo")
    loaded = load_model(str(sharp_video_ckpt), device="cpu", dtype="float32")
    sd, config = ref.load_raw(sharp_video_ckpt)
    px = ref.original_video_pixels(video, 224)
    assert px.shape == (3, 3, 224, 224)  # frames 0, 10, 20
    with torch.no_grad():
        expected = ref.vlm_tokens(sd, config, ref.eva_forward(sd, px, config), INSTRUCTION, bert_tokenizer)

    encoded = pipeline.encode_source(loaded, video, INSTRUCTION)
    assert list(encoded.timestamps) == [0.0, 1.0, 2.0]
    assert_close(encoded.tokens.context, expected[:, :1], "context tokens from the file")
    assert_close(encoded.tokens.content, expected[:, 1:], "content tokens from the file")

    settings = pipeline.GenerationSettings(temperature=0, max_new_tokens=8)
    answer = pipeline.ask(loaded, video, INSTRUCTION, use_cache=False, generation=settings)
    greedy = ref.greedy(sd, config, ref.splice(sd, answer.prompt_ids, expected.flatten(0, 1)), 8)
    print(f"\n  greedy ids from the file: ours {answer.output_ids}, reference {greedy}")
    assert answer.output_ids == greedy
