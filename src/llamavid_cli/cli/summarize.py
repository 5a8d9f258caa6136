"""`llamavid summarize PATH…`: batch summaries for shell scripts, the model loaded once."""

from __future__ import annotations

import glob
import json
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..defaults import AUTO_MODEL, DEFAULT_WHISPER
from ..errors import LlamaVidError, UsageError
from . import options as o
from .app import app
from .common import load, pick_model
from .output import Output

if TYPE_CHECKING:
    from .. import pipeline

SUMMARY_PROMPT = "Summarize this video: what happens, who appears and where it takes place."
FORMATS = ("txt", "md", "json")


def collect(paths: list[str], recursive: bool) -> list[Path]:
    """Files as given, folders expanded (videos and images found by opening them), globs expanded."""
    found: list[Path] = []
    for raw in paths:
        matches = [Path(p) for p in sorted(glob.glob(raw, recursive=recursive))] if glob.has_magic(raw) else [Path(raw)]
        if not matches:
            raise UsageError(f"{raw} matches no file")
        for path in matches:
            if path.is_dir():
                walker = path.rglob("*") if recursive else path.glob("*")
                found += sorted(p for p in walker if p.is_file() and not p.name.startswith(".") and _media(p))
            elif path.exists():
                found.append(path)
            else:
                raise UsageError(f"{path} does not exist")
    return list(dict.fromkeys(found))


# In a folder, files with these names are tried even when they do not open (a damaged video is
# reported, not silently skipped); other files are taken when they open as media.
MEDIA_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".flv", ".mpg", ".mpeg", ".ts", ".mts",
    ".m2ts", ".3gp", ".ogv", ".gif", ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".vidtok",
}


def _media(path: Path) -> bool:
    from .. import pipeline, video

    return path.suffix.lower() in MEDIA_SUFFIXES or pipeline.is_vidtok(path) or video.is_media(path)


def shard(files: list[Path], spec: str | None) -> list[Path]:
    """`--shard I/N`: a stable split by path hash, so N processes cover a library exactly once."""
    if spec is None:
        return files
    try:
        index, count = (int(x) for x in spec.split("/"))
        if not 1 <= index <= count:
            raise ValueError
    except ValueError:
        raise typer.BadParameter(f"{spec!r} is not I/N with 1 <= I <= N", param_hint="--shard") from None
    return [f for f in files if zlib.crc32(str(f).encode()) % count == index - 1]


def write_summary(folder: Path, source: Path, result: pipeline.Answer, fmt: str) -> Path:
    target = folder / f"{source.stem}.{fmt}"
    if fmt == "json":
        text = json.dumps(result.as_dict(), ensure_ascii=False, indent=2)
    elif fmt == "md":
        text = f"# {source.name}\n\n{result.answer}"
    else:
        text = result.answer
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(target)
    return target


@app.command()
def summarize(
    paths: Annotated[list[str], typer.Argument(help="Videos, folders or globs.", show_default=False)],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What to ask of every video.")] = SUMMARY_PROMPT,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write one file per video here.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Per-video file format with --out-dir: txt, md or json.")] = "txt",
    skip_existing: Annotated[bool, typer.Option("--skip-existing", help="Skip videos whose output file exists (resume).")] = False,
    shard_spec: Annotated[Optional[str], typer.Option("--shard", help="Process only part I of N, e.g. 2/4.")] = None,
    model: o.ModelOpt = o.DEFAULTS["model"],
    device: o.DeviceOpt = "auto",
    dtype: o.DtypeOpt = "auto",
    quantize: o.QuantizeOpt = "none",
    eva_weights: o.EvaOpt = None,
    long_video: o.LongVideoOpt = None,
    transcribe: o.TranscribeOpt = False,
    whisper_model: o.WhisperOpt = DEFAULT_WHISPER,
    temperature: o.TemperatureOpt = 0.2,
    top_p: o.TopPOpt = 0.7,
    max_new_tokens: o.MaxNewTokensOpt = 512,
    seed: o.SeedOpt = None,
    fps: o.FpsOpt = 1.0,
    max_frames: o.MaxFramesOpt = None,
    start: o.StartOpt = None,
    end: o.EndOpt = None,
    fit: o.FitOpt = False,
    no_cache: o.NoCacheOpt = False,
    json_out: o.JsonOpt = False,
) -> None:
    """Summarise many videos; a failing file is reported and the batch goes on (exit 1 if any failed).

    Examples:

      llamavid summarize ~/Videos/trip --recursive --out-dir summaries --format md

      llamavid summarize 'clips/*.mp4' --json --shard 1/2 > part1.jsonl
    """
    from .. import pipeline

    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    out = Output(json_out)
    files = shard(collect(paths, recursive), shard_spec)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        if skip_existing:
            files = [f for f in files if not (out_dir / f"{f.stem}.{fmt}").exists()]
    if not files:
        out.info("Nothing to summarise.")
        return
    generation = pipeline.GenerationSettings(temperature, top_p, max_new_tokens, seed)
    sampling = pipeline.Sampling(fps, max_frames, o.parse_time(start, "--start"), o.parse_time(end, "--end"))
    if model == AUTO_MODEL:  # one model for the batch: the long one if any video needs it
        videos = [f for f in files if not pipeline.is_vidtok(f)]
        model = pick_model(out, model, videos, sampling, max_new_tokens)
    loaded = load(out, model, device, dtype, quantize, eva_weights, long_video)
    failed: list[Path] = []
    with out.progress() as bar:
        task = bar.add_task("videos", total=len(files), rate="")
        for source in files:
            try:
                result = pipeline.ask(
                    loaded, source, prompt, sampling=sampling, generation=generation, use_cache=not no_cache, fit=fit,
                    subs=pipeline.SubtitleRequest(None, transcribe, whisper_model),
                )
            except LlamaVidError as exc:
                failed.append(source)
                if json_out:
                    out.json({"source": str(source), "error": str(exc)})
                bar.console.print(f"Error: {source}: {exc}", markup=False)
                bar.advance(task)
                continue
            if out_dir:
                write_summary(out_dir, source, result, fmt)
            if json_out:
                out.json(result.as_dict())
            elif not out_dir:
                out.result(f"== {source} ==\n{result.answer}\n")
            bar.advance(task)
    out.info(f"{len(files) - len(failed)} of {len(files)} summarised" + (f"; failed: {', '.join(map(str, failed))}" if failed else ""))
    if failed:
        raise typer.Exit(1)
