"""`llamavid chat` driven as a person would: through a pseudo-terminal."""

import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time

import pytest

import media


def read_until(fd, marker, timeout: float = 60.0) -> bytes:
    """Read until `marker` (bytes) shows, or until `marker(seen)` (a callable) is true."""
    done = marker if callable(marker) else (lambda seen: marker in seen)
    seen = b""
    deadline = time.monotonic() + timeout
    while not done(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {marker!r}; got {seen[-400:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=6, fps=5, width=64, height=48)


def chat_command(clip, checkpoint, *, max_new_tokens: int) -> list[str]:
    """`llamavid chat` on the tiny checkpoint, greedy on the CPU, as a subprocess argv."""
    return [sys.executable, "-m", "llamavid_cli", "chat", str(clip), "--model", str(checkpoint),
            "--device", "cpu", "--dtype", "float32", "-t", "0", "--max-new-tokens", str(max_new_tokens)]  # fmt: skip


def test_chat_in_a_terminal_answers_handles_commands_and_keeps_history(clip, tiny_video_ckpt, tmp_path):
    main, secondary = pty.openpty()
    env = {**os.environ, "LLAMAVID_DATA_DIR": str(tmp_path / "data"), "TERM": "dumb"}
    proc = subprocess.Popen(
        chat_command(clip, tiny_video_ckpt, max_new_tokens=4),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        close_fds=True,
    )
    os.close(secondary)
    try:
        assert b"6 frames" in read_until(main, b"You: ")
        os.write(main, b"Who is there?\r")
        read_until(main, b"You: ")
        os.write(main, b"/range 0:02 0:04\r")
        assert b"Talking about 2 frames" in read_until(main, b"You: ")
        os.write(main, b"/info\r")
        assert b"1 turns" in read_until(main, b"You: ")
        os.write(main, b"/nonsense\r")
        assert b"unknown command /nonsense" in read_until(main, b"You: ")
        os.write(main, b"\x04")  # Ctrl-D leaves
        proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(main)
    assert proc.returncode == 0
    assert "Who is there?" in (tmp_path / "data" / "chat_history").read_text()


@pytest.fixture
def talkative_ckpt(tiny_video_ckpt, tmp_path):
    """The tiny checkpoint with a zero </s> row in lm_head: greedy answers never end early."""
    import shutil

    import torch

    folder = tmp_path / "talkative"
    shutil.copytree(tiny_video_ckpt, folder)
    for shard in folder.glob("pytorch_model-*.bin"):
        state = torch.load(shard, weights_only=True)
        if "lm_head.weight" in state:
            state["lm_head.weight"][2] = 0.0
            torch.save(state, shard)
    return folder


def test_ctrl_c_stops_the_answer_and_the_chat_goes_on(clip, talkative_ckpt, tmp_path):
    tiny_video_ckpt = talkative_ckpt
    main, secondary = pty.openpty()

    def own_terminal():  # make the pty the child's controlling terminal, so Ctrl-C reaches it
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # even when pytest runs in the background (SIGINT ignored)

    proc = subprocess.Popen(
        chat_command(clip, tiny_video_ckpt, max_new_tokens=3500),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
        preexec_fn=own_terminal,
        env={**os.environ, "LLAMAVID_DATA_DIR": str(tmp_path), "TERM": "dumb"},
    )
    os.close(secondary)
    try:
        read_until(main, b"You: ")
        os.write(main, b"Tell me everything.\r")
        # ready: the answer is streaming (a few words of it are on the screen), not a fixed sleep
        read_until(main, lambda seen: len(re.sub(rb"\x1b\[[0-9;]*m|\s", b"", seen.partition(b"LLaMA-VID: ")[2])) >= 12)
        os.write(main, b"\x03")  # Ctrl-C
        assert b"(answer stopped)" in read_until(main, b"You: ")
        os.write(main, b"/info\r")
        assert b"0 turns" in read_until(main, b"You: ")  # a stopped answer is not history
        os.write(main, b"/exit\r")
        proc.wait(timeout=30)
    finally:
        proc.kill()
        os.close(main)
    assert proc.returncode == 0
