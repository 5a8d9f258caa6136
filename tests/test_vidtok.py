"""Reading a .vidtok checks everything first: a damaged, poisoned or mismatched file is one line naming it."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

import media
from llamavid_cli import vidtok
from llamavid_cli.cli.app import app

CPU = ["--device", "cpu", "--dtype", "float32"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return media.make_video(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=3, fps=5)


@pytest.fixture(scope="module")
def encoded(clip, tiny_video_ckpt, tmp_path_factory):
    """A real encode, with and without features, to damage copies of."""
    folder = tmp_path_factory.mktemp("vidtok")
    files = {}
    for name, extra in (("tokens", []), ("features", ["--keep-features"])):
        files[name] = folder / f"{name}.vidtok"
        result = run("encode", clip, "-o", files[name], "--model", tiny_video_ckpt, *extra, *CPU)
        assert result.exit_code == 0, result.stderr
    return files


def load_raw(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def rewrite(source, target, tensors=None, metadata=None, drop=()):
    """A copy of `source` edited through the safetensors API (what a careless tool could write)."""
    data, meta = load_raw(source)
    data.update(tensors or {})
    meta.update(metadata or {})
    for key in drop:
        data.pop(key, None)
        meta.pop(key, None)
    save_file(data, str(target), metadata=meta)
    return target


def ask(path, ckpt, *extra):
    return run("ask", path, "Who?", "--model", ckpt, "-t", 0, "--max-new-tokens", 3, "--json", *CPU, *extra)


def test_nan_written_through_our_own_writer_is_refused_by_ask_and_info(encoded, tiny_video_ckpt, tmp_path):
    stored = vidtok.read(encoded["tokens"])
    stored.context[1, 0] = float("nan")
    poisoned = vidtok.write(tmp_path / "nan.vidtok", stored)
    for result in (ask(poisoned, tiny_video_ckpt), run("info", poisoned)):
        assert_one_line_error(result, str(poisoned), "NaN or infinite values in its context tensor")


@pytest.mark.parametrize("name", ["content", "features"])
def test_infinity_edited_into_a_tensor_is_refused(name, encoded, tiny_video_ckpt, tmp_path):
    data, _ = load_raw(encoded["features"])
    data[name].view(-1)[3] = float("inf")
    poisoned = rewrite(encoded["features"], tmp_path / "inf.vidtok", {name: data[name]})
    assert_one_line_error(ask(poisoned, tiny_video_ckpt), str(poisoned), f"its {name} tensor")


def damaged_cases(source):
    data, meta = load_raw(source)
    frames = data["timestamps"].shape[0]
    cues = [{"start": 0.0, "end": 1.0, "text": "hi"}]
    return {
        "timestamps out of order": ({"timestamps": data["timestamps"].flip(0)}, {}, (), "timestamps out of order"),
        "negative time": ({"timestamps": data["timestamps"] - 5}, {}, (), "negative"),
        "float32 timestamps": ({"timestamps": data["timestamps"].float()}, {}, (), "timestamps are F32"),
        "integer tokens": ({"context": data["context"].to(torch.int32)}, {}, (), "context holds I32"),
        "flat content": ({"content": data["content"].flatten(1)}, {}, (), "content has 2 dimensions"),
        "fewer content frames": ({"content": data["content"][:-1]}, {}, (), f"{frames - 1} frames of content"),
        "no frames": ({k: v[:0] for k, v in data.items()}, {}, (), "no frames"),
        "stray tensor": ({"extra": torch.zeros(frames)}, {}, (), "unexpected tensor 'extra'"),
        "no timestamps": ({}, {}, ("timestamps",), "no timestamps tensor"),
        "cue fields not ours": ({}, {"subtitles": json.dumps([{**cues[0], "speaker": "A"}])}, (), "subtitle 1"),
        "cue text a number": (
            {},
            {"subtitles": json.dumps([{**cues[0], "text": 5}])},
            (),
            "'text' has the wrong type (int)",
        ),
        "cue ends first": ({}, {"subtitles": json.dumps([{"start": 2.0, "end": 1.0, "text": "x"}])}, (), "ends before"),
        "cues not a list": ({}, {"subtitles": json.dumps({"a": 1})}, (), "subtitles has the wrong type (dict)"),
        "features_cls a string": ({}, {"features_cls": json.dumps("yes")}, (), "features_cls has the wrong type (str)"),
        "long_video a number": ({}, {"long_video": "1"}, (), "long_video has the wrong type (int)"),
        "sampling not JSON": ({}, {"sampling": "{fps: 1"}, (), "sampling is not JSON"),
        "fps a string": ({}, {"sampling": json.dumps({"fps": "1"})}, (), "'fps' has the wrong type (str)"),
        "source name a list": ({}, {"source": json.dumps({"name": ["a"]})}, (), "'name' has the wrong type (list)"),
        "no fingerprint": ({}, {}, ("fingerprint",), "no fingerprint"),
        "format version a word": ({}, {"format_version": "one"}, (), "format_version 'one'"),
    }


def test_every_kind_of_damage_is_one_line_naming_the_file(encoded, tiny_video_ckpt, tmp_path):
    cases = damaged_cases(encoded["features"])
    for case, (tensors, metadata, drop, words) in cases.items():
        path = rewrite(encoded["features"], tmp_path / "bad.vidtok", tensors, metadata, drop)
        for result in (run("info", path), ask(path, tiny_video_ckpt)):
            assert "Traceback" not in result.stderr, case
            assert_one_line_error(result, f"{path} is a damaged .vidtok", words)


def test_a_damaged_vidtok_is_named_as_one_not_as_a_video(encoded, tiny_video_ckpt, tmp_path):
    cut = tmp_path / "cut.vidtok"
    cut.write_bytes(encoded["tokens"].read_bytes()[:50])
    for result in (ask(cut, tiny_video_ckpt), run("summarize", cut, "--model", tiny_video_ckpt, *CPU)):
        assert f"{cut} is a damaged .vidtok" in result.stderr and "MP4" not in result.stderr, result.stderr
        assert f"{cut}: {cut}" not in result.stderr  # the path is said once


def test_the_mode_is_recorded_and_a_tokens_only_file_is_refused_in_the_other(clip, tiny_video_ckpt, tmp_path):
    long_tokens = tmp_path / "long.vidtok"
    assert run("encode", clip, "-o", long_tokens, "--long-video", "--model", tiny_video_ckpt, *CPU).exit_code == 0
    assert json.loads(run("info", long_tokens, "--json").stdout)["long_video"] is True
    assert_one_line_error(ask(long_tokens, tiny_video_ckpt), str(long_tokens), "long-video tokens", "--long-video")
    assert ask(long_tokens, tiny_video_ckpt, "--long-video").exit_code == 0


def test_a_file_with_features_is_recomputed_in_the_asked_mode(clip, tiny_video_ckpt, tmp_path):
    made = {}
    for mode in ("--long-video", "--short-video"):
        made[mode] = tmp_path / f"{mode[2:]}.vidtok"
        args = ["encode", clip, "-o", made[mode], mode, "--keep-features", "--model", tiny_video_ckpt, *CPU]
        assert run(*args).exit_code == 0
    answers = [ask(made[m], tiny_video_ckpt, "--short-video") for m in made]
    assert all(a.exit_code == 0 for a in answers), [a.stderr for a in answers]
    first, second = (json.loads(a.stdout) for a in answers)
    assert first["prompt_ids"] == second["prompt_ids"] and first["output_ids"] == second["output_ids"]


def test_a_file_from_before_the_mode_was_recorded_is_read_in_the_models_mode(encoded, tiny_video_ckpt, tmp_path):
    old = rewrite(encoded["tokens"], tmp_path / "old.vidtok", drop=("long_video",))
    assert "long_video" not in load_raw(old)[1]
    assert vidtok.read_header(old).long_video is None
    assert ask(old, tiny_video_ckpt).exit_code == 0  # the short-video checkpoint's own mode
    assert_one_line_error(ask(old, tiny_video_ckpt, "--long-video"), "short-video tokens", "--short-video")


def test_encode_refuses_to_replace_a_file_unless_forced(clip, encoded, tiny_video_ckpt, tmp_path):
    target = tmp_path / "kept.vidtok"
    target.write_bytes(encoded["tokens"].read_bytes())
    before = target.read_bytes()
    refused = run("encode", clip, "-o", target, "--keep-features", "--model", tiny_video_ckpt, *CPU)
    assert_one_line_error(refused, f"{target} exists", "--force")
    assert refused.exit_code == 2 and target.read_bytes() == before
    forced = run("encode", clip, "-o", target, "--keep-features", "-f", "--model", tiny_video_ckpt, *CPU)
    assert forced.exit_code == 0, forced.stderr
    assert vidtok.read(target).features is not None


def test_encode_refuses_two_videos_that_would_write_one_file(tmp_path, tiny_video_ckpt):
    for name in ("talk.mp4", "talk.mkv"):
        media.make_video(tmp_path / name, seconds=1, fps=5)
    result = run("encode", tmp_path / "talk.mp4", tmp_path / "talk.mkv", "--model", tiny_video_ckpt, *CPU)
    assert_one_line_error(result, "would both be written to", "talk.vidtok")
    assert not (tmp_path / "talk.vidtok").exists()


def test_a_tower_that_yields_infinity_stops_encode_with_one_line_and_no_file(clip, tmp_path):
    """A real checkpoint whose patch embedding overflows (as a float16 kernel can): the check
    after the tower names the video and the frames, and nothing is written."""
    import checkpoint_factory as factory

    ckpt = factory.write_checkpoint(tmp_path / "overflowing", kind="video")
    key = "model.vision_tower.vision_tower.patch_embed.proj.weight"
    index = json.loads((ckpt / "pytorch_model.bin.index.json").read_text())
    shard = ckpt / index["weight_map"][key]
    state = torch.load(shard, weights_only=True)
    state[key] = torch.full_like(state[key], float("inf"))
    torch.save(state, shard)
    target = tmp_path / "out.vidtok"
    result = run("encode", clip, "-o", target, "--model", ckpt, *CPU)
    assert_one_line_error(result, str(clip), "vision tower produced NaN or infinite values", "--dtype float32")
    assert not target.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_header_is_read_without_torch_and_says_what_the_file_holds(encoded):
    script = (
        "import sys; from llamavid_cli import vidtok; h = vidtok.read_header(sys.argv[1]); "
        "print(h.num_frames, h.has_features, h.shapes['content'][0], 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(encoded["features"])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    frames = vidtok.read(encoded["features"]).num_frames
    assert done.stdout.split() == [str(frames), "True", str(frames), "False"]


def test_one_frozen_encoded_video_is_read_selected_and_written_back(encoded, tmp_path):
    whole = vidtok.read(encoded["features"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        whole.prompt = "other"
    part = whole.select([0, 2])
    assert part.timestamps == (whole.timestamps[0], whole.timestamps[2])
    assert torch.equal(part.context, whole.context[[0, 2]]) and torch.equal(part.features, whole.features[[0, 2]])
    assert torch.equal(part.content[1], whole.content[2]) and part.num_frames == 2 and whole.num_frames > 2
    again = vidtok.read(vidtok.write(tmp_path / "part.vidtok", part))
    assert again.timestamps == part.timestamps and torch.equal(again.features, part.features)
    assert (again.model, again.fingerprint, again.prompt, again.cues) == (
        part.model,
        part.fingerprint,
        part.prompt,
        part.cues,
    )
