"""The encode cache: a second question skips decoding and the tower; ranges come from it too."""

import json
import os

import pytest
from typer.testing import CliRunner

import media
from llamavid_cli import cache, pipeline
from llamavid_cli.cli.app import app
from llamavid_cli.loader import load_model
from llamavid_cli.subtitles import Cue

GREEDY = pipeline.GenerationSettings(temperature=0, max_new_tokens=3)


@pytest.fixture(scope="module")
def loaded(tiny_video_ckpt):
    model = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    model.tower_calls = []
    model.model.vision.register_forward_hook(lambda *_: model.tower_calls.append(1))
    return model


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=6, fps=5)


def ask(loaded, clip, question="Who?", **kwargs):
    loaded.tower_calls.clear()
    result = pipeline.ask(loaded, clip, question, generation=GREEDY, **kwargs)
    return result, len(loaded.tower_calls)


def test_second_question_comes_from_the_cache_without_tower_work(loaded, clip):
    first, calls = ask(loaded, clip, "Who is there?")
    assert calls > 0 and len(cache.entries()) == 1
    second, calls = ask(loaded, clip, "What happens?")
    assert calls == 0 and second.frames == first.frames == 6
    again, _ = ask(loaded, clip, "Who is there?")
    assert again.output_ids == first.output_ids  # features round-trip through float16 storage


def test_a_time_range_is_cut_from_the_cached_whole_video(loaded, clip):
    ask(loaded, clip)
    part, calls = ask(loaded, clip, sampling=pipeline.Sampling(start=2.0, end=4.0))
    assert calls == 0 and part.frames == 2


def test_no_cache_neither_reads_nor_writes(loaded, clip):
    _, calls = ask(loaded, clip, use_cache=False)
    assert calls > 0 and cache.entries() == []


def test_least_recently_used_entries_are_evicted_past_the_limit(loaded, tmp_path, monkeypatch):
    clips = [media.make_video(tmp_path / f"c{i}.mp4", seconds=2 + i, fps=5) for i in range(3)]  # distinct content
    ask(loaded, clips[0])
    two_frames = cache.entries()[0].size
    # room for clips 1 and 2 (3 + 4 frames ≈ 3.5 × two frames) but not all three (9 frames ≈ 4.5 ×)
    monkeypatch.setenv("LLAMAVID_CACHE_SIZE", str(4 * two_frames))
    ask(loaded, clips[1])
    os.utime(cache.entries()[-1].path, (1, 1))  # make clip 0's entry the oldest for sure
    ask(loaded, clips[2])
    names = {pipeline.vidtok.read_header(e.path).source["name"] for e in cache.entries()}
    assert names == {"c1.mp4", "c2.mp4"}


def test_cache_list_and_clear(loaded, clip):
    ask(loaded, clip)
    listed = CliRunner().invoke(app, ["cache", "list", "--json"])
    data = json.loads(listed.stdout)
    assert [e["source"] for e in data["entries"]] == ["clip.mp4"] and data["entries"][0]["frames"] == 6
    cleared = CliRunner().invoke(app, ["cache", "clear"])
    assert cleared.exit_code == 0 and cache.entries() == []


def test_a_damaged_entry_is_dropped_not_trusted(loaded, clip):
    ask(loaded, clip)
    entry = cache.entries()[0].path
    entry.write_bytes(entry.read_bytes()[:100])
    _, calls = ask(loaded, clip)
    assert calls > 0  # re-encoded


def orphan(name, age_s, size=1000):
    """A temp file as a killed writer leaves it (paths.replacing's naming), last written `age_s` ago."""
    path = cache.cache_dir() / f".{name}.vidtok.abc123.tmp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    os.utime(path, (path.stat().st_mtime - age_s,) * 2)
    return path


