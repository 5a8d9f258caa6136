"""`llamavid summarize PATH…`: batch summaries for shell scripts, the model loaded once."""

from __future__ import annotations

import glob
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..defaults import AUTO_MODEL
from ..errors import LlamaVidError, UsageError
from ..paths import is_regular, reason, regular_file, write_text
from . import options as o
from .common import check_cache_size, pick_model, remote, start
from .output import Output, about, failure

if TYPE_CHECKING:
    from .. import batch

SUMMARY_PROMPT = "Summarize this video: what happens, who appears and where it takes place."
FORMATS = ("txt", "md", "json")


@dataclass(frozen=True)
class Input:
    """A file to summarise, and where it sits relative to the argument that named it: its
    summary goes to the same place under --out-dir, so the input tree is mirrored."""

    path: Path
    relative: PurePath


def collect(paths: list[str], recursive: bool) -> list[Input]:
    """Files as given, folders expanded (videos and images found by opening them), globs expanded.

    Never opens a FIFO, socket or device: a named one is refused, one found in a folder skipped."""
    found: dict[Path, Input] = {}
    for raw in paths:
        matches = [Path(p) for p in sorted(glob.glob(raw, recursive=recursive))] if glob.has_magic(raw) else [Path(raw)]
        if not matches:
            raise UsageError(f"{raw} matches no file")
        base = _glob_base(raw)
        for path in matches:
            if path.is_dir():
                walker = path.rglob("*") if recursive else path.glob("*")
                for p in sorted(walker):
                    if is_regular(p) and not p.name.startswith(".") and _media(p):
                        found.setdefault(p, Input(p, p.relative_to(path)))
            else:
                regular_file(path, UsageError, "a video, image, .vidtok or folder", allow_empty=True)
                relative = path.relative_to(base) if base and path.is_relative_to(base) else PurePath(path.name)
                found.setdefault(path, Input(path, relative))
    return list(found.values())


def _glob_base(pattern: str) -> Path | None:
    """The folder a glob starts from (`clips` for `clips/**/*.mp4`); None for a plain path."""
    if not glob.has_magic(pattern):
        return None
    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return Path(*parts[:fixed]) if fixed else Path(".")


def targets(inputs: list[Input], out_dir: Path, fmt: str) -> dict[Path, Path]:
    """Input → its summary file: the input's path relative to its argument, its full name kept
    (`day1/clip.mp4` → `OUT/day1/clip.mp4.txt`, so `clip.mp4` and `clip.vidtok` do not meet).
    Two inputs that would still share a file (the same name under two arguments) are refused
    before any work."""
    chosen: dict[Path, Path] = {}
    owner: dict[Path, Path] = {}
    for item in inputs:
        target = out_dir / item.relative.parent / f"{item.relative.name}.{fmt}"
        if target in owner:
            raise UsageError(
                f"{owner[target]} and {item.path} would both be summarised to {target}; "
                "give their common parent folder (with --recursive) or run them separately"
            )
        owner[target] = item.path
        chosen[item.path] = target
    return chosen


# In a folder, files with these names are tried even when they do not open (a damaged video is
# reported, not silently skipped); other files are taken when they open as media.
MEDIA_SUFFIXES = {
    ".mp4",
    ".m4v",
    ".mov",
    ".mkv",
    ".webm",
    ".avi",
    ".wmv",
    ".flv",
    ".mpg",
    ".mpeg",
    ".ts",
    ".mts",
    ".m2ts",
    ".3gp",
    ".ogv",
    ".gif",
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".bmp",
    ".vidtok",
}


def _media(path: Path) -> bool:
    from .. import pipeline, video

    return path.suffix.lower() in MEDIA_SUFFIXES or pipeline.is_vidtok(path) or video.is_media(path)


def shard(files: list[Input], spec: str | None) -> list[Input]:
    """`--shard I/N`: a stable split by path hash, so N processes cover a library exactly once."""
    if spec is None:
        return files
    try:
        index, count = (int(x) for x in spec.split("/"))
        if not 1 <= index <= count:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(f"{spec!r} is not I/N with 1 <= I <= N", param_hint="--shard") from None
    return [f for f in files if zlib.crc32(str(f.path).encode()) % count == index - 1]


def render(source: Path, answer: dict, fmt: str) -> str:
    """One video's summary file in `fmt`; `answer` is the answer object (docs/json.md)."""
    if fmt == "json":
        return json.dumps(answer, ensure_ascii=False, indent=2)
    if fmt == "md":
        return f"# {source.name}\n\n{answer['answer']}"
    return answer["answer"]


