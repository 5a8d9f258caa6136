"""A write that fails (a full disk, a file in the way) is one line naming the file and why, never
a traceback, never a half-written file; the encode cache's failures are only a warning for `ask`.

The disk really fills: the command runs in a child process whose file-size limit
(RLIMIT_FSIZE) is below the size of what it writes, with SIGXFSZ ignored, so every write past
the limit fails with EFBIG ("File too large") exactly as on a full disk.
"""

import json
import os
import resource
import signal
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli.cli.app import app

CPU = ["--device", "cpu", "--dtype", "float32"]


def run(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def with_small_disk(limit):
    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def llamavid_on_a_full_disk(limit, *args):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "llamavid_cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        preexec_fn=with_small_disk(limit),
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=3, fps=5)


def test_encode_on_a_full_disk_keeps_the_old_file_and_leaves_no_temp(clip, tiny_video_ckpt, tmp_path):
    target = tmp_path / "clip.vidtok"
    assert run("encode", clip, "-o", target, "--model", tiny_video_ckpt, *CPU).exit_code == 0
    before = target.read_bytes()
    result = llamavid_on_a_full_disk(
        len(before) // 2, "encode", clip, "-o", target, "--keep-features", "--force", "--model", tiny_video_ckpt, *CPU
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0] == f"Error: cannot write {target} (File too large)"
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.vidtok"]


def test_ask_answers_when_the_cache_cannot_be_written(clip, tiny_video_ckpt, tmp_path):
    cache = tmp_path / "cache"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamavid_cli",
            "ask",
            str(clip),
            "Who?",
            "--model",
            str(tiny_video_ckpt),
            "-t",
            "0",
            "--max-new-tokens",
            "3",
            "--json",
            *CPU,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=with_small_disk(2000),
        env={**os.environ, "LLAMAVID_CACHE_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "300"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 3
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("Warning: the encode cache could not keep this encode"), warning
    assert "File too large" in warning[0] and str(cache) in warning[0]
    assert list(cache.iterdir()) == []  # no temp file left behind


def test_ask_answers_when_the_cache_folder_is_a_file(clip, tiny_video_ckpt, tmp_path):
    in_the_way = tmp_path / "cache"
    in_the_way.write_text("not a folder")
    result = run(
        "ask",
        clip,
        "Who?",
        "--model",
        tiny_video_ckpt,
        "-t",
        0,
        "--max-new-tokens",
        3,
        *CPU,
        env={"LLAMAVID_CACHE_DIR": str(in_the_way)},
    )
    assert result.exit_code == 0 and result.stdout.strip(), result.stderr
    assert result.stderr.strip() == (
        f"Warning: the encode cache could not keep this encode: {in_the_way} is a file, not a folder; free space "
        "there, set LLAMAVID_CACHE_DIR, or pass --no-cache"
    )
    assert in_the_way.read_text() == "not a folder"


def test_summarize_reports_a_summary_it_cannot_write_and_goes_on(tiny_video_ckpt, tmp_path):
    library = tmp_path / "library"
    for day in ("day1", "day2"):
        (library / day).mkdir(parents=True)
        media.make_video(library / day / "clip.mp4", seconds=1, fps=5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "day1").write_text("a file where a folder must go")
    result = run(
        "summarize", library, "-r", "--out-dir", out, "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 2, *CPU
    )
    assert result.exit_code == 1
    assert f"cannot write {out / 'day1' / 'clip.mp4.txt'} (a file is in the way of its folder)" in result.stderr
    assert "Traceback" not in result.stderr and "1 of 2 summarised" in result.stderr
    assert (out / "day2" / "clip.mp4.txt").read_text().strip()


def test_ctrl_c_in_the_middle_of_a_write_leaves_the_old_file_and_no_temp(tmp_path):
    from llamavid_cli import paths

    target = tmp_path / "summary.txt"
    target.write_text("the previous run's summary\n")
    with pytest.raises(KeyboardInterrupt):
        with paths.replacing(target) as tmp:
            tmp.write_text("half a sum")
            raise KeyboardInterrupt  # what Ctrl-C raises in the writing thread
    assert target.read_text() == "the previous run's summary\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.txt"]


def test_written_files_get_the_users_usual_permissions_not_the_temp_files(clip, tiny_video_ckpt, tmp_path):
    target = tmp_path / "clip.vidtok"
    assert run("encode", clip, "-o", target, "--model", tiny_video_ckpt, *CPU).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
