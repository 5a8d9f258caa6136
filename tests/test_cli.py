"""End-to-end CLI behaviour on the tiny checkpoint: stdout, stderr, exit codes and files."""

import json
import re

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli.cli.app import app

CPU = ["--device", "cpu", "--dtype", "float32"]
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=4, fps=10, width=96, height=64)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    return media.make_image(tmp_path_factory.mktemp("media") / "still.png", width=80, height=48)


def run(*args, input=None, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input, env=env)


def ask_json(source, model, *extra):
    result = run(
        "ask",
        source,
        "What is happening?",
        "--model",
        model,
        "--temperature",
        0,
        "--max-new-tokens",
        6,
        "--json",
        *CPU,
        *extra,
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_encode_writes_a_vidtok_that_info_describes(clip, tiny_video_ckpt, tmp_path):
    out = tmp_path / "clip.vidtok"
    result = run("encode", clip, "--model", tiny_video_ckpt, "--prompt", "Describe it.", "-o", out, *CPU)
    assert result.exit_code == 0, result.stderr
    assert out.is_file() and result.stdout == ""
    info = run("info", out, "--json")
    data = json.loads(info.stdout)
    assert data["frames"] == 4 and data["tokens_per_frame"] == 2 and data["prompt"] == "Describe it."
    assert data["features"] is None and data["sampling"]["fps"] == 1.0
    assert [name for name in tmp_path.iterdir()] == [out]  # no temp file left behind


def test_ask_json_traces_the_answer_token_by_token(clip, tiny_video_ckpt):
    data = ask_json(clip, tiny_video_ckpt)
    assert {"answer", "prompt_ids", "output_ids", "model", "frames", "timings"} <= set(data)
    assert data["prompt_ids"].count(-200) == 1 and data["prompt_ids"][0] == 1
    assert 0 < len(data["output_ids"]) <= 6 and data["frames"] == 4


def test_greedy_ask_is_reproducible(clip, tiny_video_ckpt):
    assert ask_json(clip, tiny_video_ckpt)["output_ids"] == ask_json(clip, tiny_video_ckpt)["output_ids"]


def test_ask_streams_plain_text_to_stdout(clip, tiny_video_ckpt):
    streamed = run("ask", clip, "What is happening?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 6, *CPU)
    assert streamed.exit_code == 0, streamed.stderr
    assert streamed.stdout == ask_json(clip, tiny_video_ckpt)["answer"] + "\n"


def test_ask_on_an_image(picture, tiny_image_ckpt):
    data = ask_json(picture, tiny_image_ckpt)
    assert data["frames"] == 1


def test_ask_on_a_vidtok_with_features_recomputes_context_for_the_question(clip, tiny_video_ckpt, tmp_path):
    out = tmp_path / "f.vidtok"
    assert run("encode", clip, "--model", tiny_video_ckpt, "-o", out, "--keep-features", *CPU).exit_code == 0
    result = run(
        "ask", out, "What is happening?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 4, "--json", *CPU
    )
    assert result.exit_code == 0, result.stderr
    assert "no features" not in result.stderr
    assert json.loads(result.stdout)["frames"] == 4


def test_ask_on_a_vidtok_without_features_says_so(clip, tiny_video_ckpt, tmp_path):
    out = tmp_path / "plain.vidtok"
    assert run("encode", clip, "--model", tiny_video_ckpt, "-o", out, *CPU).exit_code == 0
    result = run("ask", out, "Who?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 3, *CPU)
    assert result.exit_code == 0
    assert "holds no features" in result.stderr


def test_vidtok_from_another_model_is_refused(clip, tiny_video_ckpt, tiny_grid_ckpt, tmp_path):
    out = tmp_path / "v.vidtok"
    assert run("encode", clip, "--model", tiny_video_ckpt, "-o", out, *CPU).exit_code == 0
    result = run("ask", out, "Who?", "--model", tiny_grid_ckpt, *CPU)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "encoded with" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing.mp4", "does not exist"),
        (lambda p: (p / "notes.mp4").write_text("hello") and p / "notes.mp4", "Error: "),
        (lambda p: media.make_audio(p / "song.m4a"), "Error: "),
    ],
)
def test_bad_sources_give_one_line_and_no_traceback(make, expected, tiny_video_ckpt, tmp_path):
    result = run("ask", make(tmp_path), "Who?", "--model", tiny_video_ckpt, *CPU)
    assert result.exit_code != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_model_folder_without_config_is_one_line(clip, tmp_path):
    result = run("ask", clip, "Who?", "--model", tmp_path, *CPU)
    assert result.exit_code == 1
    assert (
        result.stderr.strip() == f"Error: {tmp_path} has no config.json: point --model at a LLaMA-VID checkpoint folder"
    )


def test_encode_to_a_missing_folder_writes_nothing(clip, tiny_video_ckpt, tmp_path):
    result = run("encode", clip, "--model", tiny_video_ckpt, "-o", tmp_path / "nope" / "x.vidtok", *CPU)
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "nope").exists()


