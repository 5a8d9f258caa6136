"""The `.vidtok` file: a video's LLaMA-VID tokens in safetensors, written atomically.

Tensors: `context` [N,H] (for the encode-time prompt), `content` [N,K,H], `timestamps` [N]
(seconds, float64), optional `features` [N,T,V] (float16 tower output, CLS first when
`features_cls` says so) from which later questions get their own context tokens.
`__metadata__` (strings only, JSON where structured) records the format version, the model
and its weight fingerprint, the prompt, the sampling, the source and the tool. See
docs/vidtok.md.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import VidtokError

if TYPE_CHECKING:  # imported where tensors are written, so `llamavid cache list` does without it
    import torch

FORMAT = "llamavid.vidtok"
FORMAT_VERSION = 1


@dataclass
class Vidtok:
    context: torch.Tensor  # [N, H]
    content: torch.Tensor  # [N, K, H]
    timestamps: torch.Tensor  # [N] float64 seconds
    model: str
    fingerprint: str
    prompt: str
    features: torch.Tensor | None = None  # [N, T, V] float16
    features_cls: bool = True
    sampling: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    subtitles: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""
    tool_version: str = __version__

    @property
    def num_frames(self) -> int:
        return self.context.shape[0]

    def metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "model": self.model,
            "fingerprint": self.fingerprint,
            "prompt": self.prompt,
            "features_cls": json.dumps(self.features_cls),
            "sampling": json.dumps(self.sampling),
            "source": json.dumps(self.source),
            "subtitles": json.dumps(self.subtitles),
            "tool_version": self.tool_version,
            "created": self.created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def check_writable(path: Path) -> None:
    """Fail before a long encode, not after it, when the output cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise VidtokError(f"{path} is a folder; give a file name ending in .vidtok")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise VidtokError(f"cannot write in {path.parent} ({exc.strerror}); choose another -o") from None
    os.close(fd)
    os.unlink(probe)


def write(path: Path, vidtok: Vidtok) -> Path:
    """Write to a temp file in the target folder, then rename: never a half-written .vidtok."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    check_writable(path)
    tensors = {
        "context": vidtok.context.detach().contiguous().cpu(),
        "content": vidtok.content.detach().contiguous().cpu(),
        "timestamps": vidtok.timestamps.to(torch.float64).contiguous().cpu(),
    }
    if vidtok.features is not None:
        tensors["features"] = vidtok.features.to(torch.float16).contiguous().cpu()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=vidtok.metadata())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise VidtokError(f"cannot write {path} ({exc.strerror or exc}); check free space and permissions") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_header(path: Path) -> Vidtok:
    """Metadata and shapes only (no tensor data read): enough to check version and model."""
    return read(path, tensors=False)


def read(path: Path, tensors: bool = True) -> Vidtok:
    """Load and validate; every failure is a one-line VidtokError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise VidtokError(f"{path} does not exist")
    try:
        # headers only: numpy is enough to read shapes, and far quicker to import than torch
        with safe_open(str(path), framework="pt" if tensors else "numpy") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            data = {k: (f.get_tensor(k) if tensors else f.get_slice(k)) for k in keys}
    except (SafetensorError, OSError, ValueError) as exc:
        raise VidtokError(f"{path} is not a readable .vidtok file ({str(exc).splitlines()[0]})") from None
    if meta.get("format") != FORMAT:
        raise VidtokError(f"{path} is a safetensors file but not a .vidtok (no llamavid metadata)")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        raise VidtokError(f"{path} has an unreadable format version") from None
    if version > FORMAT_VERSION:
        raise VidtokError(
            f"{path} uses .vidtok format {version}, newer than this llamavid understands ({FORMAT_VERSION}); "
            "upgrade llamavid"
        )
    missing = {"context", "content", "timestamps"} - keys
    if missing:
        raise VidtokError(f"{path} lacks the tensor(s) {', '.join(sorted(missing))}")
    context, content, stamps = data["context"], data["content"], data["timestamps"]
    features = data.get("features")
    shape = {k: tuple(v.shape if tensors else v.get_shape()) for k, v in data.items()}
    frames = shape["context"][0]
    if (
        len(shape["context"]) != 2
        or len(shape["content"]) != 3
        or shape["content"][0] != frames
        or shape["content"][2] != shape["context"][1]
        or shape["timestamps"] != (frames,)
        or (features is not None and (len(shape["features"]) != 3 or shape["features"][0] != frames))
    ):
        raise VidtokError(f"{path} has inconsistent tensor shapes; encode the video again")
    try:
        return Vidtok(
            context=context,
            content=content,
            timestamps=stamps,
            model=meta["model"],
            fingerprint=meta["fingerprint"],
            prompt=meta.get("prompt", ""),
            features=features,
            features_cls=json.loads(meta.get("features_cls", "true")),
            sampling=json.loads(meta.get("sampling", "{}")),
            source=json.loads(meta.get("source", "{}")),
            subtitles=json.loads(meta.get("subtitles", "[]")),
            created=meta.get("created", ""),
            tool_version=meta.get("tool_version", ""),
        )
    except (KeyError, json.JSONDecodeError) as exc:
        raise VidtokError(f"{path} has damaged metadata ({exc})") from None


def check_model(vidtok: Vidtok, path: Path, model: str, fingerprint: str) -> None:
    """Tokens only mean something to the model that made them."""
    if vidtok.fingerprint != fingerprint:
        raise VidtokError(
            f"{path} was encoded with {vidtok.model} (weights {vidtok.fingerprint}), not with the model in use "
            f"({model}, weights {fingerprint}); pass --model {vidtok.model} or encode the video again"
        )
