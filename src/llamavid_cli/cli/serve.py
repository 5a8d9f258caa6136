"""`llamavid serve`: load the model once and answer over an OpenAI-compatible HTTP API."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import settings
from ..defaults import AUTO_MODEL
from ..errors import UsageError
from . import options as o
from .common import load
from .output import Output

DEFAULT_PORT = 11435
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@o.grouped
def serve(
    models: o.ModelOptions = o.ModelOptions(),
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback lets other machines in.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0 picks a free one.")] = (
        DEFAULT_PORT
    ),
    api_key: Annotated[
        Optional[str],
        typer.Option("--api-key", envvar=settings.API_KEY_VAR, help="Require Authorization: Bearer KEY on /v1."),
    ] = None,
    allowed_media_path: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--allowed-media-path",
            help="A folder whose files (symlinks resolved) may be named by file:// URLs; repeat for more. "
            "Default: none, uploads only.",
        ),
    ] = None,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", min=0.0, help="Largest upload (a base64 video or image), in MB.")
    ] = 512.0,
    max_queue: Annotated[
        int,
        typer.Option("--max-queue", min=0, help="Requests that may wait for the model; more are answered 503."),
    ] = 16,
) -> None:
    """Keep the model loaded and answer POST /v1/chat/completions (OpenAI-compatible), GET /v1/models, GET /health.

    Examples:

      llamavid serve --model vid-7b --allowed-media-path ~/Videos

      llamavid ask clip.mp4 "who is there?" --server http://127.0.0.1:11435
    """
    from ..checkpoints import DEFAULT_MODEL
    from ..server.app import bind, create_app, run
    from ..server.security import Policy

    out = Output()
    folders = []
    for folder in allowed_media_path or []:
        if not folder.expanduser().is_dir():
            raise UsageError(f"--allowed-media-path {folder} is not a folder")
        folders.append(folder)
    if host not in LOOPBACK and not api_key:
        out.warn(f"listening on {host} without --api-key: anyone who can reach it can use the model")
    sock = bind(host, port)  # a port in use fails before the model loads
    model = models.model
    if model == AUTO_MODEL:
        model = DEFAULT_MODEL
        out.err.print(f"Using {model} (--model auto serves the short-video model; pass --model long-7b for movies).")
    loaded = load(out, model, models)
    app = create_app(loaded, Policy.make(folders, max_upload_mb, api_key), max_queue=max_queue)
    bound = sock.getsockname()
    where = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    ready = f"llamavid serve: listening on http://{where}:{bound[1]} (model {loaded.name})"
    run(app, sock, ready, verbose=logging.getLogger("llamavid_cli").level == logging.DEBUG)