def test_cache_list_shows_one_row_per_entry_in_the_limits_units(loaded, clip, monkeypatch):
    ask(loaded, clip)
    monkeypatch.setenv("LLAMAVID_CACHE_SIZE", "512M")
    listed = CliRunner().invoke(app, ["cache", "list"])
    assert listed.exit_code == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "clip.mp4" in line]
    size = cache.format_size(cache.entries()[0].size)
    assert len(rows) == 1 and "llama-vid-tiny-video" in rows[0] and size in rows[0], listed.stdout
    assert str(loaded.name) not in listed.stdout  # the folder's name, not its whole path
    assert f"1 entry, {size} of 512.0M in " in listed.stdout
    assert cache.format_size(512) == "512" and cache.format_size(3 * 1024**2 // 2) == "1.5M"
    assert cache.format_size(20 * 1024**3) == "20.0G" and cache.size_limit() == 512 * 1024**2


def test_a_bad_cache_size_is_refused_before_any_work(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAVID_CACHE_SIZE", "lots")
    for args in (["ask", clip, "Who?"], ["summarize", clip], ["cache", "list"]):
        result = CliRunner().invoke(
            app, [*map(str, args), *(["--model", str(tmp_path / "none")] if args[0] != "cache" else [])]
        )
        assert result.exit_code == 2 and result.stdout == "", result.stdout
        assert result.stderr.startswith("Error: LLAMAVID_CACHE_SIZE='lots' is not a size"), result.stderr
    assert (
        CliRunner()
        .invoke(app, ["ask", str(clip), "Who?", "--no-cache", "--model", str(tmp_path / "none")])
        .stderr.count("CACHE_SIZE")
        == 0
    )


def test_unfinished_writes_are_counted_listed_and_cleared(loaded, clip):
    ask(loaded, clip)
    left = orphan("dead", age_s=3600)
    data = json.loads(CliRunner().invoke(app, ["cache", "list", "--json"]).stdout)
    assert data["temp_files"] == [{"file": str(left), "bytes": 1000, "orphan": True}]
    assert data["bytes"] == cache.entries()[0].size + 1000
    text = CliRunner().invoke(app, ["cache", "list"]).stdout
    assert "1 unfinished write (1000)" in text
    cleared = CliRunner().invoke(app, ["cache", "clear"])
    assert cleared.stderr.strip() == "Removed 1 cached encode and 1 unfinished write."
    assert list(cache.cache_dir().iterdir()) == []


def test_eviction_removes_dead_writers_files_but_not_a_live_one(loaded, clip, monkeypatch):
    dead = orphan("dead", age_s=cache.ORPHAN_AGE + 60)
    live = orphan("live", age_s=5)
    ask(loaded, clip)  # stores an entry, then evicts
    assert not dead.exists() and live.exists()
    assert len(cache.entries()) == 1


CUES = [Cue(0.0, 1.5, "hello"), Cue(2.0, 3.0, "again")]


def test_a_transcript_is_kept_once_and_read_back(tmp_path):
    path = cache.store_transcript("abc", "tiny", CUES)
    assert cache.lookup_transcript("abc", "tiny") == CUES and cache.lookup_transcript("abc", "base") is None
    assert [e.path for e in cache.transcripts()] == [path] and cache.temp_files() == []
    path.write_text("{not json")
    assert cache.lookup_transcript("abc", "tiny") is None and not path.exists()  # dropped, not trusted


def test_a_transcript_the_cache_cannot_keep_is_one_line_not_a_crash(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LLAMAVID_CACHE_DIR", str(blocker))
    with pytest.raises(cache.CacheWriteError, match="could not keep this transcript: .* is a file, not a folder"):
        cache.store_transcript("abc", "tiny", CUES)


def test_transcripts_count_towards_the_limit_and_are_evicted_oldest_first(loaded, clip, monkeypatch):
    kept = cache.store_transcript("abc", "tiny", CUES)
    os.utime(kept, (1, 1))  # older than any encode
    monkeypatch.setenv("LLAMAVID_CACHE_SIZE", "1")  # nothing fits: all but the new encode goes
    ask(loaded, clip)
    assert not kept.exists() and len(cache.entries()) == 1
    assert cache.clear() == (1, 0) and cache.transcripts() == []
