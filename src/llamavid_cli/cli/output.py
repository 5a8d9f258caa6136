"""One output sink: results on stdout, progress and diagnostics on stderr.

Rich honours NO_COLOR and drops decoration when a stream is not a terminal; `--json` turns
off everything decorative so stdout holds exactly one JSON document. rich's console and
progress modules are imported when an Output is made, not when the CLI starts.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from rich.progress import Progress


class Output:
    def __init__(self, json_mode: bool = False):
        from rich.console import Console

        self.json_mode = json_mode
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.streamed = False

    # results: stdout
    def stream(self, text: str) -> None:
        """Answer text as it is generated, unbuffered."""
        sys.stdout.write(text)
        sys.stdout.flush()
        self.streamed = True

    def end_stream(self) -> None:
        if self.streamed:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.streamed = False

    def result(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    # diagnostics: stderr
    def info(self, message: str) -> None:
        if not self.json_mode:
            self.err.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]Warning:[/yellow] {_escape(message)}")

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        if self.json_mode or not self.err.is_terminal:
            yield
            return
        with self.err.status(message):
            yield

    def progress(self, description: str = "frames") -> Progress:
        """Frames done, frames/s and ETA on stderr; silent when stderr is not a terminal."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=self.err,
            disable=self.json_mode or not self.err.is_terminal,
            transient=False,
        )


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
