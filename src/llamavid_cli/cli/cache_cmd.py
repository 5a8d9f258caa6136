"""`llamavid cache list|clear`: the encodes kept between runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import VidtokError
from . import options as o
from .output import Output, count

if TYPE_CHECKING:
    from .. import cache


def readable_model(name: str) -> str:
    """An alias for a released model, the hub id for others, a folder's name for a local checkpoint."""
    from pathlib import PurePath

    from ..checkpoints import ALIASES

    alias = next((a for a, repo in ALIASES.items() if repo == name), None)
    if alias:
        return alias
    parts = PurePath(name).parts
    for i, part in enumerate(parts):  # a hub snapshot: …/models--owner--name/snapshots/<hash>
        if part.startswith("models--") and i + 1 < len(parts) and parts[i + 1] == "snapshots":
            repo = part.removeprefix("models--").replace("--", "/")
            return next((a for a, r in ALIASES.items() if r == repo), repo)
    return PurePath(name).name if len(parts) > 2 or name.startswith(("/", "~", ".")) else name


def _describe(entry: cache.Entry) -> dict:
    """One entry's row, and its object in `cache list --json` (docs/json.md)."""
    from .. import vidtok

    row = {
        "file": str(entry.path),
        "bytes": entry.size,
        "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.used)),
    }
    try:
        stored = vidtok.read_header(entry.path)
        row.update(
            source=stored.source.get("name", ""),
            model=stored.model,
            model_name=readable_model(stored.model),
            frames=stored.num_frames,
        )
    except VidtokError:
        row.update(source="(damaged)", model="", model_name="", frames=0)
    return row


def list_entries(json_out: o.JsonOpt = False) -> None:
    """Show cached encodes (most recently used first), unfinished writes, and the size limit."""
    from .. import cache

    limit = cache.size_limit()  # a bad LLAMAVID_CACHE_SIZE is refused before anything is printed
    rows = [_describe(e) for e in cache.entries()]
    temps = cache.temp_files()
    total = sum(r["bytes"] for r in rows) + sum(t.size for t in temps)
    out = Output(json_out)
    if json_out:
        out.json(
            {
                "folder": str(cache.cache_dir()),
                "bytes": total,
                "limit": limit,
                "entries": rows,
                "temp_files": [{"file": str(t.path), "bytes": t.size, "orphan": cache.is_orphan(t)} for t in temps],
            }
        )
        return
    if rows:
        from rich.table import Table  # here: an empty cache is listed without it

        table = Table("source", "model", "frames", "size", "last used")
        for column in table.columns:
            column.no_wrap, column.overflow = True, "ellipsis"
        for r in rows:
            table.add_row(r["source"], r["model_name"], str(r["frames"]), cache.format_size(r["bytes"]), r["last_used"])
        out.show(table)
    if temps:
        size = cache.format_size(sum(t.size for t in temps))
        out.show(f"{count(len(temps), 'unfinished write')} ({size}); `llamavid cache clear` removes them")
    out.show(
        f"{count(len(rows), 'entry', 'entries')}, {cache.format_size(total)} of {cache.format_size(limit)} "
        f"in {cache.cache_dir()}"
    )


def clear_entries() -> None:
    """Delete every cached encode, kept transcript and unfinished write."""
    from .. import cache

    removed, temps = cache.clear()
    extra = f" and {count(temps, 'unfinished write')}" if temps else ""
    Output().info(f"Removed {count(removed, 'cached encode')}{extra}.")
