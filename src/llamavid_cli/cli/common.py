"""Small helpers the commands share: loading the model with a status line, checking paths."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..loader import Loaded, load_model
from .output import Output


def load(out: Output, model: str, device: str, dtype: str, quantize: str, eva_weights: Path | None = None) -> Loaded:
    with out.status(f"Loading {model}…"):
        loaded = load_model(model, device=device, dtype=dtype, quantize=quantize, eva_weights=eva_weights)
    if out.err.is_terminal:
        out.info(f"Model {loaded.name} on {loaded.device} ({str(loaded.dtype).removeprefix('torch.')})")
    return loaded


def existing_file(path: Path) -> Path:
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a video, image or .vidtok file")
    return path
