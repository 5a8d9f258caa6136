"""Options shared by several commands, declared once so their names, defaults and help agree.

The options come in groups (`ModelOptions`, `SamplingOptions`, …): small dataclasses whose
fields are the options, with the defaults of their owners (`defaults.py`, which the library's
settings read too). A command names a group once, as one typed parameter, and `@grouped`
spreads its fields into the signature Typer reads, so every command that takes a group takes
the same flags.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from .. import defaults, settings
from ..checkpoints import ALIASES

if TYPE_CHECKING:
    from ..pipeline import GenerationSettings, SubtitleRequest
    from ..video import Sampling

ENV = {key: settings.env_var(key) for key in settings.KEYS}  # --fps → LLAMAVID_FPS, …

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        envvar=ENV["model"],
        help=f"Checkpoint: auto (vid-7b when the video fits its 4K context, else long-7b), an alias "
        f"({', '.join(ALIASES)}), a hub id or a local folder.",
    ),
]
LongVideoOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--long-video/--short-video",
        help="Force the long-video (movie) prompt and token semantics, or the short-video ones; default: "
        "what the checkpoint was trained for.",
        show_default=False,
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", envvar=ENV["device"], help="auto, cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[
    str,
    typer.Option(
        "--dtype", envvar=ENV["dtype"], help="auto (float16 on GPUs, float32 on CPU), float32, float16, bfloat16."
    ),
]
QuantizeOpt = Annotated[
    str,
    typer.Option(
        "--quantize", envvar=ENV["quantize"], help="LLM weights: none, 8bit or 4bit (NF4, needs bitsandbytes)."
    ),
]
EvaOpt = Annotated[
    Optional[Path],
    typer.Option("--eva-weights", help="LAVIS eva_vit_g.pth, only for checkpoints whose shards lack the vision tower."),
]
SubtitlesOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--subtitles", help="Subtitles (.srt or .vtt) for the long-video prompt; default: the video's own text track."
    ),
]
TranscribeOpt = Annotated[
    bool,
    typer.Option("--transcribe", help="Make subtitles with Whisper (speech recognition) when the video has none."),
]
WhisperOpt = Annotated[str, typer.Option("--whisper-model", help="Whisper checkpoint for --transcribe.")]
FitOpt = Annotated[
    bool,
    typer.Option(
        "--fit",
        help="When the video does not fit the model's context, sample fewer frames (evenly spaced) until it does.",
    ),
]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the encode cache for this run.")]
ServerOpt = Annotated[
    Optional[str],
    typer.Option(
        "--server",
        envvar=settings.SERVER_VAR,
        help="URL of a running llamavid serve (http://127.0.0.1:11435): it answers, no model is loaded here.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of text.")]
JsonLinesOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object per file on stdout (JSON Lines) instead of text.")
]


def shell_text(value: str) -> str:
    """Text from the command line as the user meant it: bytes that are not UTF-8 (which Python
    keeps as lone surrogates) become U+FFFD instead of breaking the tokenizer."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


QuestionArg = Annotated[str, typer.Argument(help="What to ask about it.", show_default=False, callback=shell_text)]

TemperatureOpt = Annotated[
    float,
    typer.Option(
        "--temperature",
        "-t",
        min=0.0,
        envvar=ENV["temperature"],
        help="Sampling temperature; 0 is greedy and reproducible.",
    ),
]
TopPOpt = Annotated[
    float, typer.Option("--top-p", min=0.0, max=1.0, envvar=ENV["top_p"], help="Nucleus sampling mass.")
]
MaxNewTokensOpt = Annotated[
    int, typer.Option("--max-new-tokens", min=1, envvar=ENV["max_new_tokens"], help="Longest answer, in tokens.")
]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Seed for sampling, for repeatable answers.")]
FpsOpt = Annotated[
    float,
    typer.Option("--fps", min=0.0, envvar=ENV["fps"], help="Frames sampled per second of video (released models: 1)."),
]
MaxFramesOpt = Annotated[
    Optional[int], typer.Option("--max-frames", min=1, help="Keep at most N evenly spaced frames.")
]
StartOpt = Annotated[Optional[str], typer.Option("--start", help="Start of the time range: seconds, MM:SS or H:MM:SS.")]
EndOpt = Annotated[Optional[str], typer.Option("--end", help="End of the time range: seconds, MM:SS or H:MM:SS.")]


