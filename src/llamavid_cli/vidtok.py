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
import math
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__, paths
from .encoded import EncodedVideo, VidtokHeader
from .errors import VidtokError

FORMAT = "llamavid.vidtok"
FORMAT_VERSION = 1


def metadata(video: EncodedVideo) -> dict[str, str]:
    """`__metadata__` for a video's tokens (strings only, JSON where structured; docs/vidtok.md)."""
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model": video.model,
        "fingerprint": video.fingerprint,
        "prompt": video.prompt,
        "features_cls": json.dumps(video.features_cls),
        **({"long_video": json.dumps(video.long_video)} if video.long_video is not None else {}),
        "sampling": json.dumps(video.sampling),
        "source": json.dumps(video.source),
        "subtitles": json.dumps([{"start": c.start, "end": c.end, "text": c.text} for c in video.cues]),
        **({"cuts": json.dumps(list(video.cuts))} if video.cuts is not None else {}),
        "tool_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def is_vidtok(path: Path) -> bool:
    """A safetensors header that names our format (cheap: reads the header only; never opens a
    FIFO or device, which could block). A source is a .vidtok by its content, never its name."""
    if not paths.is_regular(path):
        return False
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            return 0 < size < 100_000_000 and b'"llamavid.vidtok"' in f.read(min(size, 1 << 20))
    except OSError:
        return False


class WriteError(VidtokError):
    """A .vidtok that could not be written (full disk, no permission, a folder in the way)."""


def check_writable(path: Path) -> None:
    """Fail before a long encode, not after it, when the output cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{path} is a directory; give a file name ending in .vidtok")
    paths.check_writable(path, WriteError)


def write(path: Path, video: EncodedVideo) -> Path:
    """Write to a temp file in the target folder, then rename: never a half-written .vidtok.

    Any failure is one WriteError line naming `path` and the reason; a file already at `path`
    stays as it was."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{path} is a directory; give a file name ending in .vidtok")
    tensors = {
        "context": video.context[:, 0].detach().contiguous().cpu(),  # [N, H]: one context token a frame
        "content": video.content.detach().contiguous().cpu(),
        "timestamps": torch.tensor(video.timestamps, dtype=torch.float64),
    }
    if video.features is not None:
        tensors["features"] = video.features.to(torch.float16).contiguous().cpu()
    with paths.replacing(path, WriteError, failures=(SafetensorError,)) as tmp:
        save_file(tensors, str(tmp), metadata=metadata(video))
    return path


def read_header(path: Path) -> VidtokHeader:
    """Metadata, timestamps and shapes (no token data read): enough to check version, model and mode."""
    meta, layout, data = _open(path, tensors=False)
    fields = _check_metadata(path, meta)
    return VidtokHeader(
        **{k: v for k, v in fields.items() if k != "cues"},
        subtitles=len(fields["cues"]),
        created=meta.get("created", ""),
        tool_version=meta.get("tool_version", ""),
        shapes={name: shape for name, (shape, _) in layout.items()},
        timestamps=tuple(data["timestamps"]),
    )


def read(path: Path) -> EncodedVideo:
    """Load and validate everything (metadata types, shapes, dtypes, time order, finite values);
    every failure is a one-line VidtokError naming the file."""
    from .subtitles import Cue

    meta, _, data = _open(path, tensors=True)
    fields = _check_metadata(path, meta)
    return EncodedVideo(
        timestamps=tuple(data["timestamps"].tolist()),
        context=data["context"][:, None],
        content=data["content"],
        features=data.get("features"),
        **{**fields, "cues": tuple(Cue(**c) for c in fields["cues"])},
    )


