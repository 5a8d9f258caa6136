"""summarize --out-dir mirrors the input tree and never writes two inputs' results to one file."""

import json

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli.cli.app import app

CPU = ["--device", "cpu", "--dtype", "float32"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def summarize(*args, model):
    return run("summarize", *args, "--model", model, "-t", 0, "--max-new-tokens", 2, *CPU)


@pytest.fixture
def library(tmp_path):
    """day1/clip.mp4, day2/clip.mp4 (same name, different videos) and day2/clip.vidtok."""
    root = tmp_path / "library"
    for day, seconds in (("day1", 1), ("day2", 2)):
        (root / day).mkdir(parents=True)
        media.make_video(root / day / "clip.mp4", seconds=seconds, fps=5)
    return root


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_same_names_in_different_folders_get_their_own_files(library, tiny_video_ckpt, tmp_path):
    out = tmp_path / "out"
    result = summarize(library, "--recursive", "--out-dir", out, "--format", "json", model=tiny_video_ckpt)
    assert result.exit_code == 0, result.stderr
    assert "2 of 2 summarised" in result.stderr
    assert tree(out) == ["day1/clip.mp4.json", "day2/clip.mp4.json"]
    frames = {day: json.loads((out / day / "clip.mp4.json").read_text())["frames"] for day in ("day1", "day2")}
    assert frames == {"day1": 1, "day2": 2}  # each its own video's result


def test_a_video_and_its_vidtok_in_one_folder_do_not_collide(library, tiny_video_ckpt, tmp_path):
    made = run("encode", library / "day2" / "clip.mp4", "--model", tiny_video_ckpt, *CPU)
    assert made.exit_code == 0, made.stderr
    out = tmp_path / "out"
    result = summarize(library / "day2", "--out-dir", out, model=tiny_video_ckpt)
    assert result.exit_code == 0, result.stderr
    assert tree(out) == ["clip.mp4.txt", "clip.vidtok.txt"]


def test_skip_existing_skips_exactly_the_inputs_already_done(library, tiny_video_ckpt, tmp_path):
    out = tmp_path / "out"
    args = [library, "--recursive", "--out-dir", out]
    assert summarize(*args, model=tiny_video_ckpt).exit_code == 0
    (out / "day2" / "clip.mp4.txt").unlink()
    kept = (out / "day1" / "clip.mp4.txt").stat().st_mtime_ns
    again = summarize(*args, "--skip-existing", model=tiny_video_ckpt)
    assert again.exit_code == 0 and "1 of 1 summarised" in again.stderr, again.stderr
    assert tree(out) == ["day1/clip.mp4.txt", "day2/clip.mp4.txt"]
    assert (out / "day1" / "clip.mp4.txt").stat().st_mtime_ns == kept


def test_two_arguments_whose_files_would_share_a_summary_are_refused_before_any_work(library, tmp_path):
    out = tmp_path / "out"
    result = run("summarize", library / "day1", library / "day2", "--out-dir", out, "--model", tmp_path / "no-model")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: {library / 'day1' / 'clip.mp4'} and {library / 'day2' / 'clip.mp4'} would both be summarised to "
        f"{out / 'clip.mp4.txt'}; give their common parent folder (with --recursive) or run them separately"
    )
    assert not out.exists()


def test_a_glob_mirrors_the_tree_below_its_fixed_part(library, tiny_video_ckpt, tmp_path):
    out = tmp_path / "out"
    result = summarize(str(library / "**" / "*.mp4"), "--recursive", "--out-dir", out, model=tiny_video_ckpt)
    assert result.exit_code == 0, result.stderr
    assert tree(out) == ["day1/clip.mp4.txt", "day2/clip.mp4.txt"]


def test_format_md_without_out_dir_prints_markdown(library, tiny_video_ckpt):
    result = summarize(library / "day1" / "clip.mp4", "--format", "md", model=tiny_video_ckpt)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"# {library / 'day1' / 'clip.mp4'}\n\n")


def test_skip_existing_without_out_dir_is_refused(library, tmp_path):
    result = run("summarize", library, "--skip-existing", "--model", tmp_path / "no-model")
    assert result.exit_code == 2 and result.stderr.startswith("Error: --skip-existing needs --out-dir")