def write_summary(target: Path, source: Path, answer: dict, fmt: str) -> Path:
    """Atomically; a failure is one line naming the file (the batch goes on)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LlamaVidError(f"cannot write {target} (a file is in the way of its folder)") from None
    except OSError as exc:
        raise LlamaVidError(f"cannot write {target} ({reason(exc)})") from None
    return write_text(target, render(source, answer, fmt) + "\n")


def _remote_outcomes(
    client, files: list[Path], prompt: str, sampling, generation: o.GenerationOptions, run_opts: o.FitOptions
) -> Iterator[batch.Outcome]:
    """`--server`: each video summarised by the server, as the same outcomes a local batch gives."""
    from ..batch import Outcome
    from ..client import sampling_fields

    settings = generation.settings()
    for source in files:
        notes: list[str] = []
        try:
            answer = client.ask(
                source,
                prompt,
                sampling=sampling_fields(sampling),
                generation=settings,
                fit=run_opts.fit,
                use_cache=run_opts.use_cache,
                on_note=notes.append,
            )
        except LlamaVidError as exc:
            yield Outcome(source, error=exc, notes=notes)
            continue
        yield Outcome(source, answer=answer, notes=notes)


@o.grouped
def summarize(
    paths: Annotated[list[str], typer.Argument(help="Videos, folders or globs.", show_default=False)],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What to ask of every video.")] = SUMMARY_PROMPT,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out-dir",
            help="Write one file per video here, mirroring the input folders (day1/clip.mp4 → DIR/day1/clip.mp4.txt).",
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Summary format: txt, md or json (files with --out-dir, else stdout).")
    ] = "txt",
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Skip videos whose output file exists (resume).")
    ] = False,
    shard_spec: Annotated[Optional[str], typer.Option("--shard", help="Process only part I of N, e.g. 2/4.")] = None,
    batch_size: Annotated[
        str,
        typer.Option(
            "--batch-size",
            help="Answers generated together: N, or auto (from free GPU memory; 1 on the CPU).",
        ),
    ] = "auto",
    use_ray: Annotated[
        bool,
        typer.Option(
            "--ray", help="Run on a Ray cluster (pip install 'llamavid-cli[ray]'); a local one unless --ray-address."
        ),
    ] = False,
    ray_address: Annotated[
        Optional[str],
        typer.Option(
            "--ray-address",
            metavar="ADDRESS",
            help="The Ray cluster's head (host:6379, ray://host:10001, auto); implies --ray.",
            show_default=False,
        ),
    ] = None,
    chapters_fmt: Annotated[
        Optional[str],
        typer.Option(
            "--chapters",
            help="Also write each video's chapters beside its summary (clip.mp4.chapters.vtt) in this format: "
            "vtt, srt, json, ffmetadata or youtube (see llamavid chapters).",
        ),
    ] = None,
    models: o.ModelOptions = o.ModelOptions(),
    subs: o.TranscribeOptions = o.TranscribeOptions(),
    generation: o.GenerationOptions = o.GenerationOptions(),
    frames: o.SamplingOptions = o.SamplingOptions(),
    run_opts: o.FitOptions = o.FitOptions(),
    server: o.ServerOpt = None,
    json_out: o.JsonLinesOpt = False,
) -> None:
    """Summarise many videos; a failing file is reported and the batch goes on (exit 1 if any failed).

    The next videos are decoded while the model answers the current ones, and --batch-size
    answers are generated together; --ray spreads the batch over a Ray cluster.

    Examples:

      llamavid summarize ~/Videos/trip --recursive --out-dir summaries --format md

      llamavid summarize 'clips/*.mp4' --json --shard 1/2 > part1.jsonl

      llamavid summarize /shared/talks -r --out-dir /shared/summaries --skip-existing --ray-address auto
    """
    from .. import batch, pipeline

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    if skip_existing and not out_dir:
        raise UsageError("--skip-existing needs --out-dir (it skips videos whose summary file is there)")
    size = batch.parse_batch_size(batch_size)
    if server and (use_ray or ray_address):
        raise UsageError("--server and --ray both say where the work runs: give one")
    if chapters_fmt is not None:
        from ..chapters import check_format

        check_format(chapters_fmt, "--chapters")
        if not out_dir or not run_opts.use_cache:
            raise UsageError("--chapters needs --out-dir (the files go beside the summaries) and the encode cache")
        if server or use_ray or ray_address:
            raise UsageError("--chapters runs where the model is loaded: not with --server or --ray")
    out = Output(json_out)
    if run_opts.use_cache:
        check_cache_size()
    inputs = shard(collect(paths, recursive), shard_spec)
    written = targets(inputs, out_dir, fmt) if out_dir else {}
    if out_dir:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the folder {out_dir} ({reason(exc)})") from None
        if skip_existing:
            inputs = [i for i in inputs if not written[i.path].exists()]
    files = [i.path for i in inputs]
    if not files:
        out.info("Nothing to summarise.")
        return
    # one model for the batch: with --model auto, the long one if any video needs it
    videos = [f for f in files if not pipeline.is_vidtok(f)] if models.model == AUTO_MODEL else []
    if server:
        outcomes = _remote_outcomes(remote(server, subs), files, prompt, frames.sampling(), generation, run_opts)
        failed = report(out, outcomes, len(files), written, fmt, json_out)
    elif use_ray or ray_address:
        from .. import ray_batch

        sampling, request = frames.sampling(), subs.request()
        model = pick_model(out, models.model, videos, sampling, generation.max_new_tokens)
        pipeline.check_transcribe(model, models.long_video, request)
        if Path(model).expanduser().exists():  # a local folder is checked here; a hub id where it loads
            from ..loader import identify

            identify(model)
        job = batch.Job(prompt, sampling, generation.settings(), run_opts.use_cache, run_opts.fit, request)
        load = ray_batch.LoadSpec(
            model, models.device, models.dtype, models.quantize, models.eva_weights, models.long_video
        )
        with out.status(f"Connecting to Ray at {ray_address}…" if ray_address else "Starting a local Ray…"):
            cluster = ray_batch.connect(ray_address)
        try:
            out.info(cluster.describe())
            outcomes = ray_batch.summarize(cluster, files, job, load, batch_size=size)
            failed = report(out, outcomes, len(files), written, fmt, json_out)
        finally:
            ray_batch.disconnect()
    else:
        run = start(out, models, frames, subs, choose_for=videos, max_new_tokens=generation.max_new_tokens)
        job = batch.Job(
            prompt,
            run.sampling,
            generation.settings(),
            run_opts.use_cache,
            run_opts.fit,
            run.subs,
            cuts=True if chapters_fmt is not None else None,
        )
        outcomes = batch.summarize(run.loaded, files, job, batch_size=batch.auto_batch_size(run.loaded, size))
        after = None
        if chapters_fmt is not None:

            def after(source: Path, console) -> None:
                _write_chapters(run.loaded, run, source, written[source], fmt, chapters_fmt, job.generation, console)

        failed = report(out, outcomes, len(files), written, fmt, json_out, after)
    out.info(
        f"{len(files) - len(failed)} of {len(files)} summarised"
        + (f"; failed: {', '.join(map(str, failed))}" if failed else "")
    )
    if failed:
        raise typer.Exit(1)


def report(
    out: Output,
    outcomes: Iterable[batch.Outcome],
    total: int,
    written: dict[Path, Path],
    fmt: str,
    json_out: bool,
    after: Callable[[Path, Any], None] | None = None,
) -> list[Path]:
    """The one place a batch's results are written, local or on Ray: the summary file under
    --out-dir, the JSON Lines record or text on stdout, errors and notes on stderr, the bar;
    `after(source, console)` runs once a summary is written (--chapters). Returns the sources
    that failed."""
    failed: list[Path] = []
    with out.progress() as bar:
        task = bar.add_task("videos", total=total, rate="")
        for outcome in outcomes:
            source, answer = outcome.source, outcome.answer
            for note in outcome.notes:
                bar.console.print(f"Warning: {about(source, note)}", markup=False)
            try:
                if outcome.error is not None:
                    raise outcome.error
                if written:
                    write_summary(written[source], source, answer, fmt)
                if after is not None:
                    after(source, bar.console)
            except LlamaVidError as exc:
                failed.append(source)
                if json_out:
                    out.json({"source": str(source), "error": failure(exc)})
                bar.console.print(f"Error: {about(source, str(exc))}", markup=False)
                bar.advance(task)
                continue
            if json_out or (fmt == "json" and not written):
                out.json(answer)
            elif fmt == "md" and not written:
                out.result(f"# {source}\n\n{answer['answer']}\n")
            elif not written:
                out.result(f"== {source} ==\n{answer['answer']}\n")
            bar.advance(task)
    return failed


def _write_chapters(loaded, run, source: Path, summary: Path, fmt: str, chapters_fmt: str, settings, console) -> None:
    """`<name>.chapters.<ext>` beside the summary, from the encode the summary just cached (no decode)."""
    from .. import chapters

    found = chapters.make(
        loaded,
        source,
        run.sampling,
        fmt=chapters_fmt,
        generation=settings,
        on_note=lambda note: console.print(f"Warning: {about(source, note)}", markup=False),
    )
    chapters.write(chapters.file_beside(summary, fmt, chapters_fmt), chapters.render(found, chapters_fmt))
