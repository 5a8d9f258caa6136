"""`llamavid encode VIDEO…`: tokens to a .vidtok file, the model loaded once for all files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..defaults import AUTO_MODEL, DEFAULT_PROMPT
from ..errors import LlamaVidError, UsageError
from . import options as o
from .common import Started, start
from .output import Output, about, count, failure


def output_paths(videos: list[Path], output: Path | None, force: bool = False) -> list[Path]:
    """One file → `-o FILE.vidtok` or `-o DIR/`; several → `-o DIR`; default: beside each video.

    Refused before any work: two videos that would write the same file, and (without `force`)
    a file that is already there."""
    if output is None:
        targets = [v.with_suffix(".vidtok") for v in videos]
    elif output.is_dir() or len(videos) > 1 or str(output).endswith("/"):
        if output.exists() and not output.is_dir():
            raise UsageError(f"{output} is a file; several videos need an output folder")
        targets = [output / (v.stem + ".vidtok") for v in videos]
    elif not output.parent.is_dir():
        raise UsageError(f"the folder {output.parent} does not exist")
    else:
        targets = [output]
    seen: dict[Path, Path] = {}
    for source, target in zip(videos, targets):
        if target.resolve() in seen:
            raise UsageError(
                f"{seen[target.resolve()]} and {source} would both be written to {target}; encode them in separate runs"
            )
        seen[target.resolve()] = source
        if target.resolve() == source.resolve():
            raise UsageError(f"{source} would be replaced by its own tokens; give another -o")
        if target.exists() and not target.is_dir() and not force:
            raise UsageError(f"{target} exists; pass --force (-f) to replace it")
    if output is not None and targets != [output]:
        output.mkdir(parents=True, exist_ok=True)
    return targets


@o.grouped
def encode(
    videos: Annotated[list[Path], typer.Argument(help="Videos (or images) to encode.", show_default=False)],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Output .vidtok file, or a folder for several videos.")
    ] = None,
    prompt: Annotated[
        str, typer.Option("--prompt", "-p", help="Instruction the stored context tokens are computed for.")
    ] = DEFAULT_PROMPT,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace .vidtok files that already exist.")] = False,
    keep_features: Annotated[
        bool,
        typer.Option(
            "--keep-features",
            help="Also store the visual features (float16) so every later question gets its own context tokens.",
        ),
    ] = False,
    cuts: Annotated[
        bool,
        typer.Option(
            "--cuts/--no-cuts",
            help="Find the shot cuts in the same decode and store them, for `llamavid chapters FILE.vidtok` "
            "(--no-cuts: about a tenth less decoding CPU).",
        ),
    ] = True,
    models: o.ModelOptions = o.ModelOptions(),
    subs: o.SubtitleOptions = o.SubtitleOptions(),
    frames: o.SamplingOptions = o.SamplingOptions(),
    json_out: o.JsonLinesOpt = False,
) -> None:
    """Compute each frame's context and content tokens and write them to a .vidtok file.

    Examples:

      llamavid encode talk.mp4 -o talk.vidtok --keep-features

      llamavid encode clips/*.mp4 -o tokens/
    """
    from .. import pipeline, video, vidtok
    from ..paths import regular_file

    out = Output(json_out)
    for v in videos:  # stat, never open: a FIFO would block; in a batch an empty file fails in its turn
        regular_file(v, UsageError, "a video or image file", allow_empty=len(videos) > 1)
    if len(videos) == 1:
        pipeline.check_source(videos[0])
    targets = output_paths(videos, output, force)
    for target in targets:
        vidtok.check_writable(target)
    choose_for = [v for v in videos if video.is_media(v)] if models.model == AUTO_MODEL else []
    run = start(out, models, frames, subs, choose_for=choose_for, max_new_tokens=0)
    failed = 0
    for source, target in zip(videos, targets):
        try:
            record = _encode_one(out, run, source, target, prompt, keep_features, cuts)
        except LlamaVidError as exc:
            if len(videos) == 1:
                raise
            failed += 1
            out.err.print(f"Error: {about(source, str(exc))}", markup=False)
            if json_out:
                out.json({"source": str(source), "error": failure(exc)})
            continue
        if json_out:
            out.json(record)
    if failed:
        raise typer.Exit(1)


def _encode_one(out: Output, run: Started, source: Path, target: Path, prompt: str, keep: bool, cuts: bool) -> dict:
    import time
    from dataclasses import replace

    from .. import pipeline, vidtok

    loaded, sampling = run.loaded, run.sampling
    started = time.perf_counter()
    with out.frames(source.name, pipeline.expected_frames(source, sampling)) as advance:
        encoded = pipeline.encode_source(
            loaded, source, prompt, sampling, keep_features=keep, on_frames=advance, detect_cuts=cuts
        )
    seconds = time.perf_counter() - started
    for warning in encoded.notes:
        out.warn(about(source, warning))
    cues = pipeline.gather_cues(source, run.subs, [], on_note=lambda note: out.warn(about(source, note)))
    vidtok.write(target, replace(encoded, cues=tuple(cues)))
    out.info(f"{source} → {target} ({count(encoded.num_frames, 'frame')}, {seconds:.1f} s)")
    return {
        "source": str(source),
        "output": str(target),
        "frames": encoded.num_frames,
        "features": keep,
        "seconds": round(seconds, 3),
        "subtitles": len(cues),
        "model": loaded.name,
    }
