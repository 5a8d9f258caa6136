"""Bad input to `encode` and `ask`: one line on stderr, a non-zero exit, and no partial file."""

import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli import pipeline
from llamavid_cli.cli.app import app
from llamavid_cli.loader import load_model
from llamavid_cli.video import Sampling

CPU = ["--device", "cpu", "--dtype", "float32"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *words):
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".vidtok", ".tmp") or p.name.startswith("."))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=3, fps=5)


def bad_inputs(folder):
    text = folder / "notes.mp4"
    text.write_text("not a video\n")
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    unsupported = folder / "unknown-codec.avi"
    media.make_video(unsupported, seconds=1, fps=5, codec="mpeg4")
    data = bytearray(unsupported.read_bytes())
    for fourcc in (b"FMP4", b"fmp4", b"XVID", b"xvid", b"DIVX", b"divx", b"MP4V", b"mp4v"):
        data = data.replace(fourcc, b"ZZZZ")  # a codec tag no decoder knows
    unsupported.write_bytes(bytes(data))
    truncated = media.truncate(media.make_video(folder / "cut.mp4", seconds=3, fps=5), 0.1)
    return {
        "folder": (folder, "is a directory"),
        "not a video": (text, "not a video"),
        "audio only": (media.make_audio(folder / "song.m4a"), "no video stream"),
        "zero length": (empty, "empty"),
        "corrupt packets": (media.make_undecodable(folder / "garbage.mkv"), "could be decoded"),
        "unsupported codec": (unsupported, "unknown-codec.avi"),
        "truncated": (truncated, "cut.mp4"),
    }


@pytest.mark.parametrize(
    "case", ["folder", "not a video", "audio only", "zero length", "corrupt packets", "unsupported codec", "truncated"]
)
def test_encode_refuses_bad_videos_without_leaving_files(case, tiny_video_ckpt, tmp_path):
    source, words = bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    out.mkdir()
    result = run("encode", source, "--model", tiny_video_ckpt, "-o", out / "x.vidtok", *CPU)
    assert_one_line_error(result, words)
    assert leftovers(out) == []


def test_a_truncated_but_readable_video_is_encoded_with_a_warning(tiny_video_ckpt, tmp_path):
    source = media.truncate(media.make_video(tmp_path / "cut.mkv", seconds=4, fps=10), 0.6)
    result = run("encode", source, "--model", tiny_video_ckpt, "-o", tmp_path / "cut.vidtok", *CPU)
    assert result.exit_code == 0, result.stderr
    assert "Warning:" in result.stderr and (tmp_path / "cut.vidtok").is_file()


PROC = Path("/proc/self")


def peak_rss_during(work) -> int:
    """Bytes the resident set grew to, at its highest, while `work()` ran (Linux: the high-water
    mark is reset through /proc/self/clear_refs, then read back from /proc/self/status)."""

    def status(field: str) -> int:
        line = next(line for line in (PROC / "status").read_text().splitlines() if line.startswith(field))
        return int(line.split()[1]) * 1024  # kB

    (PROC / "clear_refs").write_text("5")
    before = status("VmRSS:")
    work()
    return status("VmHWM:") - before


