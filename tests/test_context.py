"""The token budget (context.py): checked before decoding, shared by ask and chat, and with
--fit a frame count that does not depend on the question (so the encode cache serves it)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import checkpoint_factory as factory
import media
from llamavid_cli import cache, chat, context, loader, pipeline, subtitles
from llamavid_cli.cli.app import app
from llamavid_cli.errors import ContextLengthError, UsageError
from llamavid_cli.loader import load_model
from llamavid_cli.video import Sampling, count_frames, probe

CPU = ["--device", "cpu", "--dtype", "float32"]
NEW_TOKENS = 16
GREEDY = pipeline.GenerationSettings(temperature=0, max_new_tokens=NEW_TOKENS)
SHORT_Q = "Who?"
LONG_Q = "What is the person in the red jacket doing near the door at the very end of the clip?"


def run(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def with_tower_counter(loaded):
    loaded.tower_calls = []
    loaded.model.vision.register_forward_hook(lambda *_: loaded.tower_calls.append(1))
    return loaded


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A short-video model with a 256-token context: a 2-minute clip at 1 fps cannot fit."""
    folder = factory.write_checkpoint(tmp_path_factory.mktemp("ckpt") / "small", max_position_embeddings=256)
    return with_tower_counter(load_model(str(folder), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def small_long(tmp_path_factory):
    """A long-video model with a 1024-token context (64 positions × RoPE 16)."""
    folder = factory.write_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "small-long", kind="long", max_position_embeddings=64
    )
    return with_tower_counter(load_model(str(folder), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "long.mp4", seconds=120, fps=2, width=32, height=32)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=5, fps=5, width=32, height=32)


def test_fit_does_not_put_the_question_in_the_cache_key(small, long_clip):
    """Two questions of different lengths with --fit: one decode, one cache entry."""
    assert context.text_tokens(small, LONG_Q) > context.text_tokens(small, SHORT_Q)
    small.tower_calls.clear()
    first = pipeline.ask(small, long_clip, SHORT_Q, fit=True, generation=GREEDY)
    assert small.tower_calls and len(cache.entries()) == 1
    small.tower_calls.clear()
    second = pipeline.ask(small, long_clip, LONG_Q, fit=True, generation=GREEDY)
    assert small.tower_calls == [] and len(cache.entries()) == 1
    # the frames decoded are those that fit beside the allowance, whatever the question
    keyed = context.frame_budget(small, context.QUESTION_ALLOWANCE, None, NEW_TOKENS)
    assert first.frames == min(keyed, context.frame_budget(small, SHORT_Q, None, NEW_TOKENS))
    assert second.frames == min(keyed, context.frame_budget(small, LONG_Q, None, NEW_TOKENS))
    assert first.notes[0] == f"sampling {keyed} of 120 frames so the video fits the context (--fit)"


def test_a_question_longer_than_the_allowance_drops_frames_without_decoding(small, long_clip):
    keyed = context.frame_budget(small, context.QUESTION_ALLOWANCE, None, NEW_TOKENS)
    longer = ("Describe " + "it all " * k for k in range(1, 60))
    question = next(q for q in longer if context.frame_budget(small, q, None, NEW_TOKENS) < keyed)
    budget = context.frame_budget(small, question, None, NEW_TOKENS)
    assert 0 < budget < keyed
    pipeline.ask(small, long_clip, SHORT_Q, fit=True, generation=GREEDY)
    small.tower_calls.clear()
    result = pipeline.ask(small, long_clip, question, fit=True, generation=GREEDY)
    assert result.frames == budget and small.tower_calls == []
    assert f"using {budget} of {keyed} frames so the video fits the context (--fit)" in result.notes


def test_without_fit_ask_refuses_before_decoding_with_its_own_question(small, long_clip):
    small.tower_calls.clear()
    with pytest.raises(ContextLengthError) as err:
        pipeline.ask(small, long_clip, LONG_Q, generation=GREEDY)
    budget = context.frame_budget(small, LONG_Q, None, NEW_TOKENS)
    assert f"sample at most {budget} frames" in str(err.value) and small.tower_calls == []


def test_chat_refuses_with_the_frame_count_a_question_leaves_room_for(small, long_clip):
    """chat does not know its questions yet: the count it suggests leaves room for one (the
    allowance), not for an empty question, and nothing is decoded before it says so."""
    allowance = context.frame_budget(small, context.QUESTION_ALLOWANCE, None, NEW_TOKENS)
    assert allowance < context.frame_budget(small, "", None, NEW_TOKENS)
    small.tower_calls.clear()
    with pytest.raises(ContextLengthError) as err:
        chat.open_source(small, long_clip, Sampling(), max_new_tokens=NEW_TOKENS, fit=False)
    assert f"sample at most {allowance} frames" in str(err.value)
    assert str(err.value).startswith("120 frames × 2 tokens")
    assert small.tower_calls == []


def test_chat_fit_decodes_only_the_frames_it_keeps(small, long_clip):
    allowance = context.frame_budget(small, context.QUESTION_ALLOWANCE, None, NEW_TOKENS)
    small.tower_calls.clear()
    prepared = chat.open_source(small, long_clip, Sampling(), max_new_tokens=NEW_TOKENS, fit=True, use_cache=False)
    assert prepared.num_frames == allowance
    assert prepared.notes[0] == f"sampling {allowance} of 120 frames so the video fits the context (--fit)"
    # the same frames ask --fit decodes, so the two share a cache entry
    assert len(small.tower_calls) == -(-allowance // pipeline.DECODE_BATCH)


def test_chat_fit_on_the_command_line(long_clip, small):
    result = run(
        "chat", long_clip, "--model", small.name, "--fit", "-t", 0, "--max-new-tokens", NEW_TOKENS, *CPU, env=None
    )
    assert result.exit_code == 0, result.stderr
    assert "of 120 frames so the video fits the context (--fit)" in result.stderr


def _srt(path, cues: int) -> None:
    blocks = [
        f"{i + 1}\n00:00:{i // 10:02d},{(i % 10) * 100:03d} --> 00:00:{i // 10:02d},{(i % 10) * 100 + 99:03d}\n"
        f"line number {i} of a very talkative subtitle file\n"
        for i in range(cues)
    ]
    path.write_text("\n".join(blocks))


def test_a_subtitle_file_too_long_for_the_context_is_refused_before_decoding(small_long, clip, tmp_path):
    srt = tmp_path / "talk.srt"
    _srt(srt, 120)
    cues = subtitles.read_subtitles(srt)
    sub_tokens = context.subtitle_tokens(small_long, cues)
    assert sub_tokens > small_long.config.context_length
    small_long.tower_calls.clear()
    with pytest.raises(ContextLengthError) as err:
        pipeline.ask(small_long, clip, SHORT_Q, subs=pipeline.SubtitleRequest(srt), generation=GREEDY)
    message = str(err.value)
    assert f"({sub_tokens} of them subtitles)" in message and "give a shorter subtitle file" in message
    assert small_long.tower_calls == []


def test_subtitle_tokens_are_counted_as_the_long_prompt_tokenises_them(small_long, clip, tmp_path):
    """The estimate before decoding against the prompt actually built: within a token per cue."""
    srt = tmp_path / "few.srt"
    _srt(srt, 12)
    cues = subtitles.read_subtitles(srt)
    result = pipeline.ask(small_long, clip, SHORT_Q, subs=pipeline.SubtitleRequest(srt), generation=GREEDY)
    text = sum(1 for i in result.prompt_ids if i != -200)
    estimate = context.text_tokens(small_long, SHORT_Q, None, cues)
    assert abs(text - estimate) <= len(cues)
    # subtitles of a short-video model are not in its prompt, so they cost nothing
    assert context.subtitle_tokens(small_long, []) == 0


def test_transcribe_on_a_short_video_model_is_refused_before_the_model_loads(clip, tiny_video_ckpt, monkeypatch):
    loads = []
    monkeypatch.setattr(loader, "load_model", lambda *a, **k: loads.append(a) or pytest.fail("model loaded"))
    for command in ("ask", "chat"):
        args = [
            command,
            clip,
            *(["Who?"] if command == "ask" else []),
            "--transcribe",
            "--model",
            tiny_video_ckpt,
            *CPU,
        ]
        result = run(*args)
        assert result.exit_code == 2, result.stderr
        line = result.stderr.strip()
        assert (
            line.startswith("Error: --transcribe makes subtitles that") and "--long-video" in line and "long-7b" in line
        )
    assert loads == []


def test_transcribe_with_long_video_forced_passes_the_check(tiny_video_ckpt):
    pipeline.check_transcribe(str(tiny_video_ckpt), True, pipeline.SubtitleRequest(transcribe=True))
    with pytest.raises(UsageError):
        pipeline.check_transcribe(str(tiny_video_ckpt), None, pipeline.SubtitleRequest(transcribe=True))


def test_the_library_skips_whisper_for_a_short_video_model(small, clip):
    """Offline, Whisper cannot even be found: the answer comes back, with a note, because it is not run."""
    result = pipeline.ask(small, clip, SHORT_Q, subs=pipeline.SubtitleRequest(transcribe=True), generation=GREEDY)
    assert any(note.startswith("--transcribe skipped") for note in result.notes)


def test_ask_reports_progress_with_the_planned_total(small, clip):
    calls = []

    from contextlib import contextmanager

    @contextmanager
    def progress(total):
        calls.append(("total", total))
        yield lambda n: calls.append(("done", n))

    result = pipeline.ask(small, clip, SHORT_Q, use_cache=False, generation=GREEDY, progress=progress)
    assert calls[0] == ("total", count_frames(probe(clip), Sampling()))
    assert sum(n for kind, n in calls[1:]) == result.frames == 5
    calls.clear()
    pipeline.ask(small, clip, SHORT_Q, generation=GREEDY, progress=progress)  # fills the cache
    calls.clear()
    pipeline.ask(small, clip, "Again?", generation=GREEDY, progress=progress)
    assert calls == []  # a cache hit decodes nothing, so no bar


def test_ask_progress_bar_on_a_terminal_and_never_in_json(clip, small):
    args = ["ask", clip, SHORT_Q, "--model", small.name, "-t", 0, "--max-new-tokens", 2, "--no-cache", *CPU]
    shown = run(*args, env={"FORCE_COLOR": "1", "COLUMNS": "100"})
    assert shown.exit_code == 0, shown.stderr
    assert "clip.mp4" in shown.stderr and "5/5" in shown.stderr and "frames/s" in shown.stderr
    quiet = run(*args, "--json", env={"FORCE_COLOR": "1"})
    assert quiet.exit_code == 0 and "frames/s" not in quiet.stderr
    assert json.loads(quiet.stdout)["frames"] == 5
