"""`llamavid ask SOURCE QUESTION`: one answer, streamed to stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..defaults import EVIDENCE_MOMENTS
from ..errors import UsageError
from . import options as o
from .common import answer_json, existing_file, remote, start
from .output import Output


def read_history(path: Path | None) -> list[tuple[str, str]]:
    """A JSON list of [question, answer] pairs (what chat's /save --json writes)."""
    if path is None:
        return []
    from ..paths import regular_file

    regular_file(path, UsageError, "a JSON file of [question, answer] pairs")  # a FIFO would block the read
    try:
        pairs = json.loads(Path(path).read_text())
        if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs):
            raise ValueError
    except (OSError, ValueError):
        raise UsageError(f"{path} is not a JSON list of [question, answer] pairs") from None
    return [(q, a) for q, a in pairs]


EvidenceOpt = Annotated[
    bool,
    typer.Option(
        "--evidence",
        help="After the answer, show on stderr where in the video it drew from: a timeline of each frame's "
        'attention-based relevance and the top moments (with --json: an "evidence" object).',
    ),
]
MomentsOpt = Annotated[
    Optional[int],
    typer.Option(
        "--moments",
        min=1,
        metavar="N",
        help=f"How many top moments --evidence shows (default {EVIDENCE_MOMENTS}); implies --evidence.",
        show_default=False,
    ),
]


@o.grouped
def ask(
    source: Annotated[Path, typer.Argument(help="A video, an image or a .vidtok file.", show_default=False)],
    question: o.QuestionArg,
    models: o.ModelOptions = o.ModelOptions(),
    subs: o.SubtitleOptions = o.SubtitleOptions(),
    generation: o.GenerationOptions = o.GenerationOptions(),
    frames: o.SamplingOptions = o.SamplingOptions(),
    history: Annotated[
        Optional[Path],
        typer.Option("--history", help="Continue a conversation: JSON list of [question, answer] pairs."),
    ] = None,
    run_opts: o.FitOptions = o.FitOptions(),
    evidence: EvidenceOpt = False,
    moments: MomentsOpt = None,
    server: o.ServerOpt = None,
    json_out: o.JsonOpt = False,
) -> None:
    """Answer one question about a video, image or .vidtok; the answer streams to stdout.

    Examples:

      llamavid ask movie.mp4 "who is the villain?"

      llamavid ask clip.vidtok "what happens at the end?" --temperature 0 --json

      llamavid ask talk.mp4 "when is the demo shown?" --evidence
    """
    from .. import pipeline

    out = Output(json_out)
    existing_file(source)
    turns = read_history(history)
    if server:
        from ..client import sampling_fields

        result = remote(server, subs).ask(
            source,
            question,
            history=turns,
            sampling=sampling_fields(frames.sampling()),
            generation=generation.settings(),
            fit=run_opts.fit,
            use_cache=run_opts.use_cache,
            on_text=None if json_out else out.stream,
            on_note=out.warn,
            moments=(moments or EVIDENCE_MOMENTS) if evidence or moments is not None else None,
        )
        if json_out:
            out.json(result)
        else:
            out.end_stream()
            if "evidence" in result:
                from ..evidence import Evidence

                out.evidence(Evidence.from_dict(result["evidence"], result.get("duration")))
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
    result = pipeline.ask(
        run.loaded,
        source,
        question,
        history=turns,
        sampling=run.sampling,
        use_cache=run_opts.use_cache,
        fit=run_opts.fit,
        subs=run.subs,
        generation=generation.settings(),
        on_text=None if json_out else out.stream,
        on_note=out.warn,
        progress=lambda total: out.frames(source.name, total),
        evidence=evidence or moments is not None,
        moments=moments or EVIDENCE_MOMENTS,
    )
    if json_out:
        out.json(answer_json(result, run.loaded))
    else:
        out.end_stream()
        if result.evidence is not None:
            out.evidence(result.evidence)
