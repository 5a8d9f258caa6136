"""`llamavid chat SOURCE`: an interactive conversation about one video, image or .vidtok."""

from __future__ import annotations

import atexit
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer

from .. import settings
from ..errors import LlamaVidError
from . import options as o
from .common import existing_file, remote, start
from .output import Output

if TYPE_CHECKING:
    from ..chat import ChatSession
    from ..client import Remote, RemoteChat

HELP = """Commands:
  /reset        forget the conversation (the video stays loaded)
  /save FILE    write the transcript (.md) or the [question, answer] pairs (.json); /save! FILE replaces a file
  /range A B    talk about the part from A to B only (seconds, MM:SS, H:MM:SS); /range alone: all
  /evidence [N] where in the video the last answer drew from: timeline and the top N moments (default 3)
  /info         show the source and the model
  /help         this list
  /exit         leave (Ctrl-D works too; Ctrl-C stops an answer)"""


def _readline_history() -> None:
    """Line editing for input(), with history kept in the user data folder across sessions."""
    try:
        import readline
    except ImportError:  # Windows without pyreadline: plain input
        return
    path = settings.data_dir() / "chat_history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError:
        return
    readline.set_history_length(1000)
    atexit.register(lambda: _save_history(readline, path))


def _save_history(readline: ModuleType, path: Path) -> None:
    try:
        readline.write_history_file(path)
    except OSError:
        pass


def _lines(interactive: bool) -> Iterator[str]:
    """Questions from the prompt (with line editing) or one per line from piped stdin."""
    if interactive:
        _readline_history()
        while True:
            try:
                yield input("You: ")
            except KeyboardInterrupt:  # Ctrl-C at the prompt drops the line, as shells do
                print(file=sys.stderr)
            except EOFError:
                print(file=sys.stderr)
                return
    else:
        for line in sys.stdin:
            yield line.rstrip("\n")


@o.grouped
def chat(
    source: Annotated[Path, typer.Argument(help="A video, an image or a .vidtok file.", show_default=False)],
    models: o.ModelOptions = o.ModelOptions(),
    subs: o.SubtitleOptions = o.SubtitleOptions(),
    generation: o.GenerationOptions = o.GenerationOptions(),
    frames: o.SamplingOptions = o.SamplingOptions(),
    run_opts: o.FitOptions = o.FitOptions(),
    server: o.ServerOpt = None,
) -> None:
    """Talk about one video: each answer streams as it is generated; /help lists the commands.

    With stdin piped, each line is one question and each answer is printed on its own line.
    """
    from ..chat import ChatSession, open_source

    out = Output()
    existing_file(source)
    if server:
        _remote(out, source, remote(server, subs), generation, frames, run_opts)
        return
    run = start(
        out,
        models,
        frames,
        subs,
        choose_for=[source],
        max_new_tokens=generation.max_new_tokens,
        check=source,
        use_cache=run_opts.use_cache,
    )
    prepared = open_source(
        run.loaded,
        source,
        run.sampling,
        max_new_tokens=generation.max_new_tokens,
        fit=run_opts.fit,
        use_cache=run_opts.use_cache,
        subs=run.subs,
        progress=lambda total: out.frames(source.name, total),
    )
    for note in prepared.notes:
        out.warn(note)
    session = ChatSession(run.loaded, prepared, str(source), generation.settings())
    out.info(f"{source.name}: {prepared.num_frames} frames. Ask away; /help for commands.")
    _converse(out, session, lambda line: _command(out, session, line))


def _converse(out: Output, session: ChatSession | RemoteChat, command: Callable[[str], bool]) -> None:
    """The conversation, local or with a server: a line is a question, or a /command (`command`
    returns False to end); an answer stopped or too long for the context does not end it."""
    from ..errors import ContextLengthError

    interactive = sys.stdin.isatty()
    for line in _lines(interactive):
        question = line.strip()
        if not question:
            continue
        if question.startswith("/"):
            if not command(question):
                return
            continue
        if interactive:
            out.err.print("LLaMA-VID: ", end="", style="bold")
        try:
            session.ask(question, on_text=out.stream)
        except KeyboardInterrupt:
            out.end_stream()
            out.info("(answer stopped)")
            continue
        except ContextLengthError as exc:
            out.end_stream()
            out.warn(f"{exc}. Type /reset to start the conversation over.")
            continue
        except LlamaVidError:
            out.end_stream()
            raise
        out.end_stream()


