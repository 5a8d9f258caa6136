"""What the commands share: the start of every model run, loading with a status line, path checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..defaults import AUTO_MODEL
from ..errors import UsageError
from .options import ModelOptions, SamplingOptions, TranscribeOptions
from .output import Output

if TYPE_CHECKING:
    from ..client import Remote
    from ..loader import Loaded
    from ..pipeline import Answer, SubtitleRequest
    from ..video import Sampling


@dataclass(frozen=True)
class Started:
    """A loaded model with the run's sampling and subtitle request, everything checked."""

    loaded: Loaded
    sampling: Sampling
    subs: SubtitleRequest


def start(
    out: Output,
    models: ModelOptions,
    frames: SamplingOptions,
    subs: TranscribeOptions,
    *,
    choose_for: list[Path],
    max_new_tokens: int,
    check: Path | None = None,
    use_cache: bool = False,
) -> Started:
    """The sequence every model command runs before its own work, each step failing before the
    slower ones: cache limit → sampling → subtitles → model choice → source checks → load.

    `choose_for` are the videos `--model auto` decides by; `check` is the one source whose
    fit with the chosen model, sampling and subtitles is checked before the model loads."""
    from .. import pipeline
    from ..loader import identify
    from ..subtitles import read_subtitles

    if use_cache:
        check_cache_size()
    sampling = frames.sampling()
    request = subs.request()
    if request.file:
        read_subtitles(request.file, on_warning=out.warn)  # a malformed file fails now, not after the model loads
    model = pick_model(out, models.model, choose_for, sampling, max_new_tokens)
    if check is not None:
        pipeline.check_source(check, identify(model))
        pipeline.check_sampling(check, sampling)
        pipeline.check_transcribe(model, models.long_video, request)
    return Started(load(out, model, models), sampling, request)


def remote(server: str, subs: TranscribeOptions) -> Remote:
    """The client for `--server` (the model options are the server's own)."""
    from ..client import Remote

    if subs.transcribe or getattr(subs, "subtitles", None):
        raise UsageError("--subtitles and --transcribe are not sent to --server; run without --server for them")
    return Remote(server)


def check_cache_size() -> None:
    """A bad LLAMAVID_CACHE_SIZE is refused before any work, not after the first encode."""
    from ..cache import size_limit

    size_limit()


def pick_model(out: Output, model: str, sources: list[Path], sampling: Sampling, max_new_tokens: int) -> str:
    """Resolve `--model auto` and say which model and why, on stderr."""
    if model != AUTO_MODEL:
        return model
    from .. import checkpoints, pipeline

    chosen, why = pipeline.choose_model(sources, sampling, max_new_tokens)
    note = f"Using {chosen}: {why}"
    if chosen in checkpoints.ALIASES and not checkpoints.is_cached(chosen):
        size = next(m.size_gb for m in checkpoints.KNOWN_MODELS if m.alias == chosen)
        note += f" (downloads about {size:.0f} GB the first time)"
    out.err.print(note + ".", markup=False, highlight=False)
    return chosen


def load(out: Output, model: str, options: ModelOptions) -> Loaded:
    """`model` (already resolved from `auto`) on the device, dtype and quantization asked for."""
    from transformers.utils import logging as hf_logging

    from ..loader import load_model

    hf_logging.set_verbosity_error()  # transformers' own warnings are not for our users; errors still show
    with out.status(f"Loading {model}…"):
        loaded = load_model(
            model,
            device=options.device,
            dtype=options.dtype,
            quantize=options.quantize,
            eva_weights=options.eva_weights,
            long_video=options.long_video,
        )
    if out.err.is_terminal:
        dtype_name = str(loaded.dtype).removeprefix("torch.")
        reason = getattr(loaded, "dtype_reason", None)  # why this dtype, when the loader says
        out.info(f"Model {loaded.name} on {loaded.device} ({dtype_name}{': ' + reason if reason else ''})")
    return loaded


def existing_file(path: Path, expected: str = "a video, image or .vidtok file") -> Path:
    """A usage error (exit 2) unless `path` is a regular, readable, non-empty file (paths.py owns the rule)."""
    from ..paths import regular_file

    return regular_file(path, UsageError, expected)


def answer_json(result: Answer, loaded: Loaded) -> dict:
    """The answer object `ask --json` and `summarize --json` print (docs/json.md): `pipeline.answer_object`."""
    from ..pipeline import answer_object

    return answer_object(result, loaded)
