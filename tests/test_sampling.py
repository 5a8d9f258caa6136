"""Frame choice has one owner: `video.Sampling` validates itself, `video.count_frames` predicts
exactly what `video.iter_frames` yields, and every command refuses a bad range the same way."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import typer
from typer.testing import CliRunner

import media
from llamavid_cli import pipeline
from llamavid_cli.cli.app import app
from llamavid_cli.cli.options import parse_time
from llamavid_cli.errors import UsageError
from llamavid_cli.video import Sampling, count_frames, iter_frames, probe

CPU = ["--device", "cpu", "--dtype", "float32"]


def run(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return {
        "30fps_10s": media.make_video(root / "clip.mp4", seconds=10, fps=30, width=32, height=32),
        "ntsc": media.make_video(root / "ntsc.mp4", seconds=4, fps=Fraction(30000, 1001), width=32, height=32),
        "short": media.make_video(root / "short.mp4", seconds=0.6, fps=10, width=32, height=32),
        "mkv": media.make_video(root / "clip.mkv", seconds=5, fps=12, width=32, height=32),
    }


# --- count_frames is what iter_frames yields ------------------------------------------------

GRID = {
    "30fps_10s": dict(fps=(1.0, 0.7, 4.0), start=(None, 0.5, 3.3), end=(None, 2.0, 9.5), max_frames=(None, 1, 4)),
    "ntsc": dict(fps=(1.0, 2.5), start=(None, 0.5, 1.01), end=(None, 3.0), max_frames=(None, 2)),
    "short": dict(fps=(1.0, 3.0, 50.0), start=(None, 0.25), end=(None, 0.5), max_frames=(None, 1, 2)),
    "mkv": dict(fps=(1.0, 0.4), start=(None, 1.5), end=(None, 4.2), max_frames=(None, 3)),
}


def _grid(name):
    axes = GRID[name]
    for fps, start, end, max_frames in itertools.product(axes["fps"], axes["start"], axes["end"], axes["max_frames"]):
        if end is not None and end <= (start or 0.0):
            continue
        yield Sampling(fps, max_frames, start, end)


@pytest.mark.parametrize("name", list(GRID))
def test_count_frames_equals_the_frames_iter_frames_yields(clips, name):
    info = probe(clips[name])
    for sampling in _grid(name):
        frames = list(iter_frames(clips[name], sampling))
        assert count_frames(info, sampling) == len(frames), sampling
        # and the frames are the ones the sampling asks for
        assert all((sampling.start or 0) - 1e-6 <= f.time < (sampling.end or math.inf) for f in frames)


def test_start_half_a_second_in_counts_nine_frames_everywhere(clips, tiny_video_ckpt, tmp_path):
    """30 fps, 10 s, --start 0.5: frames 30, 60, …, 270 — nine, as encode writes them (the old
    estimate in pipeline said ten)."""
    path = clips["30fps_10s"]
    sampling = Sampling(start=0.5)
    assert [f.index for f in iter_frames(path, sampling)] == list(range(30, 300, 30))
    assert count_frames(probe(path), sampling) == 9
    assert pipeline.expected_frames(path, sampling) == 9
    out = tmp_path / "clip.vidtok"
    result = run("encode", path, "--start", "0.5", "--model", tiny_video_ckpt, "-o", out, "--json", *CPU)
    assert result.exit_code == 0, result.stderr
    assert '"frames": 9' in result.stdout


def test_an_image_counts_one_frame(tmp_path):
    picture = media.make_image(tmp_path / "still.png")
    assert count_frames(probe(picture), Sampling()) == len(list(iter_frames(picture))) == 1


# --- Sampling validates itself --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0}, "--fps must be a number greater than 0, got 0"),
        ({"fps": -2.0}, "--fps must be a number greater than 0, got -2"),
        ({"fps": math.inf}, "--fps must be a number greater than 0, got inf"),
        ({"fps": math.nan}, "--fps must be a number greater than 0, got nan"),
        ({"max_frames": 0}, "--max-frames must be a whole number of at least 1, got 0"),
        ({"max_frames": 2.5}, "--max-frames must be a whole number of at least 1, got 2.5"),
        ({"start": -1.0}, "--start must be a time of 0 s or later, got -1"),
        ({"start": 5.0, "end": 3.0}, "--start (5 s) must be before --end (3 s)"),
        ({"start": 5.0, "end": 5.0}, "--start (5 s) must be before --end (5 s)"),
        ({"end": 0.0}, "--end (0 s) must be later than the start of the video"),
    ],
)
def test_a_bad_sampling_is_refused_when_made(kwargs, message):
    with pytest.raises(UsageError) as err:
        Sampling(**kwargs)
    assert str(err.value) == message


def test_equal_samplings_are_spelled_alike():
    """The encode cache keys on as_dict(): --fps 1 and --fps 1.0 are one entry."""
    assert Sampling(1, None, 2, 4).as_dict() == Sampling(1.0, None, 2.0, 4.0).as_dict()
    assert Sampling(fps=1) == Sampling()
    with pytest.raises(AttributeError):
        Sampling().fps = 2.0  # frozen: one sampling cannot turn into another on the way


def test_pipeline_sampling_is_the_video_one():
    assert pipeline.Sampling is Sampling


@pytest.mark.parametrize("command", ["ask", "chat", "encode", "summarize"])
def test_fps_zero_is_a_usage_error_in_every_command(clips, tiny_video_ckpt, command):
    args = [
        command,
        clips["short"],
        *(["Who?"] if command == "ask" else []),
        "--fps",
        0,
        "--model",
        tiny_video_ckpt,
        *CPU,
    ]
    result = run(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == "Error: --fps must be a number greater than 0, got 0"


@pytest.mark.parametrize("command", ["ask", "summarize"])
def test_fps_zero_in_the_config_file_fails_the_same_way(clips, tiny_video_ckpt, tmp_path, monkeypatch, command):
    monkeypatch.setenv("LLAMAVID_CONFIG_DIR", str(tmp_path))
    (tmp_path / "config.toml").write_text("fps = 0\n")
    args = [command, clips["short"], *(["Who?"] if command == "ask" else []), "--model", tiny_video_ckpt, *CPU]
    result = run(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == "Error: --fps must be a number greater than 0, got 0"


# --- time ranges ----------------------------------------------------------------------------


def test_start_past_the_end_names_the_file_and_its_duration(clips):
    with pytest.raises(UsageError) as err:
        count_frames(probe(clips["30fps_10s"]), Sampling(start=12.0))
    assert str(err.value) == "--start 12 s is past the end of clip.mp4 (10.0 s)"
    with pytest.raises(UsageError, match="past the end"):
        list(iter_frames(clips["30fps_10s"], Sampling(start=10.0)))


def test_start_past_the_end_fails_before_any_model_is_chosen_or_loaded(clips, hub):
    """With --model auto nothing is cached and the tests are offline: the range error must come
    first, from the metadata, not a download error after choosing a model."""
    result = run("ask", clips["30fps_10s"], "Who?", "--start", "12", *CPU)
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --start 12 s is past the end of clip.mp4 (10.0 s)"


def test_start_after_end_on_the_command_line(clips, tiny_video_ckpt):
    result = run("ask", clips["30fps_10s"], "Who?", "--start", "5", "--end", "0:03", "--model", tiny_video_ckpt, *CPU)
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --start (5 s) must be before --end (3 s)"


def test_start_past_the_end_with_a_named_model(clips, tiny_video_ckpt):
    for command in ("ask", "chat"):
        args = [
            command,
            clips["30fps_10s"],
            *(["Who?"] if command == "ask" else []),
            "--start",
            "0:12",
            "--model",
            tiny_video_ckpt,
            *CPU,
        ]
        result = run(*args)
        assert result.exit_code == 2, (command, result.stderr)
        assert result.stderr.strip() == "Error: --start 12 s is past the end of clip.mp4 (10.0 s)"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("75", 75.0), ("75.5", 75.5), ("1:15", 75.0), ("0:01:15", 75.0), ("1:00:00", 3600.0), ("0:59.5", 59.5)],
)
def test_times(text, seconds):
    assert parse_time(text, "--start") == seconds


@pytest.mark.parametrize("text", ["1:75", "1:60", "1:60:00", "0:00:60", "1:2:3:4", "abc", "-3"])
def test_not_times(text):
    with pytest.raises(typer.BadParameter, match="is not a time"):
        parse_time(text, "--start")


def test_a_bad_time_is_a_usage_error(clips, tiny_video_ckpt):
    result = run("ask", clips["30fps_10s"], "Who?", "--start", "1:75", "--model", tiny_video_ckpt, *CPU)
    assert result.exit_code == 2
    assert "'1:75' is not a time" in result.stderr and "Traceback" not in result.stderr
