"""`llamavid models list|pull|rm` against a hub cache of our own, offline."""

import json
import shutil

import pytest
from typer.testing import CliRunner

import checkpoint_factory as factory
from llamavid_cli import checkpoints
from llamavid_cli.cli import models
from llamavid_cli.cli.app import app

VID_7B = "YanweiLi/llama-vid-7b-full-224-video-fps-1"


def run(*args, input=None):
    return CliRunner().invoke(app, ["models", *map(str, args)], input=input)


def listed(alias):
    result = run("list", "--json")
    assert result.exit_code == 0, result.stderr
    return next(row for row in json.loads(result.stdout) if row["alias"] == alias)


def assert_one_error_line(result, code, *fragments):
    assert result.exit_code == code and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("Error: ") and "Traceback" not in result.stderr, result.stderr
    assert all(f in lines[-1] for f in fragments), lines[-1]


@pytest.fixture
def snapshot(hub, tiny_video_ckpt):
    """The tiny checkpoint cached as vid-7b, plus another repo (BERT's vocab); returns the snapshot folder."""
    factory.install_bert_tokenizer(hub)
    return factory.install_in_hub_cache(tiny_video_ckpt, VID_7B, hub)


def test_list_with_nothing_cached(hub):
    result = run("list", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout) == [
        {
            "alias": m.alias,
            "repo_id": m.repo_id,
            "kind": m.kind,
            "download_gb": m.size_gb,
            "default": m.alias == "vid-7b",
            "cached": False,
            "bytes": 0,
            "path": None,
        }
        for m in checkpoints.KNOWN_MODELS
    ]
    table = run()  # plain `llamavid models` lists too
    assert table.exit_code == 0 and table.stderr == ""
    assert "vid-7b *" in table.stdout and "0 of 6 cached" in table.stdout and "yes" not in table.stdout


def test_a_hub_cache_that_is_a_file_is_reported(hub):
    hub.mkdir(parents=True)
    (hub / "hub").write_text("not a folder")  # HF_HOME/hub: the hub cache
    assert_one_error_line(run("list"), 1, "is not a folder", "HF_HOME")


def test_list_shows_an_installed_model_as_cached(snapshot):
    size = sum(f.stat().st_size for f in snapshot.rglob("*") if f.is_file())
    assert listed("vid-7b") == {
        "alias": "vid-7b",
        "repo_id": VID_7B,
        "kind": "video",
        "download_gb": 14.0,
        "default": True,
        "cached": True,
        "bytes": size,
        "path": str(snapshot.resolve()),
    }
    assert listed("vid-13b")["cached"] is False
    table = run("list")
    row = next(line for line in table.stdout.splitlines() if line.startswith("vid-7b"))
    assert "yes" in row and f"{size / 1e6:.1f} MB" in row and "1 of 6 cached" in table.stdout


def test_a_snapshot_missing_a_shard_is_partial(snapshot):
    first = sorted(snapshot.glob("pytorch_model-*.bin"))[0]
    first.unlink()
    row = listed("vid-7b")
    assert row["cached"] is False and row["bytes"] > 0 and row["path"] is None
    assert "partial" in run("list").stdout
    assert_one_error_line(run("pull", "vid-7b"), 1, first.name)


def test_pull_of_a_cached_model_offline_prints_its_folder(snapshot):
    result = run("pull", "vid-7b")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{snapshot}\n"
    assert f"Fetching {VID_7B}" in result.stderr


def test_pull_of_an_uncached_model_offline_fails_in_one_line(snapshot):
    assert_one_error_line(
        run("pull", "vid-13b"), 1, "YanweiLi/llama-vid-13b-full-224-video-fps-1", "not in the local Hugging Face cache"
    )


def test_pull_needs_nothing_but_the_checkpoint(hub, tiny_video_ckpt):
    """The BERT vocabulary ships with the package: no second repo to fetch."""
    snap = factory.install_in_hub_cache(tiny_video_ckpt, VID_7B, hub)
    result = run("pull", VID_7B)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{snap}\n"
    assert sorted(p.name for p in (hub / "hub").iterdir() if p.name.startswith("models--")) == [
        "models--YanweiLi--llama-vid-7b-full-224-video-fps-1"
    ]


def test_rm_yes_removes_the_model_and_nothing_else(snapshot, hub):
    size = listed("vid-7b")["bytes"]
    result = run("rm", "vid-7b", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip() == f"Removed {VID_7B} from the Hugging Face cache; freed {size / 1e6:.1f} MB."
    assert not (hub / "hub" / f"models--{VID_7B.replace('/', '--')}").exists()
    assert listed("vid-7b")["cached"] is False and listed("vid-7b")["bytes"] == 0
    assert (hub / "hub" / f"models--{factory.BERT_REPO_ID.replace('/', '--')}").is_dir()  # the other repo stays


def test_rm_without_yes_on_a_pipe_is_refused(snapshot):
    assert_one_error_line(run("rm", "vid-7b"), 2, "--yes")
    assert snapshot.is_dir() and listed("vid-7b")["cached"] is True


def test_rm_on_a_terminal_asks_first(snapshot, monkeypatch):
    monkeypatch.setattr(models, "stdin_is_terminal", lambda: True)
    declined = run("rm", "vid-7b", input="n\n")
    # the prompt goes to stderr; CliRunner echoes the typed answer on stdout as a terminal would
    assert declined.exit_code == 1 and declined.stdout.strip() == "n"
    assert f"Delete {VID_7B}" in declined.stderr and snapshot.is_dir()
    accepted = run("rm", "vid-7b", input="y\n")
    assert accepted.exit_code == 0 and accepted.stdout.strip() == "y" and not snapshot.exists()


def test_rm_of_a_model_that_is_not_cached(hub):
    assert_one_error_line(run("rm", "vid-13b", "--yes"), 1, "not in the Hugging Face cache")


def test_unknown_model_is_a_usage_error(hub):
    assert_one_error_line(run("pull", "no-such-alias"), 2, "unknown model 'no-such-alias'")


def test_models_help_has_examples():
    for command in ("list", "pull", "rm"):
        result = run(command, "--help")
        assert result.exit_code == 0 and f"llamavid models {command}" in result.stdout


def test_auto_reads_the_context_length_from_a_cached_config_and_else_from_the_table(tiny_video_ckpt, hub, tmp_path):
    # Nothing cached: the released configs' max_position_embeddings × RoPE factor.
    assert checkpoints.context_length("vid-7b") == 4096
    assert checkpoints.context_length("long-7b") == 4096 * 16
    # A cached checkpoint's own config.json wins (read without downloading anything).
    folder = tmp_path / "short-context"
    shutil.copytree(tiny_video_ckpt, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    factory.install_in_hub_cache(folder, checkpoints.ALIASES["vid-7b"], hub)
    assert checkpoints.context_length("vid-7b") == 2048
