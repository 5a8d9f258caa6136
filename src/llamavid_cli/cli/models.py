"""`llamavid models list|pull|rm`: the released checkpoints and the Hugging Face cache.

A model counts as cached when one of its snapshots holds config.json and every shard its
index names; a snapshot that lacks some is reported as partial.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .. import checkpoints
from ..errors import CheckpointError, LlamaVidError, UsageError
from . import options as o
from .output import Output

if TYPE_CHECKING:
    from huggingface_hub import CachedRepoInfo, HFCacheInfo

ModelArg = Annotated[
    str,
    typer.Argument(help=f"An alias ({', '.join(checkpoints.ALIASES)}) or a hub id (owner/name).", show_default=False),
]


@dataclass(frozen=True)
class ModelStatus:
    alias: str
    repo_id: str
    kind: str
    download_gb: float
    default: bool
    cached: bool  # a snapshot with config.json and every shard its index names
    bytes: int  # size of the repo in the hub cache, 0 when absent
    path: Optional[str]  # the complete snapshot, when cached


# --- the hub cache ------------------------------------------------------------------------


def hub_cache_dir() -> Path:
    # read at call time: scan_cache_dir()'s own default was bound when huggingface_hub was imported
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def scan() -> HFCacheInfo | None:
    """The hub cache's HFCacheInfo, or None when the cache folder does not exist yet."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        return scan_cache_dir(hub_cache_dir())
    except CacheNotFound:
        return None
    except ValueError:
        raise LlamaVidError(
            f"the Hugging Face cache {hub_cache_dir()} is not a folder; fix HF_HOME or HF_HUB_CACHE"
        ) from None


def cached_repos(info: HFCacheInfo | None) -> dict[str, CachedRepoInfo]:
    """repo id → CachedRepoInfo for the model repos in the cache."""
    return {} if info is None else {r.repo_id: r for r in info.repos if r.repo_type == "model"}


def is_complete(folder: Path) -> bool:
    """config.json and every shard its index names are there."""
    if not (folder / "config.json").is_file():
        return False
    try:
        checkpoints.shard_files(folder)
    except CheckpointError:
        return False
    return True


def complete_snapshot(repo: CachedRepoInfo) -> Path | None:
    """The snapshot `main` points to if complete, else the newest complete one."""
    revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified), reverse=True)
    return next((r.snapshot_path for r in revisions if is_complete(r.snapshot_path)), None)


def any_known_cached() -> bool:
    """Whether a known model has a folder in the hub cache: scanning imports huggingface_hub's HTTP
    stack (0.3 s or more, longer than typer and rich), which `models list` skips when there is none."""
    from huggingface_hub import constants

    sep = constants.REPO_ID_SEPARATOR
    if hub_cache_dir().exists() and not hub_cache_dir().is_dir():
        return True  # scan() says what is wrong
    return any(
        (hub_cache_dir() / f"models{sep}{known.repo_id.replace('/', sep)}").is_dir()
        for known in checkpoints.KNOWN_MODELS
    )


def statuses() -> list[ModelStatus]:
    repos = cached_repos(scan()) if any_known_cached() else {}
    rows = []
    for known in checkpoints.KNOWN_MODELS:
        repo = repos.get(known.repo_id)
        snapshot = complete_snapshot(repo) if repo else None
        rows.append(
            ModelStatus(
                alias=known.alias,
                repo_id=known.repo_id,
                kind=known.kind,
                download_gb=known.size_gb,
                default=known.alias == checkpoints.DEFAULT_MODEL,
                cached=snapshot is not None,
                bytes=repo.size_on_disk if repo else 0,
                path=str(snapshot) if snapshot else None,
            )
        )
    return rows


def repo_id_of(model: str) -> str:
    repo_id = checkpoints.ALIASES.get(model, model)
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id):
        raise UsageError(
            f"unknown model {model!r}: expected an alias ({', '.join(checkpoints.ALIASES)}) or a hub id (owner/name)"
        )
    return repo_id


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def human_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# --- commands -----------------------------------------------------------------------------


