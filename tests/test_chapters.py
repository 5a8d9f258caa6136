"""`llamavid chapters`: shot cuts found in the encode's decode pass, chapters at the cuts, five formats
that parse back with their own libraries, and a remuxed copy with the chapters in its container."""

import html
import json
import math
from pathlib import Path

import av
import pytest
import srt
import webvtt
from typer.testing import CliRunner

import media
from llamavid_cli import cache, chapters, pipeline, shots, video, vidtok
from llamavid_cli.chapters import Chapter
from llamavid_cli.cli.app import app

CPU = ["--device", "cpu", "--dtype", "float32"]
FPS = 10
SCENES = (2.5, 2.5, 2.5)
CUTS = media.scene_cuts(SCENES, FPS)  # [2.5, 5.0]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def chapters_cmd(*args, model, lengths=("--min-length", 1)):
    return run("chapters", *args, *lengths, "--model", model, "-t", 0, "--max-new-tokens", 3, *CPU)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Three flat scenes of different colours, two hard cuts (x264 veryfast, 64x48, 10 fps)."""
    return media.make_scenes(tmp_path_factory.mktemp("scenes") / "scenes.mp4", scenes=SCENES, fps=FPS)


def vtt_seconds(clock: str) -> float:
    """webvtt-py's cue clock ("00:00:12.500") in seconds (its start_in_seconds drops the milliseconds)."""
    h, m, sec = clock.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def near_cuts(times):
    """Every true cut has a found time at most one frame after or before it, and nothing else was found."""
    assert len(times) == len(CUTS), times
    for found, true in zip(times, CUTS):
        assert abs(found - true) <= 1 / FPS + 1e-6, (times, CUTS)


# ---- cuts ------------------------------------------------------------------------------------


def test_cuts_are_found_in_the_decode_that_samples_frames(scenes, decode_counter):
    detector = shots.CutDetector(FPS)
    chosen = [f.time for f in video.iter_frames(scenes, size=16, on_decoded=detector)]
    assert chosen == [float(t) for t in range(8)]  # the model's frames are those of a plain decode
    near_cuts(detector.cuts())
    decoded_once = decode_counter["frames"]
    assert decoded_once <= round(sum(SCENES) * FPS)  # one pass (non-reference frames may be skipped)


def test_a_decoded_stretch_is_reported_once_in_time_order(scenes):
    seen = []
    list(video.iter_frames(scenes, video.Sampling(fps=2.0), on_decoded=lambda f, t, gap: seen.append(t)))
    assert seen == sorted(set(seen)) and seen[0] == 0.0


# A fixed GOP (a keyframe every 2 s, by the clock: scenecut off, as streaming encoders run),
# sampled at 1 fps: the second half of each GOP is a tail nothing chosen needs.
FIXED_GOP = {"preset": "veryfast", "crf": "18", "x264-params": "keyint=20:min-keyint=20:scenecut=0"}


def test_a_cut_inside_a_gop_tail_is_found_and_tails_without_one_stay_undecoded(tmp_path):
    scenes = (1.5, 2.0, 4.5)  # cuts at frames 15 and 35, inside the tails of the first two GOPs
    clip = media.make_scenes(tmp_path / "fixed.mp4", scenes=scenes, fps=FPS, encoder_options=FIXED_GOP)
    detector = shots.CutDetector(FPS)
    chosen = [f.time for f in video.iter_frames(clip, size=16, on_decoded=detector)]
    assert chosen == [float(t) for t in range(8)]
    truth = media.scene_cuts(scenes, FPS)
    assert len(detector.cuts()) == len(truth)
    for found, true in zip(detector.cuts(), truth):
        assert abs(found - true) <= 1 / FPS + 1e-6, (detector.cuts(), truth)
    assert detector.gaps >= 1  # the tails with no cut in them were left out


def test_no_cut_is_found_across_a_tail_left_undecoded(tmp_path):
    clip = media.make_pan(tmp_path / "pan.mp4", encoder_options=FIXED_GOP)
    told, blind = shots.CutDetector(FPS), shots.CutDetector(FPS)

    def both(frame, time, gap):
        told(frame, time, gap)
        blind(frame, time, None)  # the same frames, the gaps not said

    list(video.iter_frames(clip, size=16, on_decoded=both))
    assert told.gaps >= 1
    assert blind.cuts()  # a second of panning scores like a cut between neighbours …
    assert told.cuts() == ()  # … so across a gap no cut is looked for
    assert told.filled == 0  # and panning keeps the colours: no tail was decoded after all


