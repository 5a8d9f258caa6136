"""`llamavid chapters VIDEO`: chapters from the video's shot cuts, titled and summarised by the model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..chapters import MAX_LENGTH, MIN_LENGTH  # chapters.py imports nothing heavy at the top
from ..errors import UsageError
from . import options as o
from .common import existing_file, start
from .output import Output

FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="vtt (WebVTT chapter cues), srt, json ([{start, end, title, summary}]), ffmetadata (FFmpeg's "
        ";FFMETADATA1) or youtube (0:00 Title lines for a description).",
    ),
]
MinLengthOpt = Annotated[
    float, typer.Option("--min-length", help="Shortest chapter, in seconds (shots are merged up to it).")
]
MaxLengthOpt = Annotated[
    float, typer.Option("--max-length", help="Longest chapter, in seconds (longer stretches are split).")
]


@o.grouped
def chapters(
    source: Annotated[Path, typer.Argument(help="A video (or a .vidtok made from one).", show_default=False)],
    fmt: FormatOpt = "vtt",
    min_length: MinLengthOpt = MIN_LENGTH,
    max_length: MaxLengthOpt = MAX_LENGTH,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the chapters to this file (default: stdout).")
    ] = None,
    embed: Annotated[
        Optional[Path],
        typer.Option(
            "--embed", help="Also write a copy of the video with the chapters in its container (no re-encode)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace output files that already exist.")] = False,
    models: o.ModelOptions = o.ModelOptions(),
    generation: o.GenerationOptions = o.GenerationOptions(),
    frames: o.SamplingOptions = o.SamplingOptions(),
    run_opts: o.FitOptions = o.FitOptions(),
) -> None:
    """Split a video into chapters at its shot cuts, each with a title and a one-sentence summary.

    Cuts are found while the video is encoded (one decode) and kept in the cache, so chapters
    after an earlier question about the same video decode nothing.

    Examples:

      llamavid chapters talk.mp4 > talk.chapters.vtt

      llamavid chapters trip.mp4 --format youtube --min-length 60

      llamavid chapters film.mkv --embed film.chapters.mkv --format json -o film.json
    """
    from .. import chapters as ch
    from .. import pipeline

    ch.check_format(fmt)
    ch.check_lengths(min_length, max_length)
    existing_file(source, "a video or .vidtok file")
    if output is not None:
        ch.check_output(output, force, source)
    if embed is not None:
        if pipeline.is_vidtok(source):
            raise UsageError("--embed needs the video itself, not a .vidtok")
        ch.muxer(embed)
        ch.check_output(embed, force, source)
        if output is not None and embed.resolve() == output.resolve():
            raise UsageError(f"-o and --embed both name {output}; give two files")
    out = Output(False)
    run = start(
        out,
        models,
        frames,
        o.TranscribeOptions(),
        choose_for=[source],
        max_new_tokens=generation.max_new_tokens,
        check=source,
        use_cache=run_opts.use_cache,
    )
    if pipeline.check_source(source) == "image":
        raise UsageError(f"{source} is a still image; chapters need a video")
    encoded, spans = pipeline.chapter_spans(
        run.loaded,
        source,
        run.sampling,
        min_length=min_length,
        max_length=max_length,
        use_cache=run_opts.use_cache,
        progress=lambda total: out.frames(source.name, total),
        on_note=out.warn,
    )
    if fmt == "youtube":
        ch.check_youtube([ch.Chapter(a, b) for a, b in spans])  # before the model writes any title
    with out.progress("chapters") as bar:
        task = bar.add_task("chapters", total=len(spans), rate="")
        found = ch.describe(run.loaded, encoded, spans, generation.settings(), on_chapter=lambda _: bar.advance(task))
    text = ch.render(found, fmt)
    if output is not None:
        ch.write(output, text)
        out.info(f"{len(found)} chapters → {output}")
    else:
        out.result(text.rstrip("\n"))
    if embed is not None:
        ch.embed(source, embed, found)
        out.info(f"{source} with {len(found)} chapters → {embed}")