def models(ctx: typer.Context) -> None:
    """The released LLaMA-VID checkpoints: list, download and remove them from the Hugging Face cache.

    Without a sub-command, lists them.
    """
    if ctx.invoked_subcommand is None:
        list_models(json_out=False)


def list_models(json_out: o.JsonOpt = False) -> None:
    """Show the model aliases, their download size and whether they are in the local cache.

    Examples:

      llamavid models

      llamavid models list --json
    """
    from rich import box
    from rich.table import Table

    rows = statuses()
    out = Output(json_out)
    if json_out:
        out.json([asdict(r) for r in rows])
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("model", no_wrap=True)
    table.add_column("hub id", overflow="fold")  # folded, never cut: ids are for copying
    for name in ("kind", "download", "cached", "on disk"):
        table.add_column(name, no_wrap=True)
    for r in rows:
        cached = "yes" if r.cached else ("partial" if r.bytes else "no")
        table.add_row(
            r.alias + (" *" if r.default else ""),
            r.repo_id,
            r.kind,
            f"~{r.download_gb:g} GB",
            cached,
            human_size(r.bytes) if r.bytes else "",
        )
    out.show(table)
    out.show(f"* default. {sum(r.cached for r in rows)} of {len(rows)} cached in {hub_cache_dir()}")


def pull(model: ModelArg) -> None:
    """Download a checkpoint and BERT's vocabulary into the Hugging Face cache; print its folder.

    Files already in the cache are kept, so an interrupted pull resumes.

    Examples:

      llamavid models pull vid-7b

      llamavid models pull YanweiLi/llama-vid-13b-full-224-video-fps-1
    """
    out = Output()
    repo_id = repo_id_of(model)
    known = next((m for m in checkpoints.KNOWN_MODELS if m.repo_id == repo_id), None)
    size = f", about {known.size_gb:g} GB" if known else ""
    out.info(f"Fetching {repo_id}{size} into {hub_cache_dir()}")
    folder = checkpoints.resolve(repo_id, download=True)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"{folder} has no config.json; run `llamavid models pull {model}` again on a connected machine"
        )
    checkpoints.shard_files(folder)  # raises when a shard named in the index is missing
    out.result(str(folder))


def remove(
    model: ModelArg,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Delete without asking (needed when stdin is not a terminal).")
    ] = False,
) -> None:
    """Delete a checkpoint, every revision of it, from the Hugging Face cache.

    Examples:

      llamavid models rm vid-13b

      llamavid models rm YanweiLi/llama-vid-7b-full-224 --yes
    """
    out = Output()
    repo_id = repo_id_of(model)
    info = scan()
    repo = cached_repos(info).get(repo_id)
    if repo is None:
        raise CheckpointError(f"{repo_id} is not in the Hugging Face cache ({hub_cache_dir()}); nothing to remove")
    if not yes:
        if not stdin_is_terminal():
            raise UsageError(
                f"refusing to delete {repo_id} without confirmation; pass --yes when stdin is not a terminal"
            )
        typer.confirm(
            f"Delete {repo_id} ({human_size(repo.size_on_disk)}) from {repo.repo_path}?", abort=True, err=True
        )
    # interrupted downloads are not part of any revision, but go with the repo folder
    freed = sum(f.size_on_disk for f in info.incomplete_files if repo.repo_path in f.file_path.parents)
    if repo.revisions:
        strategy = info.delete_revisions(*(r.commit_hash for r in repo.revisions))
        strategy.execute()
        freed += strategy.expected_freed_size
    else:  # only interrupted downloads: delete_revisions() has nothing to act on
        shutil.rmtree(repo.repo_path, ignore_errors=True)
    if repo.repo_path.exists():  # huggingface_hub logs failed deletions instead of raising
        raise LlamaVidError(f"could not delete everything in {repo.repo_path} (permissions?); remove it by hand")
    out.info(f"Removed {repo_id} from the Hugging Face cache; freed {human_size(freed)}.")