def test_a_cut_the_packet_sizes_hide_is_found_by_decoding_the_tail_after_all(tmp_path):
    scenes = (1.5, 2.0, 4.5)  # the cut at frame 35 lies in a tail; under grain its packets barely stand out
    clip = media.make_grainy_scenes(
        tmp_path / "grain.mp4", scenes=scenes, fps=FPS, encoder_options={**FIXED_GOP, "preset": "medium", "crf": "23"}
    )
    detector = shots.CutDetector(FPS)
    list(video.iter_frames(clip, size=16, on_decoded=detector))
    truth = media.scene_cuts(scenes, FPS)
    assert len(detector.cuts()) == len(truth), (detector.cuts(), truth)
    for found, true in zip(detector.cuts(), truth):
        assert abs(found - true) <= 1 / FPS + 1e-6, (detector.cuts(), truth)
    assert detector.filled >= 1  # the colours changed across a tail left out: it was decoded after all


def test_the_decoder_judges_packet_sizes_over_the_shortest_shot():
    assert video._SPIKE_SECONDS == shots.MIN_SHOT


def test_a_single_scene_has_no_cuts(tmp_path):
    clip = media.make_scenes(tmp_path / "one.mp4", scenes=(3.0,), fps=FPS)
    assert shots.detect(clip) == ()


# ---- where chapters begin --------------------------------------------------------------------


def test_plan_merges_shots_up_to_the_minimum_and_ends_on_the_next_cut():
    assert chapters.plan(0, 7.5, CUTS, 1, 10) == [(0, 2.5), (2.5, 5.0), (5.0, 7.5)]
    assert chapters.plan(0, 7.5, CUTS, 3, 10) == [(0, 7.5)]  # 5.0 would leave 2.5 s, under the minimum
    assert chapters.plan(0, 100, [5, 12, 50, 51, 90, 97], 10, 30) == [
        (0, 12),
        (12, 31.0),  # no cut in [22, 42]: 12…50 split in two equal parts
        (31.0, 50),
        (50, 70.0),
        (70.0, 90),
        (90, 100),
    ]


def test_plan_splits_a_long_stretch_without_cuts_evenly_and_keeps_a_short_video_whole():
    assert chapters.plan(0, 100, [], 10, 30) == [(0, 25.0), (25.0, 50.0), (50.0, 75.0), (75.0, 100)]
    assert chapters.plan(0, 7.5, CUTS, 30, 600) == [(0, 7.5)]


@pytest.mark.parametrize("cuts", [[], [3.3, 8.1, 8.2, 40.0, 41.0, 77.7, 99.0], [i * 0.7 for i in range(1, 300)]])
def test_plan_covers_the_range_within_the_bounds(cuts):
    spans = chapters.plan(0, 200, cuts, 10, 25)
    assert spans[0][0] == 0 and spans[-1][1] == 200
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert all(10 - 1e-6 <= b - a <= 25 + 1e-6 for a, b in spans)


def test_title_and_summary_cleaning():
    assert chapters.clean_title('Title: "A red room."\nmore', 1) == "A red room"
    assert chapters.clean_title("  \n", 4) == "Chapter 4"
    assert chapters.clean_summary("A man walks in.  Then he leaves.") == "A man walks in."


# ---- formats ---------------------------------------------------------------------------------

SAMPLE = [
    Chapter(0.0, 12.5, "Red; room = #1", "Someone \\ enters."),
    Chapter(12.5, 30.0, "Green <field> & sky", "A field."),
    Chapter(30.0, 65.25, "Blue", ""),
]


