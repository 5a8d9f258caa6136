"""8-bit and 4-bit NF4 LLM weights (bitsandbytes also runs on the CPU, so this is tested here)."""

import pytest
import torch

from llamavid_cli import pipeline
from llamavid_cli.loader import load_model

bnb = pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def reference(tiny_video_ckpt):
    return load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")


@pytest.mark.parametrize("mode, layer, tolerance", [("8bit", "Linear8bitLt", 0.05), ("4bit", "Linear4bit", 0.3)])
def test_quantized_llm_stays_close_and_keeps_the_visual_side_exact(tiny_video_ckpt, reference, mode, layer, tolerance):
    loaded = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32", quantize=mode)
    attention = loaded.model.llm.model.layers[0].self_attn
    assert type(attention.q_proj).__name__ == layer
    assert isinstance(loaded.model.llm.lm_head, torch.nn.Linear)  # embeddings and lm_head keep their precision
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tokens = loaded.model.encode_frames(pixels, "What?").sequence()
    expected = reference.model.encode_frames(pixels, "What?").sequence()
    torch.testing.assert_close(tokens, expected)  # the tower, Q-Former and projectors are not quantised
    ids = pipeline.build_prompt(loaded, "What?", 2)
    logits = loaded.model.llm(inputs_embeds=loaded.model.embed_prompt(ids, tokens)).logits
    ref_logits = reference.model.llm(inputs_embeds=reference.model.embed_prompt(ids, expected)).logits
    relative = (logits - ref_logits).abs().max() / ref_logits.abs().max()
    assert relative < tolerance, f"{mode}: relative logit error {relative:.3f}"


def test_unknown_quantization_is_refused(tiny_video_ckpt):
    from llamavid_cli.errors import UsageError

    with pytest.raises(UsageError, match="unknown quantization '3bit'"):
        load_model(str(tiny_video_ckpt), device="cpu", quantize="3bit")
