"""Render man/llamavid.1 from the CLI itself, so the page cannot drift from --help.

Regenerate with `python -m llamavid_cli.cli.manpage > man/llamavid.1`; a test fails when the
committed page differs from what this renders.
"""

from __future__ import annotations

import click
import typer

from .. import __version__, settings


def _roff(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def _is_argument(param: click.Parameter) -> bool:
    return param.param_type_name == "argument"


def _option(param: click.Parameter) -> str:
    names = ", ".join(f"\\fB{_roff(n)}\\fR" for n in param.opts + param.secondary_opts)
    if not param.is_flag:
        names += f" \\fI{param.name.upper()}\\fR"
    help_text = getattr(param, "help", "") or ""
    if param.default not in (None, False, ()) and not param.is_flag:
        help_text += f" [default: {param.default}]"
    if getattr(param, "envvar", None):
        help_text += f" [env: {param.envvar}]"
    return f".TP\n{names}\n{_roff(help_text)}\n"


def _entry(name: str, text: str) -> str:
    return f".TP\n\\fB{_roff(name)}\\fR\n{_roff(text)}"


def _commands(group: click.Group, prefix: str) -> list[str]:
    """A section per command, sub-commands of groups (`llamavid cache list`) included."""
    lines: list[str] = []
    ctx = click.Context(group, info_name=prefix)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):  # a group (typer ships its own click classes)
            lines += _commands(command, f"{prefix} {name}")
            continue
        usage = " ".join(
            p.name.upper() + ("..." if getattr(p, "nargs", 1) == -1 else "") for p in command.params if _is_argument(p)
        )
        lines += [f".SH {prefix} {name} {usage}".rstrip(), _roff(command.help or "")]
        lines += [_option(p).rstrip("\n") for p in command.params if not _is_argument(p)]
    return lines


def render(app: typer.Typer) -> str:
    group = typer.main.get_command(app)
    lines = [
        f'.TH LLAMAVID 1 "" "llamavid {__version__}" "User Commands"',
        ".SH NAME",
        "llamavid \\- " + _roff(group.help or ""),
        ".SH SYNOPSIS",
        "\\fBllamavid\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        _roff(
            "llamavid runs the released LLaMA-VID checkpoints on your own machine. Every sampled frame becomes "
            "two LLM tokens, a question-guided context token and a content token, so long videos fit in the "
            "model's context. Results go to stdout; progress and diagnostics to stderr."
        ),
    ]
    # options of `llamavid` itself (--version, --verbose), given before the command
    lines += [".SH OPTIONS"] + [_option(p).rstrip("\n") for p in group.params if not _is_argument(p)]
    lines += _commands(group, "llamavid")
    lines += [
        ".SH ENVIRONMENT",
        _roff("Flags beat these variables, which beat config.toml, which beats the built-in defaults."),
    ]
    lines += [_entry(name, text) for name, text in settings.ENVIRONMENT.items()]
    lines += [".SH FILES"] + [_entry(name, text) for name, text in settings.FILES.items()]
    lines += [
        ".SH EXIT STATUS",
        "0 success, 1 error, 2 usage error, 130 interrupted.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from .app import app

    print(render(app), end="")
