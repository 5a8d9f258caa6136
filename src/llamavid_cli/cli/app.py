"""The `llamavid` command: one Typer app, one error boundary.

Exit codes: 0 success, 1 failure (one `Error:` line on stderr), 2 usage, 130 interrupted.
With `--json`, a failure also prints `{"error": {"message", "type", "exit_code"}}` on stdout.
Set LLAMAVID_DEBUG=1 to see tracebacks.

Every command is a plain function in its own module, registered here and nowhere else (the
command modules never import this one). Importing this module (and so `--help`, `--version`,
shell completion, `cache`, `models`) loads typer and rich only: the command modules import
torch, transformers and PyAV inside the commands that compute.

Registering a command: add one line to `COMMANDS`, `"name": "module:function"` (a module of
this package; the order is --help's). A new `llamavid serve` is `def serve(...)` in
cli/serve.py plus `"serve": "serve:serve"`; `llamavid chapters` is `"chapters": "chapters:chapters"`.
Do not import the module here, nor decorate the function with `@app.command()`: the module is
imported, and its Typer command built, only when that command is resolved, so `llamavid cache
list` reads one command module and the rest of the CLI costs nothing (`--help` and a mistyped
command name still load them all, for the command list and "Did you mean"). A command group
(`cache`, `models`) is a function here that imports its module and returns its `typer.Typer`,
registered as `"cache": _cache_group`. Keep the command modules themselves cheap to import:
module level holds the typer declarations, every other import (torch, fastapi, uvicorn, ...)
goes inside the function that needs it (bench/startup.py measures; tests/test_startup.py fails
when a light command imports a heavy library or pydantic, or when `cache list` imports another
command module: new `COMMANDS` entries are checked without editing the test).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.24 ships its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException

from .. import __version__, settings
from ..errors import LlamaVidError
from .coercion import defer
from .entry import INTERRUPTED, unexpected
from .output import error_object

JSON_FLAG = "--json"

defer()


class Boundary(TyperGroup):
    """Turns every exception and Ctrl-C into one line on stderr and a fixed exit code; builds
    each command of `COMMANDS` when it is first resolved."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        if name not in self.commands:
            # an unknown name loads every command: typer suggests the closest of self.commands
            for known in [name] if name in COMMANDS else COMMANDS:
                if known not in self.commands:
                    self.commands[known] = _build(known)
        return super().get_command(ctx, name)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        # Remembered before parsing, so that even a usage error answers `--json` with JSON.
        words = args[: args.index("--")] if "--" in args else args
        ctx.meta["llamavid.json"] = JSON_FLAG in words
        return super().parse_args(ctx, args)

    def make_context(self, *args: Any, **kwargs: Any) -> typer.Context:
        try:  # parsing and the eager options (--help, --version) run here, before invoke
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(INTERRUPTED) from None

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except ClickException as exc:  # usage errors: click words them, exit 2
            hint = _quote_hint(exc)
            if hint:
                _fail(ctx, hint, "UsageError", exc.exit_code)
            _json_error(ctx, exc.format_message(), "UsageError", exc.exit_code)
            raise
        except LlamaVidError as exc:
            if os.environ.get("LLAMAVID_DEBUG"):
                raise
            _fail(ctx, str(exc), type(exc).__name__, exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            ctx.exit(INTERRUPTED)
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen failure: still one line
            if os.environ.get("LLAMAVID_DEBUG"):
                raise
            _fail(ctx, unexpected(exc), type(exc).__name__, 1)


def _fail(ctx: typer.Context, message: str, kind: str, code: int) -> None:
    _json_error(ctx, message, kind, code)
    typer.echo(f"Error: {message}", err=True)
    ctx.exit(code)


def _json_error(ctx: typer.Context, message: str, kind: str, code: int) -> None:
    if ctx.meta.get("llamavid.json"):
        sys.stdout.write(json.dumps({"error": error_object(message, kind, code)}) + "\n")
        sys.stdout.flush()


def _quote_hint(exc: ClickException) -> str | None:
    """`llamavid ask v.mp4 who is the villain`: say to quote the question, in one line."""
    ctx = getattr(exc, "ctx", None)
    extra = re.fullmatch(r"Got unexpected extra argument.*? \((.*)\)", exc.format_message())
    if ctx is None or extra is None or "question" not in ctx.params:
        return None
    source, question = ctx.params.get("source"), ctx.params["question"]
    return (
        f"the question must be one argument; put it in quotes: "
        f'llamavid {ctx.info_name} {source} "{question} {extra.group(1)}"'
    )


SHARED: dict[str, Any] = {"pretty_exceptions_enable": False, "rich_markup_mode": None}  # the app's and its commands'
app = typer.Typer(
    cls=Boundary,
    name="llamavid",
    help="Ask questions about your videos with LLaMA-VID: every frame becomes two LLM tokens.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    **SHARED,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llamavid {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Diagnostics on stderr: how each video is read (the decode plan)."
    ),
) -> None:
    """Ask questions about your videos with LLaMA-VID: every frame becomes two LLM tokens."""
    if verbose:
        import logging

        handler = logging.StreamHandler()  # stderr: diagnostics never mix with results
        handler.setFormatter(logging.Formatter("llamavid: %(message)s"))
        logger = logging.getLogger("llamavid_cli")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    # Config-file settings become option defaults: flags and LLAMAVID_* variables still win.
    defaults = settings.load()
    if defaults and ctx.invoked_subcommand:
        ctx.default_map = {ctx.invoked_subcommand: defaults}


def _cache_group() -> typer.Typer:
    from . import cache_cmd

    cache_app = typer.Typer(help="Encodes kept between runs so repeated questions skip decoding.", no_args_is_help=True)
    cache_app.command("list")(cache_cmd.list_entries)
    cache_app.command("clear")(cache_cmd.clear_entries)
    return cache_app


def _models_group() -> typer.Typer:
    from . import models

    models_app = typer.Typer(invoke_without_command=True)  # help: the callback's docstring
    models_app.callback()(models.models)
    models_app.command("list")(models.list_models)
    models_app.command("pull")(models.pull)
    models_app.command("rm")(models.remove)
    return models_app


# name → "module:function" of a command, or a function above that returns a command group
COMMANDS: dict[str, str | Callable[[], typer.Typer]] = {
    "ask": "ask:ask",
    "chat": "chat:chat",
    "encode": "encode:encode",
    "info": "info:info",
    "summarize": "summarize:summarize",
    "serve": "serve:serve",
    "chapters": "chapters:chapters",
    "cache": _cache_group,
    "models": _models_group,
}


def _build(name: str) -> Any:
    """The click command for `COMMANDS[name]`, built by typer as `app.command()` / `app.add_typer()` would."""
    where = COMMANDS[name]
    holder = typer.Typer(add_completion=False, **SHARED)  # the app's settings, for its commands
    if callable(where):
        holder.add_typer(where(), name=name)
        return typer.main.get_command(holder).commands[name]
    module, function = where.split(":")
    # __import__, not importlib.import_module: `python -X importtime` still lists the module
    holder.command(name)(getattr(__import__(f"{__package__}.{module}", fromlist=[function]), function))
    return typer.main.get_command(holder)


def main() -> None:
    """Kept for old installs whose `llamavid` script still points here; see `entry.main`."""
    from .entry import main as entry_main

    entry_main()