def _open(path: Path, tensors: bool) -> tuple[dict[str, str], dict[str, tuple[tuple, str]], dict]:
    """(metadata, name → (shape, dtype), name → tensor) of a checked .vidtok; without `tensors`
    only the timestamps are read (as numpy: far quicker to import than torch)."""
    from safetensors import SafetensorError, safe_open

    path = paths.regular_file(path, VidtokError, "a .vidtok file")
    try:
        with safe_open(str(path), framework="pt" if tensors else "numpy") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if meta.get("format") != FORMAT:
                raise VidtokError(f"{path} is a safetensors file but not a .vidtok (no llamavid metadata)")
            layout = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in keys}
            data = {k: f.get_tensor(k) for k in keys} if tensors else {}
    except (SafetensorError, OSError, ValueError) as exc:
        why = paths.reason(exc)
        if path.suffix.lower() != ".vidtok":
            raise VidtokError(f"{path} is not a .vidtok file ({why})") from None
        raise _damaged(path, why) from None
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        raise _damaged(path, f"format_version {meta.get('format_version')!r} is not a number") from None
    if version > FORMAT_VERSION:
        raise VidtokError(
            f"{path} uses .vidtok format {version}, newer than this llamavid understands ({FORMAT_VERSION}); "
            "upgrade llamavid"
        )
    if not tensors and "timestamps" in layout and layout["timestamps"][1] == "F64":
        data["timestamps"] = _raw_timestamps(path)
    _check_tensors(path, layout, data, tensors)
    return meta, layout, data


def _raw_timestamps(path: Path) -> list[float]:
    """The F64 timestamps straight from the file (safetensors: 8-byte header length, JSON header,
    data at the offsets it gives), so a header read needs neither torch nor numpy."""
    from array import array

    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        begin, end = json.loads(f.read(size))["timestamps"]["data_offsets"]
        f.seek(8 + size + begin)
        values = array("d", f.read(end - begin))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def _damaged(path: Path, why: str) -> VidtokError:
    return VidtokError(f"{path} is a damaged .vidtok ({why}); encode the video again")


_TENSORS = {"context": 2, "content": 3, "timestamps": 1, "features": 3}  # name → number of dimensions
_FLOATS = {"F16", "BF16", "F32", "F64"}


def _check_tensors(path: Path, layout: dict[str, tuple[tuple, str]], data: dict, loaded: bool) -> None:
    """Names, ranks, dtypes (safetensors' names), frame counts and widths agree; timestamps
    ascend; token values are finite (when `loaded`)."""
    missing = {"context", "content", "timestamps"} - layout.keys()
    if missing:
        raise _damaged(path, f"no {', '.join(sorted(missing))} tensor")
    unknown = layout.keys() - _TENSORS.keys()
    if unknown:
        raise _damaged(path, f"unexpected tensor {sorted(unknown)[0]!r}")
    shape = {name: dims for name, (dims, _) in layout.items()}
    dtype = {name: kind for name, (_, kind) in layout.items()}
    for name in layout:
        if len(shape[name]) != _TENSORS[name]:
            raise _damaged(path, f"{name} has {len(shape[name])} dimensions, not {_TENSORS[name]}")
        if dtype[name] not in _FLOATS:
            raise _damaged(path, f"{name} holds {dtype[name]} values, not floating point")
    if dtype["timestamps"] != "F64":
        raise _damaged(path, f"timestamps are {dtype['timestamps']}, not F64")
    frames = shape["context"][0]
    if frames == 0:
        raise _damaged(path, "no frames")
    for name in layout:
        if shape[name][0] != frames:
            raise _damaged(path, f"{shape[name][0]} frames of {name} but {frames} of context")
    if shape["content"][2] != shape["context"][1]:
        raise _damaged(path, f"content width {shape['content'][2]} differs from context width {shape['context'][1]}")
    if 0 in shape["content"][1:] or ("features" in shape and 0 in shape["features"][1:]):
        raise _damaged(path, "an empty token or feature dimension")
    stamps = data["timestamps"] if isinstance(data["timestamps"], list) else data["timestamps"].tolist()
    if not all(math.isfinite(t) and t >= 0 for t in stamps):
        raise _damaged(path, "timestamps that are negative or not finite")
    if any(b < a for a, b in zip(stamps, stamps[1:])):
        raise _damaged(path, "timestamps out of order")
    if loaded:
        import torch

        for name in ("context", "content", "features"):
            if name in data and not torch.isfinite(data[name]).all():
                raise VidtokError(
                    f"{path} holds NaN or infinite values in its {name} tensor; encode the video again "
                    "(with --dtype float32 if this GPU overflows in float16)"
                )


_SAMPLING = {
    "fps": (int, float),
    "max_frames": (int, type(None)),
    "start": (int, float, type(None)),
    "end": (int, float, type(None)),
}
_SOURCE = {
    "name": (str,),
    "size": (int,),
    "hash": (str,),
    "duration": (int, float, type(None)),
    "width": (int, type(None)),
    "height": (int, type(None)),
    "fps": (int, float, type(None)),
    "codec": (str, type(None)),
}
_CUE = {"start": (int, float), "end": (int, float), "text": (str,)}


