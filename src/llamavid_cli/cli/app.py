"""The `llamavid` command: one Typer app, one error boundary.

Exit codes: 0 success, 1 error (one `Error:` line on stderr), 2 usage, 130 interrupted.
Set LLAMAVID_DEBUG=1 to see tracebacks.
"""

from __future__ import annotations

import os

import click
import typer
from typer.core import TyperGroup

from .. import __version__, settings
from ..errors import LlamaVidError


class Boundary(TyperGroup):
    """Turns our exceptions and Ctrl-C into one line on stderr and a fixed exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LlamaVidError as exc:
            if os.environ.get("LLAMAVID_DEBUG"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


app = typer.Typer(
    cls=Boundary,
    name="llamavid",
    help="Ask questions about your videos with LLaMA-VID: every frame becomes two LLM tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llamavid {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Ask questions about your videos with LLaMA-VID: every frame becomes two LLM tokens."""
    # Config-file settings become option defaults: flags and LLAMAVID_* variables still win.
    defaults = settings.load()
    if defaults and ctx.invoked_subcommand:
        ctx.default_map = {ctx.invoked_subcommand: defaults}


from . import ask, cache_cmd, chat, encode, info, models, summarize  # noqa: E402  (commands register themselves on `app`)


def main() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # transformers' own warnings are not for our users; errors still show
    app(prog_name="llamavid")