@pytest.mark.slow
@pytest.mark.skipif(not (PROC / "clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
def test_an_8k_video_is_encoded_in_bounded_memory(tiny_video_ckpt, tmp_path):
    """Encoding all 8 frames of an 8K clip peaks within a few frames of encoding 1 of them.

    Both encodes decode the same 8 frames (the decoder's own buffers are alike) and differ in
    how many frames are chosen, converted and encoded. One 7680×4320 RGB frame is 100 MB: a
    pipeline that kept the chosen frames at full size peaks about 750 MB higher (measured by
    holding them in FrameScaler); ours differs by 0–150 MB depending on what ran before in
    the process, hence the bound of three frames. A first, unmeasured encode takes the
    one-time allocations out of the comparison."""
    source = media.make_video(tmp_path / "8k.mp4", seconds=1, fps=8, width=7680, height=4320, codec="mpeg4")
    loaded = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    encoded = {}

    def encode(fps: float):
        return lambda: encoded.setdefault(fps, pipeline.encode_source(loaded, source, "Describe.", Sampling(fps)))

    pipeline.encode_source(loaded, source, "Describe.", Sampling(1.0))  # warm-up
    one = peak_rss_during(encode(1.0))
    every = peak_rss_during(encode(8.0))
    assert (encoded[1.0].tokens.num_frames, encoded[8.0].tokens.num_frames) == (1, 8)
    frame = 7680 * 4320 * 3
    assert every - one < 3 * frame, f"peak grew by {every / 2**20:.0f} MiB for 8 frames vs {one / 2**20:.0f} MiB for 1"


@pytest.mark.requires_cuda
def test_a_gpu_encode_gives_the_cpu_tokens(tiny_video_ckpt, clip):
    """The CUDA path (pixels normalised on the device, the tower in float32 there) computes the
    tokens the CPU path does, up to cuDNN's TF32 convolutions."""
    import torch

    cpu = pipeline.encode_source(load_model(str(tiny_video_ckpt), device="cpu", dtype="float32"), clip, "Describe.")
    gpu = pipeline.encode_source(load_model(str(tiny_video_ckpt), device="cuda", dtype="float32"), clip, "Describe.")
    assert gpu.timestamps == cpu.timestamps
    for name in ("context", "content"):
        torch.testing.assert_close(
            getattr(gpu.tokens, name).float().cpu(), getattr(cpu.tokens, name).float(), atol=1e-2, rtol=1e-2
        )


def test_an_unwritable_output_folder_fails_before_encoding(clip, tiny_video_ckpt):
    result = run("encode", clip, "--model", tiny_video_ckpt, "-o", "/proc/clip.vidtok", *CPU)
    assert_one_line_error(result, "cannot write /proc/clip.vidtok")


def vidtok_of(clip, ckpt, folder):
    path = folder / "clip.vidtok"
    assert run("encode", clip, "--model", ckpt, "-o", path, *CPU).exit_code == 0
    return path


def test_a_truncated_vidtok_is_refused(clip, tiny_video_ckpt, tmp_path):
    path = vidtok_of(clip, tiny_video_ckpt, tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    assert_one_line_error(run("ask", path, "Who?", "--model", tiny_video_ckpt, *CPU), "clip.vidtok")


def test_a_file_that_is_not_safetensors_is_treated_as_a_bad_video(tiny_video_ckpt, tmp_path):
    path = tmp_path / "junk.vidtok"
    path.write_bytes(b"\x00" * 64)
    assert_one_line_error(run("ask", path, "Who?", "--model", tiny_video_ckpt, *CPU), "junk.vidtok")


def test_a_vidtok_of_a_newer_format_asks_for_an_upgrade(clip, tiny_video_ckpt, tmp_path):
    path = vidtok_of(clip, tiny_video_ckpt, tmp_path)
    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"]["format_version"] = "99"
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + data[8 + size :])
    assert_one_line_error(run("info", path), "format 99", "upgrade llamavid")


def test_ctrl_c_during_an_encode_leaves_no_file(tiny_video_ckpt, tmp_path):
    """stderr is a terminal here (a pty), so the real progress bar is drawn; SIGINT goes once it shows a rate."""
    source = media.make_video(tmp_path / "long.mp4", seconds=120, fps=25, width=320, height=240)
    out = tmp_path / "out"
    out.mkdir()
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llamavid_cli",
            "encode",
            str(source),
            "--model",
            str(tiny_video_ckpt),
            "-o",
            str(out / "long.vidtok"),
            "--fps",
            "25",
            *CPU,
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a shell's foreground job
    )
    os.close(slave)
    seen, signalled = b"", False
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not signalled and b"frames/s" in seen:
                proc.send_signal(signal.SIGINT)
                signalled = True
            if proc.poll() is not None and not ready:
                break
        proc.wait(timeout=60)
    finally:
        os.close(master)
        proc.kill()
        proc.wait()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", seen.decode(errors="replace"))
    assert signalled, "no progress line appeared:\n" + text[-2000:]
    assert proc.returncode == 130, text[-2000:]
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1] == "Interrupted."
    assert sorted(p.name for p in out.iterdir()) == []  # neither the .vidtok nor its temp file