def test_no_color_means_no_escape_codes(clip, tiny_video_ckpt):
    result = run(
        "ask", clip, "Who?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 3, *CPU, env={"NO_COLOR": "1"}
    )
    assert result.exit_code == 0 and not ANSI.search(result.stderr + result.stdout)


def test_chat_reads_one_question_per_line_from_piped_stdin(clip, tiny_video_ckpt, tmp_path):
    saved = tmp_path / "history.json"
    result = run(
        "chat",
        clip,
        "--model",
        tiny_video_ckpt,
        "-t",
        0,
        "--max-new-tokens",
        4,
        *CPU,
        input=f"Who is there?\nWhat next?\n/save {saved}\n",
    )
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    pairs = json.loads(saved.read_text())
    assert [q for q, _ in pairs] == ["Who is there?", "What next?"]
    # the saved pairs continue the conversation in `ask --history`
    follow = run(
        "ask",
        clip,
        "And then?",
        "--model",
        tiny_video_ckpt,
        "-t",
        0,
        "--max-new-tokens",
        2,
        "--history",
        saved,
        "--json",
        *CPU,
    )
    assert follow.exit_code == 0, follow.stderr
    assert json.loads(follow.stdout)["prompt_ids"].count(-200) == 1


def test_chat_save_keeps_an_existing_file_unless_told_with_save_bang(clip, tiny_video_ckpt, tmp_path):
    kept, replaced = tmp_path / "notes.md", tmp_path / "old.md"
    kept.write_text("mine\n")
    replaced.write_text("old\n")
    missing_dir = tmp_path / "no" / "such" / "dir.md"
    result = run(
        "chat",
        clip,
        "--model",
        tiny_video_ckpt,
        "-t",
        0,
        "--max-new-tokens",
        2,
        *CPU,
        input=f"Who?\n/save {kept}\n/save! {replaced}\n/save {missing_dir}\nAnd?\n",
    )
    assert result.exit_code == 0, result.stderr
    assert kept.read_text() == "mine\n" and "/save!" in result.stderr
    assert "Who?" in replaced.read_text()
    assert "could not save" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stdout.splitlines()) == 2  # the conversation went on after each failed save


