"""`llamavid cache list|clear`: the encodes kept between runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer

from ..errors import VidtokError
from . import options as o
from .app import app
from .output import Output

if TYPE_CHECKING:
    from .. import cache

cache_app = typer.Typer(help="Encodes kept between runs so repeated questions skip decoding.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _describe(entry: cache.Entry) -> dict:
    from .. import vidtok

    row = {"file": str(entry.path), "bytes": entry.size, "last_used": time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.used))}
    try:
        stored = vidtok.read_header(entry.path)
        row.update(source=stored.source.get("name", ""), model=stored.model, frames=stored.context.get_shape()[0])
    except VidtokError:
        row.update(source="(damaged)", model="", frames=0)
    return row


@cache_app.command("list")
def list_entries(json_out: o.JsonOpt = False) -> None:
    """Show cached encodes, most recently used first, and the size limit."""
    from rich.console import Console
    from rich.table import Table

    from .. import cache

    rows = [_describe(e) for e in cache.entries()]
    total = sum(r["bytes"] for r in rows)
    if json_out:
        Output(True).json({"folder": str(cache.cache_dir()), "bytes": total, "limit": cache.size_limit(), "entries": rows})
        return
    table = Table("source", "model", "frames", "size", "last used")
    for r in rows:
        table.add_row(r["source"], r["model"], str(r["frames"]), f"{r['bytes'] / 1e6:.1f} MB", r["last_used"])
    console = Console(highlight=False)
    console.print(table)
    console.print(f"{len(rows)} entries, {total / 1e9:.2f} GB of {cache.size_limit() / 1e9:.0f} GB in {cache.cache_dir()}")


@cache_app.command("clear")
def clear_entries() -> None:
    """Delete every cached encode."""
    from .. import cache

    count = cache.clear()
    Output().info(f"Removed {count} cached encode{'s' if count != 1 else ''}.")
