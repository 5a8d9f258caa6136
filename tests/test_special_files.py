"""A FIFO, a socket or a character device given where a file belongs: one line, a non-zero exit, no hang.

`open()` on a FIFO blocks until a writer comes. Each command runs under an alarm: SIGALRM
interrupts a blocked open() and its handler raises, so a hang fails the test instead of
stalling the suite.
"""

import os
import signal
import socket

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli.cli.app import app

HANG = 60  # seconds: far more than a refusal takes, far less than forever


class Hung(Exception):
    pass


def llamavid(*args):
    def hung(*_):
        raise Hung(f"llamavid {' '.join(map(str, args))} hung (no answer in {HANG} s)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG)
    try:
        result = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if isinstance(result.exception, Hung):
        pytest.fail(str(result.exception))
    return result


def assert_refused(result, path, kind):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert str(path) in lines[0] and kind in lines[0] and "not a regular file" in lines[0], lines[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "clip.mp4"
    os.mkfifo(path)
    return path


@pytest.fixture
def fifo_vidtok(tmp_path):
    path = tmp_path / "clip.vidtok"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path):
    path = tmp_path / "s.mp4"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    yield path
    server.close()


SPECIAL = {
    "fifo": ("fifo", "named pipe"),
    "fifo_vidtok": ("fifo_vidtok", "named pipe"),
    "socket": ("unix_socket", "socket"),
}


@pytest.mark.parametrize("case", SPECIAL)
def test_ask_refuses_a_special_file_as_the_source(case, request, tiny_video_ckpt):
    fixture, kind = SPECIAL[case]
    path = request.getfixturevalue(fixture)
    assert_refused(llamavid("ask", path, "Who?", "--model", tiny_video_ckpt, "--device", "cpu"), path, kind)


def test_ask_refuses_a_character_device(tiny_video_ckpt):
    assert_refused(llamavid("ask", "/dev/null", "Who?", "--model", tiny_video_ckpt), "/dev/null", "character device")


def test_encode_refuses_fifos_alone_and_in_a_batch(fifo, tmp_path, tiny_video_ckpt):
    assert_refused(llamavid("encode", fifo, "--model", tiny_video_ckpt), fifo, "named pipe")
    real = media.make_video(tmp_path / "real.mp4", seconds=1, fps=5)
    assert_refused(
        llamavid("encode", real, fifo, "-o", tmp_path / "out", "--model", tiny_video_ckpt), fifo, "named pipe"
    )
    assert not (tmp_path / "out").exists()  # refused before any work


def test_info_refuses_a_fifo_and_says_a_folder_is_one(fifo_vidtok, tmp_path):
    assert_refused(llamavid("info", fifo_vidtok), fifo_vidtok, "named pipe")
    folder = llamavid("info", tmp_path)
    assert folder.exit_code == 2 and folder.stderr.strip() == f"Error: {tmp_path} is a directory; give a .vidtok file"


def test_a_fifo_as_subtitles_is_refused_before_the_model_loads(fifo, tmp_path):
    video = media.make_video(tmp_path / "v.mp4", seconds=1, fps=5)
    subs = tmp_path / "talk.srt"
    os.mkfifo(subs)
    result = llamavid("ask", video, "Who?", "--subtitles", subs, "--model", tmp_path / "no-such-model")
    assert_refused(result, subs, "named pipe")


def test_a_fifo_as_history_is_refused_before_the_model_loads(tmp_path):
    video = media.make_video(tmp_path / "v.mp4", seconds=1, fps=5)
    history = tmp_path / "turns.json"
    os.mkfifo(history)
    result = llamavid("ask", video, "Who?", "--history", history, "--model", tmp_path / "no-such-model")
    assert_refused(result, history, "named pipe")


def test_summarize_refuses_a_named_fifo_and_skips_one_found_in_a_folder(tmp_path, tiny_video_ckpt):
    folder = tmp_path / "videos"
    folder.mkdir()
    media.make_video(folder / "a.mp4", seconds=1, fps=5)
    os.mkfifo(folder / "b.mp4")
    named = llamavid("summarize", folder / "b.mp4", "--model", tiny_video_ckpt)
    assert_refused(named, folder / "b.mp4", "named pipe")
    walked = llamavid(
        "summarize",
        folder,
        "--model",
        tiny_video_ckpt,
        "-t",
        0,
        "--max-new-tokens",
        2,
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--no-cache",
    )
    assert walked.exit_code == 0, walked.stderr
    assert "1 of 1 summarised" in walked.stderr and "a.mp4" in walked.stdout
