"""`ask --evidence` (issue 9): per-frame attention relevance, its moments, and the CLI around it.

The capture (a custom attention function on the SDPA path, reading one row per answer token)
is checked against transformers' own eager attention with `output_attentions=True` over the
whole sequence, on the tiny checkpoints and on a grouped-query LLaMA."""

import json
import math
import re

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

import media
from llamavid_cli import evidence, pipeline
from llamavid_cli.cli.app import app
from llamavid_cli.loader import load_model
from llamavid_cli.video import Sampling

CPU = ["--device", "cpu", "--dtype", "float32"]
ANSI = re.compile(r"\x1b\[")
RANGE = re.compile(r"(\d+):(\d\d)–(\d+):(\d\d)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=6, fps=10, width=96, height=64)


def eager_mass(llm, embeds: torch.Tensor, output_ids: list[int]) -> torch.Tensor:
    """[layers, P]: attention of the rows that produced `output_ids` on each prompt position, summed
    over heads and rows, from a full eager forward with output_attentions=True (the L×L reference)."""
    prompt = embeds.shape[1]
    answer = llm.get_input_embeddings()(torch.tensor(output_ids[:-1], dtype=torch.long))[None]
    full = torch.cat([embeds, answer.to(embeds.dtype)], dim=1)
    previous = llm.config._attn_implementation
    llm.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            attentions = llm(inputs_embeds=full, output_attentions=True).attentions
    finally:
        llm.config._attn_implementation = previous
    rows = slice(prompt - 1, prompt - 1 + len(output_ids))
    return torch.stack([a[0, :, rows, :prompt].double().sum(dim=(0, 1)) for a in attentions])


def binned(mass: torch.Tensor, positions: torch.Tensor, frames: int) -> torch.Tensor:
    out = torch.zeros(mass.shape[0], frames, dtype=torch.double)
    for p, f in enumerate(positions.tolist()):
        if f >= 0:
            out[:, f] += mass[:, p]
    return out


@pytest.mark.parametrize("kind", ["video", "grid", "long"])
def test_capture_equals_eager_attention(kind, clip, tiny_video_ckpt, tiny_grid_ckpt, tiny_long_ckpt):
    ckpt = {"video": tiny_video_ckpt, "grid": tiny_grid_ckpt, "long": tiny_long_ckpt}[kind]
    loaded = load_model(str(ckpt), device="cpu", dtype="float32")
    prepared = pipeline.prepare(loaded, clip, Sampling(fps=1.0), use_cache=False)
    settings = pipeline.GenerationSettings(temperature=0, max_new_tokens=5)
    result = pipeline.answer(loaded, prepared, "What is happening?", generation=settings, evidence=True)
    tokens = prepared.tokens_for(loaded, "What is happening?")
    frames = tokens.num_frames
    positions = evidence.frame_positions(result.prompt_ids, frames, 1 + tokens.content.shape[1])
    assert (positions >= 0).sum() == frames * (1 + tokens.content.shape[1])
    embeds = loaded.model.embed_prompt(result.prompt_ids, tokens.sequence())
    reference = binned(eager_mass(loaded.model.llm, embeds, result.output_ids), positions, frames)

    # the same capture, run again so its raw per-layer mass can be compared too
    capture = evidence.Capture(positions, frames)
    with capture.attached(loaded.model.llm):
        again = loaded.model.generate(result.prompt_ids, tokens.sequence(), max_new_tokens=5, temperature=0)
    assert again.output_ids == result.output_ids  # the capture does not change the answer
    assert capture.rows == len(result.output_ids)
    torch.testing.assert_close(capture.layer_mass().double(), reference, atol=1e-5, rtol=0)
    expected = (reference.mean(dim=0) / reference.mean(dim=0).sum()).tolist()
    assert result.evidence.scores == pytest.approx(expected, abs=1e-5)
    assert math.isclose(sum(result.evidence.scores), 1.0, abs_tol=1e-9)
    assert list(result.evidence.times) == list(prepared.timestamps)
    assert loaded.model.llm.config._attn_implementation == "sdpa"  # put back afterwards


def test_capture_with_grouped_query_heads_equals_eager():
    """LLaMA with 4 query heads sharing 2 key heads: rows are grouped, keys never repeated."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    config._attn_implementation = "sdpa"
    llm = LlamaForCausalLM(config).eval()
    embeds = torch.randn(1, 20, 32)
    positions = torch.tensor([-1] * 4 + [f for f in range(6) for _ in range(2)] + [-1] * 4)  # 6 frames of 2 tokens
    capture = evidence.Capture(positions, 6)
    with capture.attached(llm), torch.inference_mode():
        out = llm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(1, 20, dtype=torch.long),
            max_new_tokens=7,
            min_new_tokens=7,
            do_sample=False,
            pad_token_id=0,
        )
    ids = out[0].tolist()
    assert capture.rows == len(ids) == 7
    reference = binned(eager_mass(llm, embeds, ids), positions, 6)
    torch.testing.assert_close(capture.layer_mass().double(), reference, atol=1e-5, rtol=0)


def test_scores_sum_to_one_and_moments_merge_adjacent_frames():
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    mass = torch.tensor([[1.0, 1.0, 8.0, 7.0, 1.0, 1.0, 5.0, 1.0]])
    scores = evidence.normalise(mass)
    assert math.isclose(sum(scores), 1.0)
    found = evidence.make(times, scores, 7.5, 3)
    first, second, third = found.moments
    assert (first.start, first.end) == (2.0, 4.0)  # frames 2 and 3 merged: 3's score is ≥ half of 2's
    assert first.score == pytest.approx(15 / 25)
    assert (second.start, second.end) == (6.0, 7.0) and second.score == pytest.approx(5 / 25)
    assert third.score <= second.score <= first.score  # best first
    for moment in found.moments:
        assert 0.0 <= moment.start < moment.end <= 7.5
    assert evidence.frame_spans(times, 7.5)[-1] == (7.0, 7.5)  # the last frame runs to the end
    data = found.as_dict()
    assert [f["time"] for f in data["frames"]] == times and len(data["moments"]) == 3
    assert found.top(1).moments == (first,)


def test_uniform_attention_is_one_moment_over_the_whole_video():
    found = evidence.make([0.0, 2.0, 4.0], evidence.normalise(torch.ones(2, 3)), 6.0, 3)
    assert [(m.start, m.end) for m in found.moments] == [(0.0, 6.0)]
    assert found.moments[0].score == pytest.approx(1.0)


def run(*args, input=None, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)


def test_ask_evidence_prints_a_timeline_and_moments_on_stderr(clip, tiny_video_ckpt):
    args = ["ask", clip, "What happens?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 4, *CPU]
    plain = run(*args)
    result = run(*args, "--evidence", "--moments", 2, env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.stderr
    assert result.stdout == plain.stdout  # the answer on stdout is the same, evidence goes to stderr
    assert not ANSI.search(result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    timeline = next(line for line in lines if line.startswith("Evidence"))
    assert "0:00" in timeline and "0:06" in timeline
    moments = next(line for line in lines if line.startswith("Moments"))
    ranges = RANGE.findall(moments)
    assert 1 <= len(ranges) <= 2
    for m1, s1, m2, s2 in ranges:
        assert 0 <= int(m1) * 60 + int(s1) < int(m2) * 60 + int(s2) <= 6


def test_ask_json_evidence(clip, tiny_video_ckpt):
    common = ["ask", clip, "What happens?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 4, "--json", *CPU]
    without = run(*common)
    assert "evidence" not in json.loads(without.stdout)
    result = run(*common, "--evidence")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    frames, moments = data["evidence"]["frames"], data["evidence"]["moments"]
    assert len(frames) == data["frames"] == 6
    assert [f["time"] for f in frames] == sorted(f["time"] for f in frames)
    assert math.isclose(sum(f["score"] for f in frames), 1.0, abs_tol=1e-9)
    assert 1 <= len(moments) <= 3
    assert [m["score"] for m in moments] == sorted((m["score"] for m in moments), reverse=True)
    assert all(0 <= m["start"] < m["end"] <= data["duration"] + 1e-9 for m in moments)
    assert data["output_ids"] == json.loads(without.stdout)["output_ids"]
    assert "Evidence" not in result.stderr  # --json: the evidence is in the JSON only


def test_moments_must_be_positive(clip, tiny_video_ckpt):
    result = run("ask", clip, "Q?", "--model", tiny_video_ckpt, "--moments", 0, *CPU)
    assert result.exit_code == 2 and "--moments" in result.stderr


def test_chat_evidence_shows_the_last_answers_moments(clip, tiny_video_ckpt):
    result = run(
        "chat",
        clip,
        "--model",
        tiny_video_ckpt,
        "-t",
        0,
        "--max-new-tokens",
        3,
        *CPU,
        input="/evidence\nWhat happens?\n/evidence 1\n",
        env={"NO_COLOR": "1"},
    )
    assert result.exit_code == 0, result.stderr
    assert "no answer yet" in result.stderr
    moments = [line for line in result.stderr.splitlines() if line.startswith("Moments")]
    assert len(moments) == 1 and len(RANGE.findall(moments[0])) == 1
    assert any(line.startswith("Evidence") for line in result.stderr.splitlines())


def test_evidence_timeline_covers_the_chosen_range(clip, tiny_video_ckpt):
    result = run(
        "ask", clip, "What happens?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 2, "--start", 2, *CPU,
        "--evidence",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    timeline = next(line for line in result.stderr.splitlines() if line.startswith("Evidence"))
    assert timeline.split()[1] == "00:02" and timeline.split()[-1] == "00:06"
    for m1, s1, m2, s2 in RANGE.findall(next(ln for ln in result.stderr.splitlines() if ln.startswith("Moments"))):
        assert 2 <= int(m1) * 60 + int(s1) < int(m2) * 60 + int(s2) <= 6


def test_evidence_on_a_still_image(tmp_path, tiny_image_ckpt):
    picture = media.make_image(tmp_path / "still.png", width=80, height=48)
    common = ["ask", picture, "What is it?", "--model", tiny_image_ckpt, "-t", 0, "--max-new-tokens", 2, *CPU]
    result = run(*common, "--evidence")
    assert result.exit_code == 0, result.stderr
    assert "nothing to place in time" in result.stderr
    data = json.loads(run(*common, "--evidence", "--json").stdout)
    assert data["evidence"]["frames"] == [{"time": 0.0, "score": 1.0}]
