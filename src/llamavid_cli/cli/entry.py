"""The `llamavid` executable: a module that imports nothing heavy, so no moment of start-up escapes
the error boundary.

Ctrl-C while the CLI is still importing, or any exception that gets past the Typer app's own
boundary (`app.Boundary`), ends as one line on stderr with the documented exit code instead of
a traceback. LLAMAVID_DEBUG=1 lets unexpected exceptions through with their traceback.
"""

from __future__ import annotations

import os
import sys

INTERRUPTED = 130


def main() -> None:
    try:
        if sys.stdin is not None and hasattr(sys.stdin, "reconfigure"):
            sys.stdin.reconfigure(errors="replace")  # piped questions that are not UTF-8 are still questions
        from .app import app

        app(prog_name="llamavid")
    except KeyboardInterrupt:
        _leave("Interrupted.", INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - the boundary of last resort
        if os.environ.get("LLAMAVID_DEBUG"):
            raise
        _leave(f"Error: {unexpected(exc)}", 1)


def unexpected(exc: BaseException) -> str:
    """The one line for an exception that is a bug or an unforeseen failure, not a LlamaVidError."""
    message = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return f"{text} (set LLAMAVID_DEBUG=1 for details)"


def _leave(line: str, code: int) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (KeyboardInterrupt, OSError):  # a second Ctrl-C, or stderr gone: the exit code still tells
        pass
    raise SystemExit(code)


if __name__ == "__main__":
    main()
