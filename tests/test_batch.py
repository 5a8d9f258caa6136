"""The pipelined batch (batch.py): answers generated together equal answers generated alone, the
decoder's queue keeps memory bounded, and a damaged file in the middle is an error in its place."""

import json

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli import batch, pipeline
from llamavid_cli.cli.app import app
from llamavid_cli.loader import load_model

GREEDY = pipeline.GenerationSettings(temperature=0.0, max_new_tokens=12)


@pytest.fixture(scope="module")
def loaded(tiny_video_ckpt):
    return load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Four clips of different lengths, so their prompts differ in length and batching pads them."""
    folder = tmp_path_factory.mktemp("clips")
    return [media.make_video(folder / f"c{i}.mp4", seconds=seconds, fps=4) for i, seconds in enumerate([1, 3, 2, 1.5])]


def answers(loaded, sources, batch_size, **job):
    job = batch.Job("Describe the video.", generation=GREEDY, use_cache=False, **job)
    return list(batch.summarize(loaded, sources, job, batch_size=batch_size))


def test_batched_greedy_answers_equal_one_at_a_time(loaded, clips):
    alone = answers(loaded, clips, 1)
    together = answers(loaded, clips, 3)  # a batch of 3 (padded) and a batch of 1
    assert [o.error for o in alone + together] == [None] * 8
    assert len({o.answer["frames"] for o in alone}) == 3  # visual rows of different lengths: batching pads
    for one, many in zip(alone, together):
        assert many.answer["output_ids"] == one.answer["output_ids"]
        assert many.answer["answer"] == one.answer["answer"]
        assert many.answer["prompt_ids"] == one.answer["prompt_ids"]
    assert together[0].answer["timings"]["batch"] == 3


def test_generate_batch_equals_generate_on_the_model_itself(loaded, clips):
    inputs = []
    for clip in clips[:3]:
        prepared = pipeline.prepare(loaded, clip, question="Describe.", use_cache=False)
        prompt_ids, visual, _ = pipeline.answer_inputs(loaded, prepared, "Describe.", None, 12)
        inputs.append((prompt_ids, visual))
    alone = [loaded.model.generate(p, v, max_new_tokens=12, temperature=0).output_ids for p, v in inputs]
    together = loaded.model.generate_batch(
        [p for p, _ in inputs], [v for _, v in inputs], max_new_tokens=12, temperature=0
    )
    assert [g.output_ids for g in together] == alone


def test_a_damaged_file_is_an_error_in_its_place_and_the_rest_go_on(loaded, clips, tmp_path):
    broken = media.make_undecodable(tmp_path / "broken.mp4")
    outcomes = answers(loaded, [clips[0], broken, clips[2]], 2)
    assert [o.source for o in outcomes] == [clips[0], broken, clips[2]]
    assert outcomes[0].answer and outcomes[2].answer and outcomes[1].answer is None
    assert "broken.mp4" in str(outcomes[1].error)


def test_the_decoder_queue_bounds_the_decoded_frames_alive_at_once(loaded, tmp_path):
    """Thirty videos, the model slower than the decoder: never more than the queue depth of
    decoded batches exist at once (plus the one the model holds and the one being queued),
    counted by creation and garbage collection, not timed."""
    folder = tmp_path / "many"
    folder.mkdir()
    clip = media.make_video(folder / "c.mp4", seconds=2, fps=16)  # 32 frames: 2 batches of 16
    sources = [clip] * 30
    job = batch.Job(
        "Describe.", generation=pipeline.GenerationSettings(temperature=0, max_new_tokens=2), use_cache=False
    )
    decoder = batch.Decoder(loaded, sources, job, depth=2)
    outcomes = list(batch.summarize(loaded, sources, job, batch_size=4, decoder=decoder))
    assert all(o.answer for o in outcomes) and len(outcomes) == 30
    assert decoder.live.peak <= 2 + 2
    assert decoder.live.now == 0  # every decoded batch was freed


def test_summarize_batch_size_on_the_command_line(tiny_video_ckpt, clips, tmp_path):
    runs = {}
    for size in ("1", "3"):
        out = tmp_path / f"out{size}"
        result = CliRunner().invoke(
            app,
            ["summarize", *map(str, clips), "--model", str(tiny_video_ckpt), "-t", "0", "--max-new-tokens", "6"]
            + ["--device", "cpu", "--dtype", "float32", "--json", "--batch-size", size, "--out-dir", str(out)],
        )
        assert result.exit_code == 0, result.stderr
        runs[size] = [json.loads(line)["output_ids"] for line in result.stdout.splitlines()]
    assert runs["1"] == runs["3"] and len(runs["1"]) == 4


@pytest.mark.parametrize("text", ["0", "-2", "many", "1.5"])
def test_a_bad_batch_size_is_a_usage_error(text, tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    result = CliRunner().invoke(app, ["summarize", str(tmp_path / "a.mp4"), "--batch-size", text])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: --batch-size {text!r} is not auto or a positive whole number"
