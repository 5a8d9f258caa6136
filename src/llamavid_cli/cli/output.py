"""One output sink: results on stdout, progress and diagnostics on stderr.

Rich honours NO_COLOR and drops decoration when a stream is not a terminal; `--json` turns
off everything decorative so stdout holds exactly one JSON document. rich's console and
progress modules are imported when an Output is made, not when the CLI starts.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.progress import Progress

    from ..errors import LlamaVidError
    from ..evidence import Evidence

TIMELINE_WIDTH = 60  # cells in `--evidence`'s timeline, fewer on a narrow terminal
LEVELS = "▁▂▃▄▅▆▇█"


class Output:
    def __init__(self, json_mode: bool = False) -> None:
        from rich.console import Console

        self.json_mode = json_mode
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self._out: Console | None = None
        self.streamed = False

    @property
    def out(self) -> Console:
        """stdout as a rich console, for tables; made when first used."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(highlight=False)
        return self._out

    # results: stdout
    def stream(self, text: str) -> None:
        """Answer text as it is generated, unbuffered."""
        sys.stdout.write(text)
        sys.stdout.flush()
        self.streamed = True

    def end_stream(self) -> None:
        """Close a streamed answer with its newline (nothing when nothing streamed)."""
        if self.streamed:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.streamed = False

    def result(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def show(self, renderable: RenderableType) -> None:
        """A table or a line of a human-readable result, on stdout."""
        self.out.print(renderable, markup=False)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    # diagnostics: stderr
    def info(self, message: str) -> None:
        if not self.json_mode:
            self.err.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]Warning:[/yellow] {_escape(message)}")

    def evidence(self, found: Evidence) -> None:
        """`--evidence` on stderr: one line of the video's timeline shaded by relevance (the top
        moments highlighted where there is colour), then the moments, best first."""
        if self.json_mode or not found.times:
            return
        from rich.text import Text

        spans = found.spans()
        begin, end = spans[0][0], spans[-1][1]  # the frames' part of the video (a --start/--end range)
        if end <= begin:
            self.err.print("Evidence: a single still frame, nothing to place in time", markup=False)
            return
        hours = end >= 3600
        width = max(10, min(TIMELINE_WIDTH, self.err.width - 30))
        cells = timeline(spans, found.scores, begin, end, width)
        top = max(cells) or 1.0
        at = [begin + (c + 0.5) * (end - begin) / width for c in range(width)]
        marked = [any(m.start <= t < m.end for m in found.moments) for t in at]
        line = Text("Evidence ", style="bold")
        line.append(clock(begin, hours) + " ")
        for value, hot in zip(cells, marked):
            line.append(LEVELS[round(value / top * (len(LEVELS) - 1))], style="magenta" if hot else "dim")
        line.append(" " + clock(end, hours, up=True))
        self.err.print(line)
        ranges = Text("Moments  ", style="bold")
        for i, moment in enumerate(found.moments):
            if i:
                ranges.append(" · ")
            ranges.append(f"{clock(moment.start, hours)}–{clock(moment.end, hours, up=True)}", style="magenta")
            ranges.append(f" ({moment.score:.0%})")
        self.err.print(ranges)

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        if self.json_mode or not self.err.is_terminal:
            yield
            return
        with self.err.status(message):
            yield

    def progress(self, description: str = "frames") -> Progress:
        """Frames done, frames/s and ETA on stderr; silent when stderr is not a terminal."""
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

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

    @contextmanager
    def frames(self, name: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """`progress()` for frames being decoded and encoded; yields the function that adds n done."""
        started = time.perf_counter()
        with self.progress() as bar:
            task = bar.add_task(name, total=total or None, rate="")

            def advance(n: int) -> None:
                done = bar.tasks[0].completed + n
                rate = done / max(time.perf_counter() - started, 1e-9)
                bar.update(task, advance=n, rate=f"{rate:.1f} frames/s")

            yield advance


def timeline(
    spans: list[tuple[float, float]], scores: tuple[float, ...], begin: float, end: float, width: int
) -> list[float]:
    """`width` cells over [begin, end): each the highest score of the frames whose span touches it."""
    cells = [0.0] * width
    scale = width / (end - begin)
    for (start, stop), score in zip(spans, scores):
        first = min(max(int((start - begin) * scale), 0), width - 1)
        last = max(first, min(math.ceil((stop - begin) * scale) - 1, width - 1))
        for c in range(first, last + 1):
            cells[c] = max(cells[c], score)
    return cells


def clock(seconds: float, hours: bool = False, up: bool = False) -> str:
    """`MM:SS` (`H:MM:SS` with `hours`), whole seconds rounded down, or up for the end of a range."""
    whole = math.ceil(seconds - 1e-6) if up else math.floor(seconds + 1e-6)
    whole = max(whole, 0)
    if hours:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60:02d}:{whole % 60:02d}"


def error_object(message: str, kind: str, exit_code: int) -> dict:
    """What `--json` says about a failure: `{"error": error_object(…)}` (docs/json.md)."""
    return {"message": message, "type": kind, "exit_code": exit_code}


def failure(exc: LlamaVidError) -> dict:
    """One file's failure in a batch (encode, summarize), for its JSON Lines record."""
    return error_object(str(exc), type(exc).__name__, exc.exit_code)


def count(n: int, one: str, many: str | None = None) -> str:
    """`1 frame`, `2 frames`, `0 entries`: a number with its noun in the right form."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def about(source: object, message: str) -> str:
    """`source: message`, unless the message names the file already ("a.mp4: a.mp4 is…" reads badly)."""
    return message if str(source) in message else f"{source}: {message}"


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
