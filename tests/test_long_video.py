"""Long-video (movie) mode, method.md §7: subtitles in the prompt, two placeholders per frame."""

import json

import pytest
import sentencepiece as spm
from typer.testing import CliRunner

import media
from llamavid_cli.cli.app import app
from llamavid_cli.model.prompt import MOVIE_END, MOVIE_START, SYSTEM

CPU = ["--device", "cpu", "--dtype", "float32"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "movie.mp4", seconds=4, fps=5)


@pytest.fixture
def srt(tmp_path):
    path = tmp_path / "movie.srt"
    path.write_text(
        "1\n00:00:00,200 --> 00:00:01,500\nHello there.\n\n"
        "2\n00:00:01,600 --> 00:00:03,500\nGeneral Kenobi!\n\n"
        "3\n00:00:02,000 --> 00:00:03,200\n<i>You are a bold one.</i>\n"
    )
    return path


def long_ask(clip, ckpt, *extra):
    result = run("ask", clip, "Who speaks?", "--model", ckpt, "-t", 0, "--max-new-tokens", 3, "--json", *CPU, *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_long_prompt_token_by_token(clip, srt, tiny_long_ckpt):
    """Frames at 0, 1, 2, 3 s. A cue goes to the last frame strictly before its end: 1.5 → frame 1,
    3.5 → frame 3, 3.2 → frame 3; frames 0 and 2 get none."""
    data = long_ask(clip, tiny_long_ckpt, "--subtitles", srt)
    sp = spm.SentencePieceProcessor(model_file=str(tiny_long_ckpt / "tokenizer.model"))
    # split on <image>: each frame is <image><image> followed by its subtitles
    pieces = [
        f"{SYSTEM} USER: {MOVIE_START}",
        "",
        "",  # frame 0: between its two tokens, then no subtitles
        "",
        "Hello there.",  # frame 1
        "",
        "",  # frame 2
        "",
        f"General Kenobi! You are a bold one.{MOVIE_END}\nWho speaks? ASSISTANT:",  # frame 3
    ]
    expected = [1]
    for i, piece in enumerate(pieces):
        if i:
            expected.append(-200)
        expected += sp.encode(piece)
    assert data["prompt_ids"] == expected
    assert data["long_video"] is True and data["frames"] == 4


def test_embedded_subtitles_are_picked_up(tmp_path, tiny_long_ckpt):
    movie = media.make_video(tmp_path / "movie.mkv", seconds=3, fps=5, subtitles=[(0.5, 1.5, "hello")])
    sp = spm.SentencePieceProcessor(model_file=str(tiny_long_ckpt / "tokenizer.model"))
    ids = long_ask(movie, tiny_long_ckpt)["prompt_ids"]
    slots = [i for i, t in enumerate(ids) if t == -200]
    # frames at 0, 1, 2 s: the cue ends at 1.5, so it follows frame 1's two tokens (slots 2 and 3)
    assert ids[slots[3] + 1 : slots[4]] == sp.encode("hello")


def test_subtitles_travel_in_the_vidtok(clip, srt, tiny_long_ckpt, tmp_path):
    out = tmp_path / "movie.vidtok"
    result = run("encode", clip, "--model", tiny_long_ckpt, "--subtitles", srt, "--keep-features", "-o", out, *CPU)
    assert result.exit_code == 0, result.stderr
    info = json.loads(run("info", out, "--json").stdout)
    assert info["subtitles"] == 3
    assert (
        long_ask(out, tiny_long_ckpt)["prompt_ids"] == long_ask(clip, tiny_long_ckpt, "--subtitles", srt)["prompt_ids"]
    )


def test_a_malformed_subtitle_file_names_the_line(clip, tiny_long_ckpt, tmp_path):
    bad = tmp_path / "bad.srt"
    bad.write_text("1\nnot a time\ntext\n\n2\nnot a time either\n")
    result = run("ask", clip, "Who?", "--model", tiny_long_ckpt, "--subtitles", bad, *CPU)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"Error: {bad}:2:") and len(result.stderr.strip().splitlines()) == 1


def test_a_damaged_cue_is_skipped_with_a_warning(clip, tiny_long_ckpt, tmp_path):
    damaged = tmp_path / "damaged.srt"
    damaged.write_text("1\n00:00:01,000 --> 00:00:02,000\nfine\n\n2\nnot a time\ntext\n")
    result = run("ask", clip, "Who?", "--model", tiny_long_ckpt, "--subtitles", damaged, "--max-new-tokens", 2, *CPU)
    assert result.exit_code == 0, result.stderr
    assert f"{damaged}:6: expected a time line like" in result.stderr and "skipped that cue" in result.stderr