def test_every_format_parses_back(tmp_path):
    cues = webvtt.from_string(chapters.render(SAMPLE, "vtt"))
    assert [
        (vtt_seconds(c.start), vtt_seconds(c.end), html.unescape(c.text)) for c in cues
    ] == [  # entities, as players read them
        (0, 12.5, "Red; room = #1"),
        (12.5, 30, "Green <field> & sky"),
        (30, 65.25, "Blue"),
    ]
    subs = list(srt.parse(chapters.render(SAMPLE, "srt")))
    assert [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subs] == [
        (0, 12.5, "Red; room = #1\nSomeone \\ enters."),
        (12.5, 30, "Green <field> & sky\nA field."),
        (30, 65.25, "Blue"),
    ]
    assert json.loads(chapters.render(SAMPLE, "json")) == [c.as_dict() for c in SAMPLE]
    lines = chapters.render(SAMPLE, "youtube").splitlines()
    assert lines == ["0:00 Red; room = #1", "0:12 Green <field> & sky", "0:30 Blue"]


def test_ffmetadata_escapes_and_ffmpeg_reads_it_back(tmp_path):
    text = chapters.render(SAMPLE, "ffmetadata")
    assert text.startswith(";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=12500\n")
    assert "title=Red\\; room \\= \\#1\n" in text
    meta = tmp_path / "chapters.ffmetadata"
    meta.write_text(text)
    with av.open(str(meta), format="ffmetadata") as container:  # FFmpeg's own reader
        got = [(c["start"], c["end"], c["metadata"]["title"]) for c in container.chapters()]
    assert got == [(0, 12500, "Red; room = #1"), (12500, 30000, "Green <field> & sky"), (30000, 65250, "Blue")]


def test_youtube_refuses_what_youtube_would_ignore():
    with pytest.raises(chapters.ChapterError, match="at least 3 chapters of at least 10 s"):
        chapters.render([Chapter(0, 7.5, "All")], "youtube")
    with pytest.raises(chapters.ChapterError, match="at least 3 chapters"):
        chapters.render([Chapter(0, 12, "a"), Chapter(12, 19, "b"), Chapter(19, 40, "c")], "youtube")
    hours = chapters.render([Chapter(0, 1800, "a"), Chapter(1800, 3700, "b"), Chapter(3700, 4000, "c")], "youtube")
    assert hours.splitlines() == ["0:00:00 a", "0:30:00 b", "1:01:40 c"]


# ---- cuts kept with the encode ---------------------------------------------------------------


def test_cuts_travel_in_the_cache_and_the_vidtok(scenes, tiny_video_ckpt, tmp_path):
    made = run("encode", scenes, "-o", tmp_path / "s.vidtok", "--model", tiny_video_ckpt, *CPU)
    assert made.exit_code == 0, made.stderr
    header = vidtok.read_header(tmp_path / "s.vidtok")
    near_cuts(header.cuts)
    assert vidtok.read(tmp_path / "s.vidtok").cuts == header.cuts
    plain = run("encode", scenes, "-o", tmp_path / "p.vidtok", "--no-cuts", "--model", tiny_video_ckpt, *CPU)
    assert plain.exit_code == 0 and vidtok.read_header(tmp_path / "p.vidtok").cuts is None  # not looked for