def parse_time(value: str | None, flag: str) -> float | None:
    """`75`, `75.5`, `1:15` or `0:01:15` → seconds; minutes and seconds after a colon stay below 60."""
    if value is None:
        return None
    text = value.strip()
    if not re.fullmatch(r"\d+(\.\d+)?|(\d+:)?\d{1,2}:\d{1,2}(\.\d+)?", text):
        raise typer.BadParameter(f"{value!r} is not a time (use seconds, MM:SS or H:MM:SS)", param_hint=flag)
    parts = text.split(":")
    if any(float(part) >= 60 for part in parts[1:]):
        raise typer.BadParameter(
            f"{value!r} is not a time: minutes and seconds after a colon go up to 59 (use seconds, MM:SS or H:MM:SS)",
            param_hint=flag,
        )
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


# ---- option groups ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Which checkpoint, and where and how it runs."""

    model: ModelOpt = defaults.AUTO_MODEL
    device: DeviceOpt = defaults.DEVICE
    dtype: DtypeOpt = defaults.DTYPE
    quantize: QuantizeOpt = defaults.QUANTIZE
    eva_weights: EvaOpt = None
    long_video: LongVideoOpt = None


@dataclasses.dataclass(frozen=True)
class TranscribeOptions:
    """Whisper for videos without subtitles (summarize: each video's own track, else this)."""

    transcribe: TranscribeOpt = False
    whisper_model: WhisperOpt = defaults.DEFAULT_WHISPER

    def request(self) -> SubtitleRequest:
        from ..pipeline import SubtitleRequest

        return SubtitleRequest(None, self.transcribe, self.whisper_model)


@dataclasses.dataclass(frozen=True)
class SubtitleOptions(TranscribeOptions):
    """A subtitle file, or Whisper, for one video."""

    subtitles: SubtitlesOpt = None

    def request(self) -> SubtitleRequest:
        from ..pipeline import SubtitleRequest

        return SubtitleRequest(self.subtitles, self.transcribe, self.whisper_model)


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """How answers are sampled (pipeline.GenerationSettings, from the command line)."""

    temperature: TemperatureOpt = defaults.TEMPERATURE
    top_p: TopPOpt = defaults.TOP_P
    max_new_tokens: MaxNewTokensOpt = defaults.MAX_NEW_TOKENS
    seed: SeedOpt = None

    def settings(self) -> GenerationSettings:
        from ..pipeline import GenerationSettings

        return GenerationSettings(self.temperature, self.top_p, self.max_new_tokens, self.seed)


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """Which frames to take (video.Sampling, from the command line: times as typed)."""

    fps: FpsOpt = defaults.FPS
    max_frames: MaxFramesOpt = None
    start: StartOpt = None
    end: EndOpt = None

    def sampling(self) -> Sampling:
        from ..video import Sampling

        return Sampling(self.fps, self.max_frames, parse_time(self.start, "--start"), parse_time(self.end, "--end"))


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """What to do when a video does not fit the model's context, and whether to use the encode cache."""

    fit: FitOpt = False
    no_cache: NoCacheOpt = False

    @property
    def use_cache(self) -> bool:
        return not self.no_cache


# Where a group's options appear in --help: SubtitleOptions lists --subtitles first, as before.
_ORDER = {SubtitleOptions: ("subtitles", "transcribe", "whisper_model")}

Command = TypeVar("Command", bound=Callable[..., Any])


def group_fields(kind: type) -> list[inspect.Parameter]:
    """A group's options as keyword parameters, each with its Typer declaration and default."""
    hints = typing.get_type_hints(kind, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(kind)}
    order = _ORDER.get(kind, tuple(fields))
    return [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[name], default=fields[name].default)
        for name in order
    ]


def grouped(command: Command) -> Command:
    """Let a command take option groups as parameters: Typer sees each group's fields, the
    command gets one group object per parameter annotated with a group class."""
    hints = typing.get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for param in inspect.signature(command).parameters.values():
        kind = hints.get(param.name, param.annotation)
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            fields = group_fields(kind)
            params += fields
            groups[param.name] = (kind, [f.name for f in fields])
        else:
            params.append(param.replace(annotation=kind, kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        for name, (kind, names) in groups.items():
            kwargs[name] = kind(**{n: kwargs.pop(n) for n in names})
        return command(**kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # Typer must read the spread signature, not the command's own
    return typing.cast(Command, wrapper)
