"""Small helpers the commands share: loading the model with a status line, checking paths."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..defaults import AUTO_MODEL
from ..errors import UsageError
from .output import Output

if TYPE_CHECKING:
    from ..loader import Loaded


def pick_model(out: Output, model: str, sources: list[Path], sampling, max_new_tokens: int) -> str:
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


def load(
    out: Output, model: str, device: str, dtype: str, quantize: str, eva_weights: Path | None = None,
    long_video: bool | None = None,
) -> Loaded:
    from transformers.utils import logging as hf_logging

    from ..loader import load_model

    hf_logging.set_verbosity_error()  # transformers' own warnings are not for our users; errors still show
    with out.status(f"Loading {model}…"):
        loaded = load_model(
            model, device=device, dtype=dtype, quantize=quantize, eva_weights=eva_weights, long_video=long_video
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
