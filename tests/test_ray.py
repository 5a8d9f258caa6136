"""`summarize --ray` on Ray's own local cluster (2 CPUs, the tiny checkpoint): the same outputs as
the local batch, a corrupt file reported while the run goes on, an actor that dies once retried
by Ray, and --skip-existing resuming. One cluster for the module (Ray takes ~10 s to start); the
CLI runs as a separate driver process connected to it with --ray-address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import media

ray = pytest.importorskip("ray")

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local 2-CPU Ray cluster, its temporary files and its workers' caches under pytest's
    tmp dir; shut down afterwards, and no process of it left running."""
    temp = tmp_path_factory.mktemp("ray")
    home = tmp_path_factory.mktemp("ray-env")
    with pytest.MonkeyPatch.context() as env:  # what the workers inherit
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        for name in ("LLAMAVID_CACHE_DIR", "LLAMAVID_CONFIG_DIR", "LLAMAVID_DATA_DIR", "XDG_CACHE_HOME"):
            env.setenv(name, str(home / name.lower()))
        context = ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), log_to_driver=False)
        try:
            yield {"address": context.address_info["gcs_address"], "temp": temp}
        finally:
            ray.shutdown()
    assert not _processes_under(temp), "Ray processes outlived ray.shutdown()"


def _processes_under(folder: Path) -> list[str]:
    """Command lines of live processes that name `folder` (Ray's processes name their session dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline and proc.name.isdigit() and int(proc.name) != os.getpid():
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("library")
    for day, seconds in (("day1", 1), ("day2", 2), ("day2", 3)):
        (root / day).mkdir(exist_ok=True)
        media.make_video(root / day / f"clip{seconds}.mp4", seconds=seconds, fps=4)
    return root


def cli(*args, ray_address=None, env_extra=None, cluster=None):
    env = {**os.environ, "PYTHONPATH": str(SRC), "RAY_USAGE_STATS_ENABLED": "0", **(env_extra or {})}
    if cluster:
        env["RAY_TMPDIR"] = str(cluster["temp"])
    command = [sys.executable, "-m", "llamavid_cli", "summarize", *map(str, args)]
    if ray_address:
        command += ["--ray-address", ray_address]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def common(ckpt, out):
    return ["--model", ckpt, "-t", "0", "--max-new-tokens", "4", "--device", "cpu", "--dtype", "float32"] + [
        "--no-cache",
        "--recursive",
        "--json",
        "--format",
        "json",
        "--out-dir",
        out,
    ]


def records(stdout: str) -> list[dict]:
    """JSON Lines without the timings (the only field that differs from run to run)."""
    rows = [json.loads(line) for line in stdout.splitlines()]
    return [{k: v for k, v in row.items() if k != "timings"} for row in rows]


def files(folder: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(folder)): {k: v for k, v in json.loads(p.read_text()).items() if k != "timings"}
        for p in sorted(folder.rglob("*.json"))
    }


def test_ray_gives_the_local_outputs_through_a_corrupt_file_and_a_dying_actor(
    cluster, library, tiny_video_ckpt, tmp_path
):
    (library / "day1" / "broken.mp4").write_bytes(b"\x00not a video\x00" * 64)
    try:
        local = cli(library, *common(tiny_video_ckpt, tmp_path / "local"))
        marker = tmp_path / "died"
        on_ray = cli(
            library,
            *common(tiny_video_ckpt, tmp_path / "ray"),
            ray_address=cluster["address"],
            env_extra={"LLAMAVID_TEST_RAY_DIE_ONCE": str(marker)},
            cluster=cluster,
        )
    finally:
        (library / "day1" / "broken.mp4").unlink()
    assert local.returncode == 1, local.stderr
    assert on_ray.returncode == 1, on_ray.stderr  # the corrupt file failed, the rest were summarised
    assert marker.exists()  # an actor really died once; Ray restarted it and retried its rows
    assert on_ray.stderr.endswith(
        f"Error: {library / 'day1' / 'broken.mp4'} is not a video or image FFmpeg can read; convert it to MP4 (H.264) and try again\n"
    ), on_ray.stderr
    assert records(on_ray.stdout) == records(local.stdout)
    assert [r.get("error", {}).get("type") for r in records(on_ray.stdout)] == ["VideoError", None, None, None]
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert sorted(files(tmp_path / "ray")) == ["day1/clip1.mp4.json", "day2/clip2.mp4.json", "day2/clip3.mp4.json"]


def test_ray_resumes_a_batch_with_skip_existing(cluster, library, tiny_video_ckpt, tmp_path):
    out = tmp_path / "out"
    first = cli(library, *common(tiny_video_ckpt, out))  # begun locally…
    assert first.returncode == 0, first.stderr
    (out / "day2" / "clip3.mp4.json").unlink()
    kept = (out / "day1" / "clip1.mp4.json").stat().st_mtime_ns
    again = cli(
        library, *common(tiny_video_ckpt, out), "--skip-existing", ray_address=cluster["address"], cluster=cluster
    )
    assert again.returncode == 0, again.stderr  # …finished on Ray
    assert [r["source"] for r in records(again.stdout)] == [str(library / "day2" / "clip3.mp4")]
    assert (out / "day1" / "clip1.mp4.json").stat().st_mtime_ns == kept
    assert sorted(files(out)) == ["day1/clip1.mp4.json", "day2/clip2.mp4.json", "day2/clip3.mp4.json"]