def test_a_cached_question_keeps_the_cuts_so_chapters_decode_nothing_more(scenes, tiny_video_ckpt, decode_counter):
    asked = run("ask", scenes, "what?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 1, *CPU)
    assert asked.exit_code == 0, asked.stderr
    [entry] = cache.entries()
    near_cuts(vidtok.read_header(entry.path).cuts)  # found in the decode that answered
    decoded = decode_counter["frames"]
    result = chapters_cmd(scenes, "--format", "json", model=tiny_video_ckpt)
    assert result.exit_code == 0, result.stderr
    assert decode_counter["frames"] == decoded


def test_an_old_vidtok_without_cuts_still_reads(scenes, tiny_video_ckpt, tmp_path):
    from dataclasses import replace

    made = run("encode", scenes, "-o", tmp_path / "s.vidtok", "--model", tiny_video_ckpt, *CPU)
    assert made.exit_code == 0, made.stderr
    old = replace(vidtok.read(tmp_path / "s.vidtok"), cuts=None)
    vidtok.write(tmp_path / "old.vidtok", old)
    assert vidtok.read(tmp_path / "old.vidtok").cuts is None
    result = chapters_cmd(tmp_path / "old.vidtok", "--format", "json", model=tiny_video_ckpt)
    assert result.exit_code == 0, result.stderr
    assert "holds no shot cuts" in result.stderr
    assert len(json.loads(result.stdout)) == 1  # 7.5 s under --max-length, no cuts: one chapter


def test_damaged_cuts_are_refused_on_read(scenes, tiny_video_ckpt, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    made = run("encode", scenes, "-o", tmp_path / "s.vidtok", "--model", tiny_video_ckpt, *CPU)
    assert made.exit_code == 0, made.stderr
    with safe_open(str(tmp_path / "s.vidtok"), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for bad, why in (
        ("[5.0, 2.5]", "not in ascending order"),
        ('["x"]', "times of 0 s or later"),
        ("{}", "wrong type"),
    ):
        save_file(tensors, str(tmp_path / "bad.vidtok"), metadata={**meta, "cuts": bad})
        with pytest.raises(vidtok.VidtokError, match=why):
            vidtok.read_header(tmp_path / "bad.vidtok")


# ---- the command -----------------------------------------------------------------------------


def test_chapters_begin_at_the_cuts_in_every_format(scenes, tiny_video_ckpt, tmp_path, decode_counter):
    result = chapters_cmd(scenes, "--format", "json", model=tiny_video_ckpt)
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert [c["start"] for c in found][0] == 0 and math.isclose(found[-1]["end"], 7.5, abs_tol=0.11)
    near_cuts([c["start"] for c in found[1:]])
    assert all(c["title"] and set(c) == {"start", "end", "title", "summary"} for c in found)
    decoded = decode_counter["frames"]
    for fmt in ("vtt", "srt", "ffmetadata"):  # from the cache: nothing decoded again
        out = tmp_path / f"c.{fmt}"
        again = chapters_cmd(scenes, "--format", fmt, "-o", out, model=tiny_video_ckpt)
        assert again.exit_code == 0, again.stderr
        assert again.stdout == ""
    assert decode_counter["frames"] == decoded
    starts = [c["start"] for c in found]
    assert [vtt_seconds(c.start) for c in webvtt.read(str(tmp_path / "c.vtt"))] == pytest.approx(starts, abs=1e-3)
    assert [s.start.total_seconds() for s in srt.parse((tmp_path / "c.srt").read_text())] == pytest.approx(starts)
    with av.open(str(tmp_path / "c.ffmetadata"), format="ffmetadata") as meta:
        assert [c["start"] / 1000 for c in meta.chapters()] == pytest.approx(starts, abs=1e-3)


def test_a_cached_encode_without_cuts_decodes_once_for_them_and_keeps_them(scenes, tiny_video_ckpt):
    from dataclasses import replace

    asked = run("ask", scenes, "what?", "--model", tiny_video_ckpt, "-t", 0, "--max-new-tokens", 1, *CPU)
    assert asked.exit_code == 0, asked.stderr
    [entry] = cache.entries()
    vidtok.write(entry.path, replace(vidtok.read(entry.path), cuts=None))  # as made before cuts were kept
    assert vidtok.read_header(entry.path).cuts is None
    result = chapters_cmd(scenes, "--format", "json", model=tiny_video_ckpt)
    assert result.exit_code == 0, result.stderr
    near_cuts([c["start"] for c in json.loads(result.stdout)[1:]])
    near_cuts(vidtok.read_header(entry.path).cuts)


def test_embed_writes_a_copy_with_the_same_streams_and_the_chapters(scenes, tiny_video_ckpt, tmp_path):
    for name in ("copy.mkv", "copy.mp4"):
        target = tmp_path / name
        result = chapters_cmd(scenes, "--embed", target, "--format", "json", model=tiny_video_ckpt)
        assert result.exit_code == 0, result.stderr
        found = json.loads(result.stdout)
        with av.open(str(scenes)) as src, av.open(str(target)) as copy:
            a, b = src.streams.video[0], copy.streams.video[0]
            assert (a.codec_context.name, a.width, a.height) == (b.codec_context.name, b.width, b.height)
            before = [(round(float(p.pts * p.time_base), 3), bytes(p)) for p in src.demux(a) if p.size]
            after = [(round(float(p.pts * p.time_base), 3), bytes(p)) for p in copy.demux(b) if p.size]
            assert after == before  # the same packets at the same times: copied, not re-encoded
        with av.open(str(target)) as copy:
            media_streams = [s.type for s in copy.streams if s.type != "data"]  # MP4 keeps chapters in a text track
            assert media_streams == ["video"]
            got = [(c["start"] * c["time_base"], c["metadata"]["title"]) for c in copy.chapters()]
        assert [float(t) for t, _ in got] == pytest.approx([c["start"] for c in found], abs=1e-3)
        assert [title for _, title in got] == [c["title"] for c in found]
    again = chapters_cmd(scenes, "--embed", tmp_path / "copy.mkv", model=tiny_video_ckpt)
    assert (
        again.exit_code == 2
        and again.stderr.strip() == f"Error: {tmp_path / 'copy.mkv'} exists; pass --force (-f) to replace it"
    )


def test_a_video_shorter_than_the_minimum_is_one_chapter_and_youtube_says_why_not(scenes, tiny_video_ckpt):
    result = chapters_cmd(scenes, "--format", "json", model=tiny_video_ckpt, lengths=())  # default 30 s minimum
    assert result.exit_code == 0, result.stderr
    [only] = json.loads(result.stdout)
    assert only["start"] == 0 and math.isclose(only["end"], 7.5, abs_tol=0.11)
    refused = chapters_cmd(scenes, "--format", "youtube", model=tiny_video_ckpt, lengths=())
    assert refused.exit_code == 1 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: YouTube needs at least 3 chapters of at least 10 s each")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--min-length", 60, "--max-length", 30],
            "Error: --min-length (60 s) must not be longer than --max-length (30 s)",
        ),
        (
            ["--format", "xml"],
            "Error: --format 'xml' is not a chapter format; use one of vtt, srt, json, ffmetadata, youtube",
        ),
        (["--min-length", 0], "Error: --min-length must be a number of seconds greater than 0, got 0"),
        (
            ["--embed", "copy.avi"],
            "Error: --embed writes .mp4, .m4v, .mov, .mkv, .webm files (containers that hold chapters); copy.avi is not one",
        ),
    ],
)
def test_bad_options_are_one_line_before_any_work(scenes, tmp_path, args, message):
    result = run("chapters", scenes, *args, "--model", tmp_path / "no-model")
    assert result.exit_code == 2
    assert result.stderr.strip() == message


