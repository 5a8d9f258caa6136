"""`llamavid ask SOURCE QUESTION`: one answer, streamed to stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..defaults import DEFAULT_WHISPER
from ..errors import UsageError
from . import options as o
from .app import app
from .common import existing_file, load, pick_model
from .output import Output


def read_history(path: Path | None) -> list[tuple[str, str]]:
    """A JSON list of [question, answer] pairs (what chat's /save --json writes)."""
    if path is None:
        return []
    try:
        pairs = json.loads(Path(path).read_text())
        if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs):
            raise ValueError
    except (OSError, ValueError):
        raise UsageError(f"{path} is not a JSON list of [question, answer] pairs") from None
    return [(q, a) for q, a in pairs]


@app.command()
def ask(
    source: Annotated[Path, typer.Argument(help="A video, an image or a .vidtok file.", show_default=False)],
    question: o.QuestionArg,
    model: o.ModelOpt = o.DEFAULTS["model"],
    device: o.DeviceOpt = "auto",
    dtype: o.DtypeOpt = "auto",
    quantize: o.QuantizeOpt = "none",
    eva_weights: o.EvaOpt = None,
    long_video: o.LongVideoOpt = None,
    subtitles: o.SubtitlesOpt = None,
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
    history: Annotated[
        Optional[Path], typer.Option("--history", help="Continue a conversation: JSON list of [question, answer] pairs.")
    ] = None,
    fit: o.FitOpt = False,
    no_cache: o.NoCacheOpt = False,
    json_out: o.JsonOpt = False,
) -> None:
    """Answer one question about a video, image or .vidtok; the answer streams to stdout.

    Examples:

      llamavid ask movie.mp4 "who is the villain?"

      llamavid ask clip.vidtok "what happens at the end?" --temperature 0 --json
    """
    from .. import pipeline
    from ..loader import describe, identify
    from ..subtitles import read_subtitles

    out = Output(json_out)
    existing_file(source)
    turns = read_history(history)
    if not no_cache:
        from ..cache import size_limit

        size_limit()  # a bad LLAMAVID_CACHE_SIZE is refused now, not after the encode
    sampling = pipeline.Sampling(fps, max_frames, o.parse_time(start, "--start"), o.parse_time(end, "--end"))
    subs = pipeline.SubtitleRequest(subtitles, transcribe, whisper_model)
    if subtitles:
        read_subtitles(subtitles, on_warning=out.warn)  # a malformed file fails now, not after the model loads
    model = pick_model(out, model, [source], sampling, max_new_tokens)
    pipeline.check_source(source, identify(model))
    pipeline.check_sampling(source, sampling)
    pipeline.check_transcribe(model, long_video, subs)
    loaded = load(out, model, device, dtype, quantize, eva_weights, long_video)
    result = pipeline.ask(
        loaded, source, question, history=turns, sampling=sampling, use_cache=not no_cache, fit=fit, subs=subs,
        generation=pipeline.GenerationSettings(temperature, top_p, max_new_tokens, seed),
        on_text=None if json_out else out.stream, on_note=out.warn,
        progress=lambda total: out.frames(source.name, total),
    )
    if json_out:
        out.json({**result.as_dict(), **describe(loaded)})
    else:
        out.end_stream()
