"""`llamavid info FILE.vidtok`: what a token file holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from . import options as o
from .common import existing_file
from .output import Output

if TYPE_CHECKING:
    from .. import vidtok


def summary(path: Path, stored: vidtok.VidtokHeader) -> dict:
    """What `info` shows, and its `--json` object (docs/json.md)."""
    return {
        "file": str(path),
        "frames": stored.num_frames,
        "tokens_per_frame": 1 + stored.shapes["content"][1],
        "hidden_size": stored.shapes["context"][1],
        "duration": stored.timestamps[-1] if stored.num_frames else 0.0,
        "features": list(stored.shapes["features"]) if stored.has_features else None,
        "long_video": stored.long_video,  # None: written before the mode was recorded
        "model": stored.model,
        "fingerprint": stored.fingerprint,
        "prompt": stored.prompt,
        "sampling": stored.sampling,
        "source": stored.source,
        "subtitles": stored.subtitles,
        "tool_version": stored.tool_version,
        "created": stored.created,
    }


def info(
    file: Annotated[Path, typer.Argument(help="A .vidtok file.", show_default=False)],
    json_out: o.JsonOpt = False,
) -> None:
    """Show what a .vidtok file holds: frames, model, prompt, source."""
    from rich.table import Table

    from .. import vidtok

    existing_file(file, "a .vidtok file")
    vidtok.read(file)  # every check, token values included: a damaged file is refused, not described
    data = summary(file, vidtok.read_header(file))
    out = Output(json_out)
    if json_out:
        out.json(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        table.add_row(key, str(value))
    out.show(table)