def test_summarize_reports_a_corrupt_file_and_finishes_the_batch(tiny_video_ckpt, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        media.make_video(folder / name, seconds=2, fps=10)
    media.truncate(media.make_video(folder / "c.mp4", seconds=2, fps=10), 0.05)
    result = run("summarize", folder, "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 3, "--json", *CPU)
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(line["source"].rsplit("/", 1)[-1] for line in lines if "answer" in line) == ["a.mp4", "b.mp4"]
    assert "c.mp4" in result.stderr


def test_summarize_shards_cover_the_folder_exactly_once(tiny_video_ckpt, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(5):
        media.make_video(folder / f"v{i}.mp4", seconds=1, fps=5)
    seen = []
    for part in ("1/2", "2/2"):
        result = run(
            "summarize",
            folder,
            "--model",
            tiny_video_ckpt,
            "-t",
            0,
            "--max-new-tokens",
            1,
            "--json",
            "--shard",
            part,
            *CPU,
        )
        assert result.exit_code == 0, result.stderr
        seen += [json.loads(line)["source"] for line in result.stdout.splitlines()]
    assert sorted(seen) == sorted(str(folder / f"v{i}.mp4") for i in range(5))


def test_every_command_has_help():
    for command in ("ask", "encode", "info", "chat", "summarize"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Usage:" in result.stdout


def test_man_page_is_generated_from_the_cli():
    from pathlib import Path

    from llamavid_cli.cli.manpage import render

    page = Path(__file__).resolve().parents[1] / "man" / "llamavid.1"
    assert page.read_text() == render(app), "regenerate: python -m llamavid_cli.cli.manpage > man/llamavid.1"


@pytest.fixture(scope="module")
def small_context_ckpt(tmp_path_factory):
    """A tiny short-video model with a 256-token context, so a 2-minute clip cannot fit."""
    import checkpoint_factory as factory

    return factory.write_checkpoint(tmp_path_factory.mktemp("ckpt") / "small-context", max_position_embeddings=256)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "long.mp4", seconds=120, fps=2, width=32, height=32)


def test_context_guard_refuses_before_decoding_with_the_numbers(long_clip, small_context_ckpt):
    result = run("ask", long_clip, "Who?", "--model", small_context_ckpt, "--max-new-tokens", 16, *CPU)
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith("Error: 120 frames × 2 tokens") and "holds 256" in message and "--fit" in message


def test_fit_samples_fewer_frames_until_the_video_fits(long_clip, small_context_ckpt):
    result = run(
        "ask",
        long_clip,
        "Who?",
        "--model",
        small_context_ckpt,
        "--max-new-tokens",
        16,
        "--fit",
        "-t",
        0,
        "--json",
        *CPU,
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert 0 < data["frames"] < 120
    assert len([i for i in data["prompt_ids"] if i != -200]) + 2 * data["frames"] + 16 <= 256
    assert "--fit" in result.stderr


def test_settings_file_then_environment_then_flags(clip, tiny_video_ckpt, tmp_path, monkeypatch):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    monkeypatch.setenv("LLAMAVID_CONFIG_DIR", str(config_dir))
    (config_dir / "config.toml").write_text(f'model = "{tiny_video_ckpt}"\ndevice = "cpu"\ndtype = "float32"\n')
    args = ["ask", clip, "Who?", "-t", 0, "--max-new-tokens", 2, "--json"]
    from_file = run(*args)
    assert from_file.exit_code == 0, from_file.stderr
    assert json.loads(from_file.stdout)["model"] == str(tiny_video_ckpt)
    from_env = run(*args, env={"LLAMAVID_MODEL": str(tmp_path / "elsewhere")})
    assert from_env.exit_code == 1 and "elsewhere" in from_env.stderr
    from_flag = run(*args, "--model", tiny_video_ckpt, env={"LLAMAVID_MODEL": str(tmp_path / "elsewhere")})
    assert from_flag.exit_code == 0


def test_a_bad_settings_file_is_one_line(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAVID_CONFIG_DIR", str(tmp_path))
    (tmp_path / "config.toml").write_text("fps = 'fast'\n")
    result = run("ask", clip, "Who?")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {tmp_path / 'config.toml'}: fps must be a float, not 'fast'"


def test_every_option_of_every_command_is_in_the_man_page():
    from pathlib import Path

    import typer.main

    page = (Path(__file__).resolve().parents[1] / "man" / "llamavid.1").read_text().replace("\\-", "-")

    def walk(command, prefix):
        if hasattr(command, "list_commands"):
            for name in command.list_commands(None):
                yield from walk(command.get_command(None, name), f"{prefix} {name}")
        else:
            yield prefix, command

    for name, command in walk(typer.main.get_command(app), "llamavid"):
        assert f".SH {name}" in page, name
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-") and opt not in ("--help", "-h"):
                    assert opt in page, f"{name}: {opt} is missing from man/llamavid.1"


def test_auto_model_picks_the_short_model_when_the_video_fits(clip, hub):
    result = run("ask", clip, "Who?", *CPU)
    assert result.exit_code == 1  # nothing is cached and the tests are offline …
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Using vid-7b: 4 frames fit its 4096-token context (downloads about 14 GB the first time)."
    assert lines[1].startswith("Error: model YanweiLi/llama-vid-7b-full-224-video-fps-1 is not in the local")


def test_auto_model_picks_the_long_model_for_a_long_video(tmp_path, hub):
    movie = media.make_video(tmp_path / "movie.mp4", seconds=2400, fps=1, width=16, height=16)
    result = run("ask", movie, "Who is the villain?", *CPU)
    assert result.stderr.startswith(
        "Using long-7b: 2400 frames need about 5472 tokens, more than the short model's 4096"
    )


def test_long_video_mode_can_be_forced_on_a_short_checkpoint(clip, tiny_video_ckpt):
    data = ask_json(clip, tiny_video_ckpt, "--long-video")
    assert data["prompt_ids"].count(-200) == 2 * data["frames"] and data["long_video"] is True


def test_summarize_writes_one_file_per_video_and_resumes(tiny_video_ckpt, tmp_path):
    folder = tmp_path / "library"
    (folder / "trip").mkdir(parents=True)
    media.make_video(folder / "a.mp4", seconds=1, fps=5)
    media.make_video(folder / "trip" / "b.mkv", seconds=1, fps=5)
    (folder / "notes.txt").write_text("not a video")
    out = tmp_path / "summaries"
    args = [
        "summarize",
        folder,
        "--recursive",
        "--out-dir",
        out,
        "--format",
        "md",
        "--model",
        tiny_video_ckpt,
        "-t",
        0,
        "--max-new-tokens",
        2,
        *CPU,
    ]
    first = run(*args)
    assert first.exit_code == 0, first.stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.md")) == ["a.mp4.md", "trip/b.mkv.md"]
    assert (out / "a.mp4.md").read_text().startswith("# a.mp4\n\n")
    second = run(*args, "--skip-existing")
    assert second.exit_code == 0 and "Nothing to summarise." in second.stderr


def test_summarize_takes_globs_and_json_formats(tiny_video_ckpt, tmp_path):
    for name in ("x.mp4", "y.mp4"):
        media.make_video(tmp_path / name, seconds=1, fps=5)
    out = tmp_path / "out"
    result = run(
        "summarize",
        str(tmp_path / "*.mp4"),
        "--out-dir",
        out,
        "--format",
        "json",
        "--model",
        tiny_video_ckpt,
        "-t",
        0,
        "--max-new-tokens",
        2,
        *CPU,
    )
    assert result.exit_code == 0, result.stderr
    assert {json.loads((out / f"{n}.mp4.json").read_text())["frames"] for n in ("x", "y")} == {1}


def test_the_options_of_llamavid_itself_are_in_the_man_page():
    from pathlib import Path

    import typer.main

    page = (Path(__file__).resolve().parents[1] / "man" / "llamavid.1").read_text().replace("\\-", "-")
    options = page.split(".SH OPTIONS", 1)[1].split(".SH llamavid", 1)[0]
    for param in typer.main.get_command(app).params:
        for flag in param.opts:
            assert flag in options, flag
    assert "--verbose" in options and "--version" in options