def _check_metadata(path: Path, meta: dict[str, str]) -> dict[str, Any]:
    """The EncodedVideo fields from `__metadata__`, each of the type docs/vidtok.md gives, or a damaged-file error."""
    for required in ("model", "fingerprint"):
        if not meta.get(required):
            raise _damaged(path, f"no {required} in its metadata")

    def decoded(key: str, default: str, kinds: tuple) -> Any:
        try:
            value = json.loads(meta.get(key, default))
        except json.JSONDecodeError:
            raise _damaged(path, f"metadata {key} is not JSON") from None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise _damaged(path, f"metadata {key} has the wrong type ({type(value).__name__})")
        return value

    def fields(key: str, value: dict, types: dict, strict: bool) -> None:
        extra = value.keys() - types.keys()
        if strict and extra:
            raise _damaged(path, f"{key} field {sorted(extra)[0]!r} is not ours")
        for name, kinds in types.items():
            if name in value and (not isinstance(value[name], kinds) or isinstance(value[name], bool)):
                raise _damaged(path, f"{key} field {name!r} has the wrong type ({type(value[name]).__name__})")

    features_cls = decoded("features_cls", "true", (bool,))
    long_video = decoded("long_video", "null", (bool, type(None)))
    sampling = decoded("sampling", "{}", (dict,))
    fields("sampling", sampling, _SAMPLING, strict=False)
    source = decoded("source", "{}", (dict,))
    fields("source", source, _SOURCE, strict=False)
    cues = decoded("subtitles", "[]", (list,))
    for number, cue in enumerate(cues, start=1):
        if not isinstance(cue, dict) or cue.keys() != _CUE.keys():
            raise _damaged(path, f"subtitle {number} is not a {{start, end, text}} cue")
        fields("subtitle", cue, _CUE, strict=True)
        if not (math.isfinite(cue["start"]) and math.isfinite(cue["end"]) and 0 <= cue["start"] <= cue["end"]):
            raise _damaged(path, f"subtitle {number} ends before it starts or has no finite times")
    cuts = decoded("cuts", "null", (list, type(None)))
    if cuts is not None:
        if not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c >= 0 for c in cuts
        ):
            raise _damaged(path, "metadata cuts holds something other than times of 0 s or later")
        if any(b <= a for a, b in zip(cuts, cuts[1:])):
            raise _damaged(path, "metadata cuts are not in ascending order")
        cuts = tuple(float(c) for c in cuts)
    return {
        "model": meta["model"],
        "fingerprint": meta["fingerprint"],
        "prompt": meta.get("prompt", ""),
        "features_cls": features_cls,
        "long_video": long_video,
        "sampling": sampling,
        "source": source,
        "cues": cues,
        "cuts": cuts,
    }


def mode_name(long_video: bool) -> str:
    return "long-video" if long_video else "short-video"


def check_model(
    vidtok: EncodedVideo | VidtokHeader,
    path: Path,
    model: str,
    fingerprint: str,
    long_video: bool | None = None,
    model_long_video: bool | None = None,
) -> None:
    """Tokens only mean something to the model, and the mode (method.md §7), that made them.

    `long_video` is this run's mode, `model_long_video` the checkpoint's own. Features are
    recomputed into tokens for any mode; a file of tokens alone is refused in the other mode.
    A file without a recorded mode (written before it was recorded) is taken to be in the
    checkpoint's own mode."""
    if vidtok.fingerprint != fingerprint:
        raise VidtokError(
            f"{path} was encoded with {vidtok.model} (weights {vidtok.fingerprint}), not with the model in use "
            f"({model}, weights {fingerprint}); pass --model {vidtok.model} or encode the video again"
        )
    made_in = model_long_video if vidtok.long_video is None else vidtok.long_video
    if long_video is None or made_in is None or made_in == long_video or vidtok.has_features:
        return
    flag = "--long-video" if made_in else "--short-video"
    raise VidtokError(
        f"{path} holds {mode_name(made_in)} tokens and no features, but this run is in "
        f"{mode_name(long_video)} mode; pass {flag}, or encode the video again with --keep-features"
    )