def _command(out: Output, session: ChatSession, line: str) -> bool:
    """Run a /command; False means leave."""
    name, _, arg = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/reset":
        session.reset()
        out.info("Conversation cleared.")
    elif name in ("/save", "/save!"):
        _save(out, session, name, arg)
    elif name == "/range":
        _range(out, session, arg.split())
    elif name == "/evidence":
        _evidence(out, session, arg.strip())
    elif name == "/info":
        out.info(
            f"source {session.source}, {session.prepared.num_frames} frames, model {session.loaded.name}, "
            f"{len(session.conversation.history)} turns"
        )
    elif name == "/help":
        out.info(HELP)
    else:
        out.warn(f"unknown command {name}; /help lists them")
    return True


def _range(out: Output, session: ChatSession, args: list[str]) -> None:
    """Narrow the conversation to a time range of the video (or back to all of it)."""
    full = session.full
    if not args:
        session.prepared = full
        out.info(f"Whole video: {full.num_frames} frames.")
        return
    try:
        start = o.parse_time(args[0], "/range") or 0.0
        end = o.parse_time(args[1], "/range") if len(args) > 1 else None
    except typer.BadParameter as exc:
        out.warn(f"{exc.message}; usage: /range START [END]")
        return
    keep = [i for i, t in enumerate(full.timestamps) if t >= start and (end is None or t < end)]
    if not keep:
        out.warn("no frames in that range")
        return
    session.prepared = full.select(keep)
    out.info(f"Talking about {len(keep)} frames from {start:g} s" + (f" to {end:g} s." if end is not None else "."))


def _save(out: Output, session: ChatSession | RemoteChat, name: str, arg: str) -> None:
    """/save FILE keeps an existing file; /save! FILE replaces it."""
    target = Path(arg.strip()).expanduser()
    if not arg.strip():
        out.warn("usage: /save FILE (.md transcript or .json pairs)")
    elif name == "/save" and target.exists():
        out.warn(f"{target} exists: /save! {arg.strip()} replaces it")
    else:
        try:
            out.info(f"Saved {session.save(target)}")
        except LlamaVidError as exc:  # the conversation goes on: a failed save is a warning
            out.warn(f"could not save: {exc}")


def _evidence(out: Output, session: ChatSession, arg: str) -> None:
    """The last answer's evidence, with the top N moments."""
    from ..defaults import EVIDENCE_MOMENTS

    if arg and (not arg.isdigit() or int(arg) < 1):
        out.warn("usage: /evidence [N] (N: how many moments, at least 1)")
        return
    found = session.last.evidence if session.last is not None else None
    if found is None:
        out.warn("no answer yet: ask a question first")
        return
    out.evidence(found.top(int(arg) if arg else EVIDENCE_MOMENTS))


def _remote(
    out: Output,
    source: Path,
    client: Remote,
    generation: o.GenerationOptions,
    frames: o.SamplingOptions,
    run_opts: o.FitOptions,
) -> None:
    """`chat --server`: the same loop, each answer from the server; /range narrows the next requests."""
    from ..client import RemoteChat

    whole = frames.sampling()
    session = RemoteChat(
        client, source, sampling=whole, generation=generation.settings(), fit=run_opts.fit, use_cache=run_opts.use_cache
    )
    out.info(f"{source.name}: answered by {client.url}. Ask away; /help for commands.")
    _converse(out, session, lambda line: _remote_command(out, session, client, source, whole, line))


def _remote_command(out: Output, session: RemoteChat, client: Remote, source: Path, whole, line: str) -> bool:
    """One /command of `chat --server`; False ends the conversation."""
    from dataclasses import replace

    name, _, arg = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/reset":
        session.reset()
        out.info("Conversation cleared.")
    elif name in ("/save", "/save!"):
        _save(out, session, name, arg)
    elif name == "/range":
        args = arg.split()
        try:
            start_s = o.parse_time(args[0], "/range") if args else None
            end_s = o.parse_time(args[1], "/range") if len(args) > 1 else None
        except typer.BadParameter as exc:
            out.warn(f"{exc.message}; usage: /range START [END]")
            return True
        session.sampling = replace(whole, start=start_s, end=end_s) if args else whole
        out.info(
            "Whole video."
            if not args
            else f"Talking about the part from {start_s:g} s" + (f" to {end_s:g} s." if end_s is not None else ".")
        )
    elif name == "/info":
        out.info(
            f"source {source}, server {client.url}, model {session.model or '?'}, "
            f"{session.frames if session.frames is not None else '?'} frames, {len(session.history)} turns"
        )
    elif name == "/help":
        out.info(HELP)
    else:
        out.warn(f"unknown command {name}; /help lists them")
    return True