def test_an_existing_output_is_refused_before_any_work(scenes, tmp_path):
    out = tmp_path / "c.vtt"
    out.write_text("keep")
    result = run("chapters", scenes, "-o", out, "--model", tmp_path / "no-model")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"Error: {out} exists; pass --force (-f) to replace it"
    assert out.read_text() == "keep"


def test_pipeline_spans_from_the_library(scenes, tiny_video_ckpt):
    from llamavid_cli.loader import load_model

    loaded = load_model(str(tiny_video_ckpt), device="cpu", dtype="float32")
    encoded, spans = pipeline.chapter_spans(loaded, scenes, min_length=1, max_length=600)
    assert encoded.has_features and len(spans) == 3
    near_cuts([a for a, _ in spans[1:]])


def test_summarize_writes_chapters_beside_each_summary(scenes, tiny_video_ckpt, tmp_path, decode_counter):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(scenes.read_bytes())
    out = tmp_path / "out"
    result = run(
        "summarize", folder, "--out-dir", out, "--chapters", "srt", "--model", tiny_video_ckpt,
        "-t", 0, "--max-new-tokens", 2, *CPU,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4.chapters.srt", "a.mp4.txt"]
    [only] = srt.parse((out / "a.mp4.chapters.srt").read_text())  # 7.5 s, under the default 30 s minimum
    assert only.start.total_seconds() == 0
    assert decode_counter["frames"] <= round(sum(SCENES) * FPS)  # the summary's decode gave the cuts too


def test_summarize_chapters_options_are_checked_before_any_work(scenes, tmp_path):
    bad = run("summarize", scenes, "--chapters", "xml", "--out-dir", tmp_path, "--model", tmp_path / "no")
    assert bad.exit_code == 2
    assert bad.stderr.strip().startswith("Error: --chapters 'xml' is not a chapter format")
    alone = run("summarize", scenes, "--chapters", "vtt", "--model", tmp_path / "no")
    assert alone.exit_code == 2 and "--chapters needs --out-dir" in alone.stderr
